"""The ops page (`batch-dispose serve`): upload, check, fix, send, watch, download, history.

A second face on the same library: every call into the core goes through `service.py`.
"""

from __future__ import annotations

from typing import Any


def serve(*args: Any, **kwargs: Any) -> int:
    """See `server.serve` (imported late: the CLI's other commands never load the web stack)."""
    from .server import serve as _serve

    return _serve(*args, **kwargs)
