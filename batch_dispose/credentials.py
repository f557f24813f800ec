"""The access token: where it comes from, and a wrapper that never shows it.

The token comes from the environment variable `RYNG_ACCESS_TOKEN` or from a file, never from a
command-line value. It lives in a `Secret` whose repr is masked, and is revealed in one place only:
the `x-access-token` header that `client.py` builds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import UsageError

ENV_VAR = "RYNG_ACCESS_TOKEN"
MASK = "********"


class Secret:
    """A token that shows as ******** in reprs, logs, tracebacks and f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself: only for the request header."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


def load_token(*, token_file: Path | None, environ: Mapping[str, str] | None = None) -> tuple[Secret, list[str]]:
    """The token from --token-file / token_file, else from RYNG_ACCESS_TOKEN; plus any warnings."""
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    if token_file is not None:
        try:
            info = token_file.stat()
            raw = token_file.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"{token_file}: the token file does not exist.") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise UsageError(f"{token_file}: cannot read the token file ({reason}).") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{token_file}: the token file can be read by other users; run: chmod 600 {token_file}")
        value, source = raw.strip(), f"the token file {token_file}"
    elif environ.get(ENV_VAR, "").strip():
        value, source = environ[ENV_VAR].strip(), f"the environment variable {ENV_VAR}"
    else:
        raise UsageError(f"No access token: set the environment variable {ENV_VAR}, "
                         f"or put the token in a file and pass --token-file FILE.")
    if not value:
        raise UsageError(f"The token in {source} is empty.")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value) or not value.isascii():
        raise UsageError(f"The token in {source} holds spaces, line breaks or other characters a token cannot; "
                         f"check that it holds only the token.")
    return Secret(value), warnings
