"""What earlier runs say about a row: send it, or give it its status now.

Two witnesses can speak for a row: the ledger (what this user's runs sent to this Ryng host, and
what came back) and the status column of a results workbook given back as input. The ledger is
the truth about what was sent: a call it has as disposed is skipped whatever the workbook says, and
only --force sends it again. The workbook speaks only for calls the ledger does not know (a run
made with another ledger), as it always did.

`decide` is the one pure function that weighs them; `SettlingJournal` and `after_resend` settle a
re-sent unknown that the server answers 500 ("probably disposed by the first attempt");
`resolve_calls` records what a person checked in Ryng.
"""

from __future__ import annotations

import getpass
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import NotInLedgerError, UsageError
from .history import when  # ledger times as people read them: local, to the second
from .models import CallRequest, Outcome, Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from .ledger import CallRecord, Ledger
    from .runner import Journal
    from .settings import Settings

SHOWN_CHARS = 60  # of a changed value quoted in a message


@dataclass(frozen=True)
class Given:
    """What the status column of a results workbook given back says about a row."""

    status: str  # the cell as read, lower-case ("disposed", "unknown", …)
    at: str = ""  # its finished_at cell


@dataclass(frozen=True)
class Decision:
    """Send the row (with `message` as a note to add to its outcome, if any), or give it `status` now."""

    send: bool
    status: Status | None = None
    message: str = ""
    resends_unknown: bool = False  # sent again with --retry-unknown: a 500 then means "probably disposed"
    changed: bool = False  # skipped as disposed, but the file now says something else than what was sent


def decide(call: CallRequest, given: Given | None, known: CallRecord | None, *, force: bool,
           retry_unknown: bool) -> Decision:
    """Weigh the workbook given back (`given`) and the ledger (`known`) for one valid row.

    Ledger disposed: skipped (naming what changed since it was sent), unless --force. Ledger unknown
    after a re-send answered 500 (probably disposed): unknown, unless --force. Ledger unknown: unknown
    unless --retry-unknown. Any other state the ledger knows (failed, unauthorized, pending, resolved
    as failed): sent. A call the ledger does not know: the workbook's disposed/skipped is settled and
    its unknown stays unknown (the same flags apply); anything else is sent.
    """
    if known is not None:
        return _from_ledger(call, known, force=force, retry_unknown=retry_unknown)
    if given is None:
        return Decision(True)
    at = f" at {when(given.at)}" if given.at else ""
    if given.status in (Status.DISPOSED, Status.SKIPPED):
        if force:
            return Decision(True, message=f"sent again with --force: it was already {given.status}{at}")
        return Decision(False, Status.SKIPPED, f"already {given.status}{at} (results workbook); not sent again")
    if given.status == Status.UNKNOWN:
        if retry_unknown or force:
            flag = "--retry-unknown" if retry_unknown else "--force"
            return Decision(True, message=f"re-sent with {flag}: left unknown by an earlier run{at}",
                            resends_unknown=True)
        return Decision(False, Status.UNKNOWN, f"left unknown by an earlier run{at} (results workbook); not "
                        f"re-sent: check the call in Ryng, or re-run with --retry-unknown")
    return Decision(True)


def _from_ledger(call: CallRequest, known: CallRecord, *, force: bool, retry_unknown: bool) -> Decision:
    source = (f"recorded by {known.resolved_by} with resolve" if known.resolved_by
              else f"ledger; last sent from {_name(known.file)}")
    if known.disposed:
        if force:
            return Decision(True, message=f"sent again with --force: it was already disposed at "
                            f"{when(known.disposed_at)}")
        changes = differences(call, known)
        message = f"already disposed at {when(known.disposed_at)} ({source}); not sent again"
        if changes:
            message += f". The file now differs from what was sent ({'; '.join(changes)}): --force would send it again"
        return Decision(False, Status.SKIPPED, message, changed=bool(changes))
    if known.status not in (Status.UNKNOWN, "sending"):
        return Decision(True)
    if known.probably_disposed:
        if force:
            return Decision(True, message=f"sent again with --force: it was probably disposed at "
                            f"{when(known.finished_at)}")
        return Decision(False, Status.UNKNOWN, f"probably disposed already: a re-send at {when(known.finished_at)} was "
                        f"answered 500 ({source}), so it is not sent again. Check the call in Ryng, then record it: "
                        f"batch-dispose resolve {call.call_id} --as disposed (or --as failed to send it again)")
    if retry_unknown or force:
        flag = "--retry-unknown" if retry_unknown else "--force"
        return Decision(True, message=f"re-sent with {flag}: left unknown by an earlier run at "
                        f"{when(known.finished_at)}, from {_name(known.file)}", resends_unknown=True)
    return Decision(False, Status.UNKNOWN, f"left unknown by an earlier run at {when(known.finished_at)} "
                    f"({_name(known.file)}); not re-sent: check the call in Ryng, or re-run with --retry-unknown")


def differences(call: CallRequest, known: CallRecord) -> list[str]:
    """What the row now says that differs from what was sent ("disposition: sent Callback, the file now says
    Sale Done"); nothing for a call sent before the ledger kept what was sent. Text is compared as a workbook
    shows it: a control character the results workbook showed as its picture (BEL as ␇) is no change."""
    from .workbook import visible

    changes = []
    for name, sent, now in (("disposition", known.disposition, call.disposition), ("logID", known.log_id, call.log_id),
                            ("notes", known.notes, call.notes)):
        if sent is not None and sent != now and (not isinstance(sent, str) or not isinstance(now, str)
                                                 or visible(sent)[0] != visible(now)[0]):
            changes.append(f"{name}: sent {_shown(sent)}, the file now says {_shown(now)}")
    return changes


PROBABLY_DISPOSED = ("re-sent and answered 500 ({reply}): the first attempt, whose reply was lost, probably disposed "
                     "it, so no later run sends it again (--retry-unknown included). Check the call in Ryng, then "
                     "record it: batch-dispose resolve {call} --as disposed (or --as failed to send it again)")


def after_resend(call: CallRequest, outcome: Outcome) -> Outcome:
    """A row re-sent with --retry-unknown that the server answers 500 is not `failed`: "Failed to dispose"
    is what Ryng says to a call that already ended, most likely by the first attempt. It stays `unknown`
    with http_status 500, which the ledger keeps as "probably disposed" (see CallRecord.probably_disposed)."""
    if outcome.status is not Status.FAILED or outcome.http_status != 500:
        return outcome
    reply = outcome.message.removeprefix("the server did not dispose of the call ").strip("()")
    return replace(outcome, status=Status.UNKNOWN, message=PROBABLY_DISPOSED.format(reply=reply, call=call.call_id))


class SettlingJournal:
    """The ledger's journal for a run, recording a re-sent unknown answered 500 as probably disposed
    (`after_resend`) rather than failed; `settle` gives the row the same outcome in the workbook."""

    def __init__(self, inner: Journal, resent_unknown: Collection[int]) -> None:
        self._inner = inner
        self._resent = resent_unknown  # row indexes

    def settle(self, call: CallRequest, outcome: Outcome) -> Outcome:
        return after_resend(call, outcome) if call.index in self._resent else outcome

    async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]], starting: Sequence[CallRequest]) -> None:
        await self._inner.commit([(call, self.settle(call, outcome)) for call, outcome in finished], starting)


def new_host_notice(ledger: Ledger, host: str) -> str | None:
    """One line when a run is about to send from a ledger that has never seen this Ryng host: a wrong
    --ledger or a new machine then shows before calls go out twice."""
    if ledger.knows_host(host):
        return None
    return f"the ledger {_home(ledger.path)} has no record of {host} yet: every row not disposed is sent"


@contextmanager
def reading(settings: Settings) -> Iterator[Callable[[list[str]], Mapping[str, CallRecord]] | None]:
    """For `validate` with a target: what the ledger knows, read only (no lock, never created); None
    without a target or a ledger. A ledger still at the old default place is read too."""
    from contextlib import ExitStack

    from .ledger import Ledger

    if settings.base_url is None:
        yield None
        return
    host = settings.base_url
    with ExitStack() as stack:
        found = [stack.enter_context(Ledger.read(path)) for path in (settings.old_ledger_path, settings.ledger_path)
                 if path is not None]
        ledgers = [ledger for ledger in found if ledger is not None]  # the user's ledger last: it wins
        if not ledgers:
            yield None
            return

        def lookup(call_ids: list[str]) -> Mapping[str, CallRecord]:
            known: dict[str, CallRecord] = {}
            for ledger in ledgers:
                known.update(ledger.known(host, call_ids))
            return known

        yield lookup


@dataclass(frozen=True)
class Resolution:
    """One call recorded by `resolve`: its state before, and what a person said."""

    call_id: str
    host: str
    before: str  # its ledger status before (e.g. unknown)
    disposed: bool
    who: str
    why: str
    confirmed: bool = False  # the server itself had answered that it disposed the call (a 200), no person


def resolve_calls(settings: Settings, call_ids: Sequence[str], *, disposed: bool, note: str = "",
                  who: str | None = None) -> list[Resolution]:
    """`batch-dispose resolve`: record what a person checked in Ryng about calls the ledger knows on the
    target host. Disposed: later runs skip them. Not disposed (`--as failed`): later runs send them.
    Raises UsageError without a target, NotInLedgerError (nothing recorded) for a call ID the ledger has
    no record of, LockHeldError while a run holds the lock, DamagedLedgerError for a damaged ledger."""
    from .ledger import Ledger

    if settings.base_url is None:
        raise UsageError("Say which Ryng account the calls are on: --subdomain NAME (or --base-url URL, or "
                         "base_url in batch-dispose.toml).")
    host, path = settings.base_url, settings.ledger_path
    wanted = list(dict.fromkeys(call_id.strip() for call_id in call_ids if call_id.strip()))
    if not wanted:
        raise UsageError("Name at least one call ID to resolve.")
    who = who or os_user()
    old = settings.old_ledger_path
    if not path.exists() and not (old is not None and old.exists()):
        raise NotInLedgerError(f"There is no ledger at {path} yet: nothing has been sent with it, so there is "
                               f"nothing to resolve.", path=path, host=host, call_ids=tuple(wanted))
    with Ledger.open(path) as ledger:
        ledger.take_over(old)  # a ledger still at the old default place knows these calls too
        missing = [call_id for call_id in wanted if call_id not in ledger.known(host, wanted)]
        if missing:
            raise NotInLedgerError(f"the ledger {path} has no record of {', '.join(missing[:10])} on {host}; "
                                   f"nothing was recorded. Check the call IDs and the host (--subdomain / "
                                   f"--base-url).", path=path, host=host, call_ids=tuple(missing))
        run_id = ledger.begin_run(host, f"resolve by {who}", "")
        before = ledger.resolve(host, wanted, disposed=disposed, who=who, why=note, run_id=run_id)
        ledger.end_run(run_id, {Status.DISPOSED if disposed else Status.FAILED: len(wanted)})
    return [Resolution(record.call_id, host, record.status, disposed, who, note,
                       confirmed=record.status == Status.DISPOSED and record.http_status == 200
                       and not record.resolved_by) for record in before]


def os_user() -> str:
    """The operating system's name for who runs this (what `resolve` records as who checked)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "an unknown user"


def _name(file: str) -> str:
    from pathlib import Path

    return Path(file).name


def _shown(value: object) -> str:
    text = str(value)
    if isinstance(value, int):
        return text
    if not text:
        return "(empty)"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def _home(path: object) -> str:
    from pathlib import Path

    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if home and home != "/" and text.startswith(home + "/") else text
