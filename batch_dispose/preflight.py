"""Before the first request leaves: can this run write what it must (the reports folder, the ledger's folder)?

A run that finds out only after sending that it cannot write its workbook or its ledger has sent
calls it cannot account for. So each folder is made (if missing) and probed with a real file
before anything is sent; a problem is one sentence and exit 2 (nothing was sent).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import NotWritableError
from .settings import Settings

PROBE_BYTES = 64 * 1024  # about what the first commits and the workbook's first part need


def check_places(settings: Settings, *, ledger: bool = True) -> None:
    """Raise NotWritableError naming the folder and the fix if the reports folder (or, with `ledger`, the
    ledger's folder and file) cannot be written."""
    check_folder(settings.reports_dir, "reports folder", "--reports-dir (or reports_dir in the config)")
    if ledger:
        path = settings.ledger_path
        check_folder(path.parent, "ledger folder", "--ledger (or ledger in the config)")
        if path.exists() and not path.is_file():
            raise NotWritableError(f"{path}: the ledger is not a file (a folder?), so nothing was sent; move it "
                                   f"away or choose another with --ledger.", path=path, role="ledger")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise NotWritableError(f"{path}: the ledger cannot be written by this user, so nothing was sent; "
                                   f"give this user write access to it, or choose another with --ledger.",
                                   path=path, role="ledger")


def check_folder(folder: Path, role: str, option: str) -> None:
    """Make `folder` if needed and write (then remove) a probe file in it."""
    if folder.exists() and not folder.is_dir():
        raise NotWritableError(f"{folder}: the {role} is a file, not a folder, so nothing was sent; give "
                               f"{option} a folder.", path=folder, role=role)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".batch-dispose-probe-", dir=folder)
        try:
            os.write(descriptor, bytes(PROBE_BYTES))  # a full disk refuses this (an empty file would pass)
        finally:
            os.close(descriptor)
            os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise NotWritableError(f"{folder}: the {role} cannot be written ({why}), so nothing was sent; make it "
                               f"writable for this user (and check the disk has space), or choose another with "
                               f"{option}.", path=folder, role=role) from None
