"""Text a server sent, made safe to keep and to show: the token masked in any encoding, controls inert.

Everything a server controls (a body, the JSON message inside it, the reason phrase, a Location header,
the text of a connection error) passes through `server_text` before it becomes part of a row's message,
and so before it reaches stderr, the run log, the ledger or the workbook. Two dangers:

- **The token echoed back**, perhaps escaped: PHP's `json_encode` writes `/` as `\\/`, other encoders
  write `\\u0041`, a redirect URL holds `%2F`, an HTML page `&#47;`. So escapes are decoded first (what
  a person would read), then the token, and any piece of it of FRAGMENT characters or more, is masked.
- **Terminal control sequences** (ESC [ ..., OSC, BEL, a bare CR, bidi overrides): shown inert, as
  visible escapes such as `\\x1b`, so they cannot recolour, retitle or rewrite the terminal or a log.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

from .credentials import MASK

FRAGMENT = 8  # a run of this many characters of the token is masked wherever it appears
_JSON_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\([\"\\/bfnrt])")
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_UNSAFE = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))


def _json_unescape(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        code = int(match.group(1), 16)
        return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)  # never a lone surrogate
    return _JSON_SIMPLE[match.group(2)]


def decoded(text: str) -> str:
    """`text` with JSON string escapes, percent-escapes and HTML entities decoded (twice, for double encodings)."""
    for _ in range(2):
        before = text
        if "\\" in text:
            text = _JSON_ESCAPE.sub(_json_unescape, text)
        if "%" in text:
            text = unquote(text, errors="replace")
        if "&" in text:
            text = html.unescape(text)
        if text == before:
            break
    return text


def masked(text: str, secret: str) -> str:
    """`text` with the secret, and every run of FRAGMENT or more of its characters, replaced by MASK."""
    if not secret or not text:
        return text
    if secret in text:
        text = text.replace(secret, MASK)
    size = min(FRAGMENT, len(secret))
    if len(text) < size:
        return text
    pieces = {secret[start:start + size] for start in range(len(secret) - size + 1)}
    spans: list[list[int]] = []
    for start in range(len(text) - size + 1):
        if text[start:start + size] in pieces:
            if spans and start <= spans[-1][1]:
                spans[-1][1] = start + size
            else:
                spans.append([start, start + size])
    for start, end in reversed(spans):
        text = text[:start] + MASK + text[end:]
    return text


def inert(text: str) -> str:
    """`text` with control and format characters (ESC, BEL, CR, bidi overrides...) shown as escapes."""
    if text.isprintable():
        return text
    return "".join(_visible(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _visible(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def server_text(text: str, secret: str) -> str:
    """What a server sent, decoded, on one line, the secret masked and controls inert: safe to keep and show."""
    return inert(" ".join(masked(decoded(text), secret).split()))
