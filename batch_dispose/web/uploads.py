"""Uploads: streamed to disk under a generated name, cut off at the loader's size limit, kept a day.

An upload's own name is shown to people and used as the stem of its results workbook, but it never
becomes a path: the file is stored as `{reports dir}/uploads/{random id}/{safe name}`, where the
safe name keeps only letters, digits, space, `.`, `_` and `-` and the extension is one the loader
reads. Uploads that were never sent are removed after a day.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from . import service

KEEP_UNSENT_S = 24 * 3600
FRAMING_SLACK = 64 * 1024  # room for the multipart framing and small fields around a file at the limit
_SAFE = re.compile(r"[^A-Za-z0-9 ._-]+")


class UploadError(Exception):
    """An upload refused before it was read whole; `status` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def safe_name(name: str) -> str:
    """`../../etc/passwd.csv` -> `etc passwd.csv`: a plain file name, never a path."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    stem = " ".join(_SAFE.sub(" ", stem if dot else base).split()).strip(" .")[:80] or "upload"
    return f"{stem}.{ext.lower()}" if dot else stem


@dataclass
class Upload:
    """A file uploaded to the page, its edits and exclusions, and its latest check."""

    id: str
    name: str  # as the person named it (shown, never used as a path)
    path: Path
    created: float = field(default_factory=time.time)
    table: Any = None
    edits: dict[int, dict[str, str]] = field(default_factory=dict)
    excluded: set[int] = field(default_factory=set)
    checked: service.Check | None = None
    sent: bool = False  # a run was started on it: kept (the ledger names it)
    error: str | None = None  # why the loader refused it, while the person picks the header and columns
    preview: list[tuple[int, list[str]]] = field(default_factory=list)  # the first rows, to pick from
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one check at a time
    settings: Any = None  # the server's settings, with a column mapping chosen in the page (None: as they are)


def uploads_dir(reports_dir: Path) -> Path:
    return reports_dir / "uploads"


async def receive(stream: AsyncIterator[bytes], content_type: str, folder: Path,
                  max_bytes: int = service.MAX_BYTES) -> Upload:
    """Parse a multipart body as it arrives, writing the part named `file` to a new folder; stop
    reading as soon as it passes `max_bytes`."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError("Send the spreadsheet as multipart/form-data in a field named 'file'.", status=422)
    upload_id = secrets.token_urlsafe(9)
    target_dir = folder / upload_id
    state: dict[str, Any] = {"header": b"", "value": b"", "headers": {}, "handle": None, "name": None, "size": 0}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header"].lower()] = state["value"]
        state["header"] = state["value"] = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["headers"] = {}
        if disposition.get(b"name") == b"file" and state["name"] is None:
            filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
            name = safe_name(filename)
            if "." + name.rpartition(".")[2] not in service.FORMATS or "." not in name:
                raise UploadError(f"{filename or 'The file'}: is not a supported file type; use "
                                  f"{', '.join(service.FORMATS)}.", status=422)
            target_dir.mkdir(parents=True, exist_ok=False)
            state["name"], state["display"] = name, filename.replace("\\", "/").rsplit("/", 1)[-1] or name
            state["handle"] = open(target_dir / name, "wb")  # noqa: SIM115 (closed in on_part_end / finally)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        handle = state["handle"]
        if handle is not None:
            state["size"] += end - start
            if state["size"] > max_bytes:
                raise UploadError(f"{state['display']}: is over the {max_bytes / 2**20:.2f} MB limit; "
                                  f"split it into smaller files.", status=413)
            handle.write(data[start:end])

    def on_part_end() -> None:
        if state["handle"] is not None:
            state["handle"].close()
            state["handle"] = None

    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end})
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > max_bytes + FRAMING_SLACK:  # other fields count too: nothing is read without end
                raise UploadError(f"The upload is over the {max_bytes / 2**20:.2f} MB limit; split the file into "
                                  f"smaller files.", status=413)
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        _discard(state, target_dir)
        raise
    except Exception as exc:  # python_multipart.exceptions.MultipartParseError and kin
        _discard(state, target_dir)
        raise UploadError(f"The upload could not be read ({exc}); try again.", status=422) from None
    if state["handle"] is not None:  # the body ended inside the file part
        _discard(state, target_dir)
        raise UploadError("The upload was cut off before the end; try again.", status=422)
    if state["name"] is None:
        raise UploadError("Send the spreadsheet in a multipart field named 'file'.", status=422)
    return Upload(upload_id, state["display"], target_dir / state["name"])


def _discard(state: dict[str, Any], folder: Path) -> None:
    if state["handle"] is not None:
        state["handle"].close()
        state["handle"] = None
    shutil.rmtree(folder, ignore_errors=True)


def remove(upload: Upload) -> None:
    shutil.rmtree(upload.path.parent, ignore_errors=True)


def sweep_stale(folder: Path, keep: set[Path], now: float | None = None) -> int:
    """Remove upload folders older than a day that no run has used; returns how many."""
    if not folder.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for entry in folder.iterdir():
        try:
            old = now - entry.stat().st_mtime > KEEP_UNSENT_S
        except OSError:
            continue
        if entry.is_dir() and old and entry not in keep and not (entry / ".sent").exists():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
