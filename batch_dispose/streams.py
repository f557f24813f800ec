"""The command's output streams, which a reader may close early (`batch-dispose history | head -1`)."""

from __future__ import annotations

import os
from typing import Any, TextIO


class PipeGuard:
    """A stream whose reader may close it early: writes after that go to /dev/null instead of raising
    (as the Python docs advise for SIGPIPE), so the command still finishes and returns its own exit code."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.drop()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.drop()
        except ValueError:  # closed
            pass

    def drop(self) -> None:
        try:
            descriptor = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
