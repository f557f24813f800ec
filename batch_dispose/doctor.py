"""`batch-dispose config`: the settings in effect, and a check of each thing a cron run will need.

Each check reads only (it never creates a folder or a ledger) and ends in "ok" or one sentence that
says what is wrong and how to fix it. The token is looked at, never shown.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .credentials import ENV_VAR, load_token
from .errors import BatchDisposeError
from .settings import Settings


@dataclass(frozen=True)
class Check:
    """One thing a run needs, and whether it is there."""

    name: str  # token, dispositions, ledger, reports_dir, base_url
    ok: bool
    message: str  # what was found (ok), or what is wrong and how to fix it

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class Setup:
    """What `config` shows: every setting with its value and source, the token's origin, the checks."""

    config_file: Path | None
    settings: tuple[tuple[str, str, str], ...]  # (name, value, source)
    token: str  # where the token comes from; never the token
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def lines(self) -> list[str]:
        """What `batch-dispose config` prints: the settings with their sources, then the checks."""
        width = max(len(name) for name, _, _ in self.settings)
        found = self.config_file or "(none: no batch-dispose.toml in the working folder; --config FILE names one)"
        lines = [f"{'config file':<{width}}  {found}"]
        lines += [f"{name:<{width}}  {value}   ({source})" for name, value, source in self.settings]
        lines += [f"{'token':<{width}}  {self.token}", "", "checks:"]
        lines += [f"  {'ok' if check.ok else 'FAILED':<6}  {check.name}: {check.message}" for check in self.checks]
        failed = len(self.failed)
        lines.append("all checks passed" if not failed else f"{failed} check{'s' if failed > 1 else ''} failed: "
                     f"fix {'them' if failed > 1 else 'it'} and run `batch-dispose config` again")
        return lines

    def to_json(self) -> dict[str, object]:
        return {
            "config_file": str(self.config_file) if self.config_file else None,
            "settings": {name: {"value": value, "source": source} for name, value, source in self.settings},
            "token": self.token,
            "checks": {check.name: check.to_json() for check in self.checks},
            "ok": self.ok,
        }


def examine(settings: Settings, *, config_file: Path | None, environ: Mapping[str, str] | None = None) -> Setup:
    """The settings as `config` lists them, and every check run against them."""
    environ = os.environ if environ is None else environ
    rows = tuple((name, value, settings.sources.get(name, "default")) for name, value in settings.described())
    checks = (check_token(settings.token_file, environ), check_dispositions(settings.dispositions),
              check_ledger(settings.ledger_path, old=settings.old_ledger_path),
              check_reports_dir(settings.reports_dir),
              check_base_url(settings.base_url))
    return Setup(config_file, rows, token_origin(settings.token_file, environ), checks)


def token_origin(token_file: Path | None, environ: Mapping[str, str]) -> str:
    """Where the token would come from, in a few words (never the token itself)."""
    if token_file is not None:
        return f"from the file {token_file} ({'present' if token_file.is_file() else 'MISSING'})"
    if environ.get(ENV_VAR, "").strip():
        return f"set in {ENV_VAR}"
    return f"NOT SET ({ENV_VAR} is {'empty' if ENV_VAR in environ else 'not set'})"


def check_token(token_file: Path | None, environ: Mapping[str, str]) -> Check:
    """The token file exists, is readable, private and holds a token; or RYNG_ACCESS_TOKEN is set."""
    if token_file is None:
        if not environ.get(ENV_VAR, "").strip():
            return Check("token", False, f"no token: {ENV_VAR} is not set and there is no token file; put the token "
                         f"in a file (chmod 600) and set token_file in the config (cron does not see variables "
                         f"exported in your shell), or export {ENV_VAR}.")
        return _token_content(None, environ, f"set in {ENV_VAR} (a cron job sees it only if the crontab sets it; "
                              f"token_file in the config is safer)")
    try:
        info = token_file.stat()
    except FileNotFoundError:
        return Check("token", False, f"the token file {token_file} does not exist; put the token in it, then run: "
                     f"chmod 600 {token_file}")
    except OSError as exc:
        return Check("token", False, f"cannot look at the token file {token_file} ({exc.strerror}); check the "
                     f"folders on its path, or set token_file to another file.")
    if not stat.S_ISREG(info.st_mode):
        return Check("token", False, f"{token_file} is not a file; token_file must name the file that holds the "
                     f"token.")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check("token", False, f"the token file {token_file} can be read by other users (mode "
                     f"{stat.S_IMODE(info.st_mode):03o}); run: chmod 600 {token_file}")
    return _token_content(token_file, environ, f"the token file {token_file} is readable and private (mode "
                          f"{stat.S_IMODE(info.st_mode):03o})")


def _token_content(token_file: Path | None, environ: Mapping[str, str], found: str) -> Check:
    try:
        load_token(token_file=token_file, environ=environ)  # the same reading and checks a run makes
    except BatchDisposeError as exc:
        return Check("token", False, str(exc))
    return Check("token", True, found)


def check_dispositions(path: Path | None) -> Check:
    """The allow-list, if one is set, is readable and names at least one disposition."""
    from .loading import read_dispositions

    if path is None:
        return Check("dispositions", True, "not set: any disposition name is accepted")
    if path.is_dir():
        return Check("dispositions", False, f"{path} is a folder; dispositions must name a text file with one "
                     f"disposition name a line.")
    try:
        names = read_dispositions(path)
    except BatchDisposeError as exc:
        return Check("dispositions", False, str(exc))
    return Check("dispositions", True, f"{len(names)} name{'s' if len(names) != 1 else ''} in {path}")


def check_ledger(path: Path, *, old: Path | None = None) -> Check:
    """The ledger's folder can be written (or made); an existing ledger opens. `old`: a ledger at the former
    default place, which the next run takes over."""
    from .ledger import Ledger

    problem = _writable_folder(path.parent, what=f"the ledger {path}", setting="--ledger (ledger in the config)")
    if problem:
        return Check("ledger", False, problem)
    if not path.exists():
        merged = f" and takes over the old ledger {old}" if old is not None and old.is_file() else ""
        return Check("ledger", True, f"{path} does not exist yet; the first run creates it{merged}")
    if not path.is_file():
        return Check("ledger", False, f"{path} is not a file; point --ledger (ledger in the config) at a file, "
                     f"e.g. {path / 'ledger.sqlite'}")
    if not os.access(path, os.R_OK | os.W_OK):
        return Check("ledger", False, f"the ledger {path} cannot be written by this user; give this user write "
                     f"access to it (or run as its owner).")
    try:
        with Ledger.open(path, lock=False, recheck=True) as ledger:  # the doctor reads the whole file
            runs = len(ledger.runs(limit=1_000_000))
    except (BatchDisposeError, OSError) as exc:
        return Check("ledger", False, str(exc) if isinstance(exc, BatchDisposeError) else
                     f"cannot open the ledger {path} ({exc.strerror}).")
    return Check("ledger", True, f"{path} opens ({runs} run{'s' if runs != 1 else ''} recorded)")


def check_reports_dir(path: Path) -> Check:
    """The reports folder is a folder this user can write (or make)."""
    if path.exists() and not path.is_dir():
        return Check("reports_dir", False, f"{path} is a file, not a folder; point --reports-dir (reports_dir in "
                     f"the config) at a folder, or move the file away.")
    problem = _writable_folder(path, what="workbooks", setting="--reports-dir (reports_dir in the config)")
    if problem:
        return Check("reports_dir", False, problem)
    return Check("reports_dir", True, f"{path} is writable" if path.exists() else
                 f"{path} does not exist yet; the first run creates it")


def check_base_url(base_url: str | None) -> Check:
    if base_url is None:
        return Check("base_url", False, 'no Ryng account is set; add subdomain = "NAME" (or base_url) to the '
                     "config, or pass --subdomain NAME.")
    return Check("base_url", True, base_url)


def _writable_folder(folder: Path, *, what: str, setting: str) -> str | None:
    """None when `folder` is (or can be made) a folder this user can write; else the sentence saying why not."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return (f"{existing} is a file, so the folder {folder} for {what} cannot exist; move the file away, or "
                f"point {setting} somewhere else.")
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write to" if existing == folder else f"create {folder} in"
        return (f"this user cannot {verb} {existing}; give it write access (or create the folder for it), or "
                f"point {setting} somewhere else.")
    return None
