"""Docs that cannot drift: every command has --help and a README mention; exit codes and statuses documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from batch_dispose.cli import build_parser, main
from batch_dispose.models import ExitCode, Status

README = Path(__file__).resolve().parent.parent / "README.md"
#: The README is being written alongside these tests; drop this mark once it has the contract sections.


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() registers no commands")


COMMANDS = sorted(_commands())


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """The long option strings a user can see (hidden ones and --help left out)."""
    return [option for action in parser._actions if action.help is not argparse.SUPPRESS
            for option in action.option_strings if option.startswith("--") and option != "--help"]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main([*argv, "--help"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _exit_code_table_rows(text: str) -> set[str]:
    """First cells of the Markdown table rows in the README's section about exit codes."""
    cells: set[str] = set()
    in_section = False
    for line in text.splitlines():
        if line.startswith("#"):
            in_section = "exit code" in line.lower()
        elif in_section and line.lstrip().startswith("|"):
            first = line.strip().strip("|").split("|")[0]
            cells.add(first.strip().strip("`*").strip())
    return cells


def test_the_parser_registers_the_documented_commands() -> None:
    """The five commands of the contract (and any more) are registered."""
    assert {"run", "validate", "sweep", "simulate", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_that_mentions_its_options(capsys, command: str) -> None:
    """`batch-dispose COMMAND --help` exits 0 with a description and every visible option."""
    text = _help(capsys, command)
    assert text.startswith(f"usage: batch-dispose {command}")
    assert len(text.splitlines()) > 3
    parser = _commands()[command]
    assert parser.description, f"{command} has no description"
    for option in _options(parser):
        assert option in text, f"{command} --help does not mention {option}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_listed_in_the_top_level_help(capsys, command: str) -> None:
    """`batch-dispose --help` lists every command."""
    assert re.search(rf"^\s+{command}\s+\S", _help(capsys), re.MULTILINE)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_appears_in_the_readme(command: str) -> None:
    """The README shows every command as `batch-dispose COMMAND`."""
    assert f"batch-dispose {command}" in _readme()


@pytest.mark.parametrize("code", list(ExitCode), ids=lambda code: f"{code.name}-{int(code)}")
def test_every_exit_code_is_in_the_top_level_help(capsys, code: ExitCode) -> None:
    """`batch-dispose --help` explains every exit code the tool can return."""
    assert re.search(rf"^\s+{int(code)}\s+\S", _help(capsys), re.MULTILINE), f"exit code {int(code)} not in --help"


@pytest.mark.parametrize("code", list(ExitCode), ids=lambda code: f"{code.name}-{int(code)}")
def test_every_exit_code_is_in_the_readme_table(code: ExitCode) -> None:
    """The README's exit code table has a row for every exit code the tool can return."""
    assert str(int(code)) in _exit_code_table_rows(_readme())


@pytest.mark.parametrize("status", [status.value for status in Status])
def test_every_status_is_in_the_readme(status: str) -> None:
    """The README names every status a results workbook can hold (as `status` or in a table)."""
    assert re.search(rf"`{status}`|\|\s*\**{status}\**\s*\|", _readme()), f"status {status} not in README"


def _readme_exit_codes_by_command(text: str) -> dict[str, set[int]]:
    """`| `validate` | 0 … · 1 … |` rows of the README's per-command exit code table, as {command: codes}."""
    found: dict[str, set[int]] = {}
    in_section = False
    for line in text.splitlines():
        if line.startswith("#"):
            in_section = "exit code" in line.lower()
        elif in_section and (row := re.match(r"\|\s*`(\w+)`\s*\|(.*)\|\s*$", line)):
            found[row.group(1)] = {int(code) for code in re.findall(r"(?:^|·)\s*(\d+)\s", row.group(2))}
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_the_readme_gives_each_command_the_exit_codes_its_help_lists(capsys, command: str) -> None:
    """The README's exit codes for a command (its own row, or the main table for run and sweep) match its --help."""
    section = _help(capsys, command).split("exit codes:\n", 1)[1]
    listed = {int(code) for code in re.findall(r"^\s+(\d+)\s+\S", section, re.MULTILINE)}
    readme = _readme_exit_codes_by_command(_readme()).get(command)
    if readme is None:
        assert command in ("run", "sweep"), f"the README's exit codes section has no row for {command}"
        readme = {int(cell) for cell in _exit_code_table_rows(_readme()) if cell.isdigit()}
    assert readme == listed, f"{command}: README {sorted(readme)}, --help {sorted(listed)}"
