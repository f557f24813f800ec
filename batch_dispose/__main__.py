"""`python -m batch_dispose` and the `batch-dispose` program: the command line, then a quick exit."""

import contextlib
import os
import sys
import threading

from .cli import main


def console() -> None:
    """Run `cli.main`, then end the process at once.

    By the time `main` returns every file is closed, the ledger committed and unlocked, and the workbook
    in place; what is left is the interpreter's own tear-down of pandas, numpy and aiohttp (about 0.15 s,
    a run's last fixed cost). Output is flushed first. While any other thread is alive the process ends
    the ordinary way, which waits for it.

    Before that: pandera imports hypothesis whenever it is installed (a test library, for pandera's data
    synthesis, which batch-dispose never uses): 75-100 ms of every run's start, before the first request,
    on a machine that has it. The program marks it absent; the library and its tests are left as they are."""
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away (`| head`), a closed stream
            stream.flush()
    if threading.active_count() > 1:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    console()
