"""The settings of one command, frozen once parsed (flags over config file over defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
DEFAULT_REPORTS_DIR = Path("reports")
LEDGER_NAME = "ledger.sqlite"
APP_NAME = "batch-dispose"


def default_ledger_path() -> Path:
    """The user's own ledger, whatever the working folder or reports dir: the platform's per-user state
    folder (`~/.local/state/batch-dispose/ledger.sqlite` on Linux; XDG_STATE_HOME moves it)."""
    from platformdirs import user_state_path

    return user_state_path(APP_NAME, appauthor=False) / LEDGER_NAME


@dataclass(frozen=True)
class Settings:
    """What a run or validate was asked to do. Holds no token: it is written to the Summary sheet."""

    base_url: str | None = None  # resolved from --subdomain or --base-url
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    reports_dir: Path = DEFAULT_REPORTS_DIR
    ledger: Path | None = None  # None: the user's ledger (default_ledger_path())
    dispositions: Path | None = None
    token_file: Path | None = None
    strict: bool = False
    force: bool = False
    retry_unknown: bool = False
    columns: tuple[tuple[str, str], ...] = ()  # (field, header text): columns chosen by --column / [columns]
    no_notes: bool = False  # a file without a notes column is sent with empty notes (else refused)
    call_id_pattern: str | None = None  # a regular expression every callID must match in full
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where it came from

    @property
    def ledger_path(self) -> Path:
        return self.ledger if self.ledger is not None else default_ledger_path()

    @property
    def old_ledger_path(self) -> Path | None:
        """Where the ledger was by default before it moved to the user's state folder (taken over once by
        the next sending command); None when --ledger or the config names the ledger."""
        return self.reports_dir / LEDGER_NAME if self.ledger is None else None

    def described(self) -> list[tuple[str, str]]:
        """(name, value) pairs for the Summary sheet and `batch-dispose config`."""
        return [
            ("base_url", self.base_url or "(not set)"),
            ("concurrency", str(self.concurrency)),
            ("rate", f"{self.rate:g} requests/s" if self.rate else "no limit"),
            ("timeout", f"{self.timeout:g} s"),
            ("retries", str(self.retries)),
            ("reports_dir", str(self.reports_dir)),
            ("ledger", str(self.ledger_path)),
            ("dispositions", str(self.dispositions) if self.dispositions else "(any)"),
            ("token_file", str(self.token_file) if self.token_file else "(not set)"),
            ("strict", "yes" if self.strict else "no"),
            ("force", "yes" if self.force else "no"),
            ("retry_unknown", "yes" if self.retry_unknown else "no"),
            ("columns", ", ".join(f"{name}={header}" for name, header in self.columns) or "(by name)"),
            ("no_notes", "yes" if self.no_notes else "no"),
            ("call_id_pattern", self.call_id_pattern or "(any)"),
        ]
