"""Files on disk: placing finished ones without ever replacing one (results workbooks, swept inbox
files), and the fingerprint of a file's content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: os.open flags for a file this process creates and nobody else may have placed: a name that exists
#: already (or a planted symlink) is refused, never followed or reused.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (memory stays flat for any size); OSError if unreadable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def move_unique(source: Path, folder: Path, stem: str, suffix: str) -> Path:
    """Move `source` to `folder/stem+suffix`, or `stem-2+suffix`, `-3`… if taken; never overwrite.

    A hard link claims the name atomically (it fails if the name exists); on a file system without
    hard links, the name is checked and the file renamed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        target = folder / (f"{stem}{suffix}" if attempt == 1 else f"{stem}-{attempt}{suffix}")
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except OSError:
            if target.exists():
                continue
            os.replace(source, target)
        else:
            source.unlink()
        fsync_dir(folder)
        return target
    raise OSError(f"no free name for {stem}{suffix} in {folder}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in `folder` durable (a no-op where directories cannot be fsynced)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
