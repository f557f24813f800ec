"""Server text is kept and shown safely: the token masked in any encoding, terminal escapes inert."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from batch_dispose.servertext import MASK, decoded, inert, masked, server_text
from tests.conftest import write_csv

SECRET = "ab/cd+ef/0123456789xyz"  # has the characters escapers change: / and +


def forms(token: str) -> list[str]:
    """The token as servers echo it: raw, PHP json_encode, \\u escapes, percent-encoded, HTML entities."""
    return [token, token.replace("/", "\\/"), "".join(f"\\u{ord(ch):04x}" for ch in token),
            "".join(f"\\u{ord(ch):04X}" for ch in token), quote(token, safe=""), quote(token, safe="").lower(),
            "".join(f"&#{ord(ch)};" for ch in token), json.dumps(token)[1:-1]]


@pytest.mark.parametrize("form", forms(SECRET), ids=["raw", "php", "u-lower", "u-upper", "percent", "percent-lower",
                                                     "entities", "json"])
def test_every_encoding_of_the_token_is_masked(form: str) -> None:
    """However the server escaped the echoed token, what is kept says ******** and holds none of it."""
    text = server_text(f"Unknown token {form} given", SECRET)
    assert MASK in text
    for leaked in forms(SECRET):
        assert leaked not in text
    assert SECRET[:8] not in text and SECRET[-8:] not in text


def test_a_long_enough_piece_of_the_token_is_masked_too() -> None:
    """A server echoing only part of the token (8 characters or more) gets that part masked."""
    assert masked(f"got {SECRET[3:15]}...", SECRET) == f"got {MASK}..."
    assert masked("short ab/cd is fine", SECRET) == "short ab/cd is fine"


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("bidi \u202eevil", "bidi \\u202eevil"),
    ("plain text, café", "plain text, café"),
])
def test_terminal_controls_are_shown_inert(raw: str, shown: str) -> None:
    """ESC sequences, OSC titles, BEL and bidi overrides become visible escapes, not terminal commands."""
    assert inert(raw) == shown


def test_a_carriage_return_cannot_rewrite_the_line() -> None:
    """A CR (or newline) from a server becomes a space: the line shown is the line kept."""
    assert server_text("ok\rFAKE: disposed\n", "") == "ok FAKE: disposed"


def test_decoding_never_makes_a_lone_surrogate() -> None:
    """A \\ud800 escape becomes U+FFFD, so the text can always be written to the log and the workbook."""
    assert decoded("a\\ud800b") == "a\ufffdb"


ECHOES = {"e200": "echo:200", "e302": "echo:302", "e400": "echo:400", "e403": "echo:403", "e500": "echo:500",
          "e502": "echo:502", "e429": "echo:429"}


def test_a_server_echoing_the_token_leaks_it_nowhere(cli, simulator, tmp_path: Path) -> None:
    """A hostile server echoing the token (escaped, percent-encoded, in the reason phrase and Location) with
    terminal escapes: no byte of stdout, stderr, the run log, the workbook or the ledger holds the token or an
    escape sequence."""
    sim = simulator(token=SECRET, scripts={call_id: [action] * 3 for call_id, action in ECHOES.items()},
                    retry_after="1")
    source = write_csv(tmp_path / "calls.csv", [[call_id, n + 1, "Interested", ""] for n, call_id in enumerate(ECHOES)])
    ledger = tmp_path / "ledger.sqlite"
    result = cli("run", source, "--base-url", sim.base_url, "--ledger", ledger, "--retries", "0", "--json",
                 token=SECRET)
    assert sim.stats.route_requests >= len(ECHOES)
    assert result.json()["counts"]["disposed"] >= 1
    stored: dict[str, bytes] = {"stdout": result.out.encode(), "stderr": result.err.encode()}
    for path in [*tmp_path.glob("reports/*"), *tmp_path.glob("ledger.sqlite*")]:
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as book:
                stored |= {f"{path.name}:{name}": book.read(name) for name in book.namelist()}
        else:
            stored[path.name] = path.read_bytes()
    assert any(name.endswith(".log") for name in stored) and any(":xl/" in name for name in stored)
    for name, data in stored.items():
        for form in forms(SECRET):
            assert form.encode() not in data, f"the token ({form}) is in {name}"
        assert SECRET[:8].encode() not in data and SECRET[-8:].encode() not in data, f"a piece of it is in {name}"
        if not name.endswith(".sqlite"):
            assert b"\x1b" not in data and b"\x07" not in data, f"a terminal escape is in {name}"
    assert MASK in result.err or any(MASK.encode() in data for data in stored.values())


@pytest.mark.parametrize("argv", [["--token", "s3cret-value", "run", "calls.csv"],
                                  ["--token=s3cret-value", "run", "calls.csv"],
                                  ["run", "calls.csv", "--token", "s3cret-value"],
                                  ["validate", "--token", "s3cret-value", "calls.csv"]],
                         ids=["before-the-command", "before-with-equals", "after", "validate"])
def test_a_token_anywhere_on_the_command_line_is_refused_unseen(cli, sim, tmp_path: Path, argv: list[str]) -> None:
    """`--token X` before or after the command is refused with exit 2, and X is never echoed."""
    write_csv(tmp_path / "calls.csv", [["1001", 1, "Interested", ""]])
    result = cli(*argv, "--base-url", sim.base_url, token=None)
    assert result.code == 2 and "never taken from the command line" in result.err
    assert "s3cret-value" not in result.err + result.out
    assert sim.stats.requests == 0
