"""Settings from three places: command-line flags beat `batch-dispose.toml`, which beats defaults.

The config file is `batch-dispose.toml` in the working folder, or the one named by `--config`. Its
top-level keys are named like the long flags (`base_url`, `token_file`, …); an unknown key is an
error naming it, and relative paths in it are relative to the file's own folder.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .client import base_url_for
from .errors import ConfigError, UsageError
from .settings import DEFAULT_REPORTS_DIR, Settings

CONFIG_NAME = "batch-dispose.toml"
PATH_KEYS = ("token_file", "reports_dir", "ledger", "dispositions")
NUMBER_KEYS = {"concurrency": int, "retries": int, "timeout": float, "rate": float}
BOOL_KEYS = ("strict", "retry_unknown", "no_notes")  # not force: resending everything is a decision for one run
KNOWN_KEYS = ("subdomain", "base_url", *PATH_KEYS, *NUMBER_KEYS, *BOOL_KEYS, "force",  # force: flag only
              "columns", "call_id_pattern")
COLUMN_FIELDS = ("callID", "logID", "disposition", "notes")
LIMITS = {"concurrency": (1, 256), "retries": (0, 10), "timeout": (0.1, 600.0), "rate": (0.1, 10_000.0)}


def find_config(explicit: Path | None, cwd: Path) -> Path | None:
    """The config file to read: --config, else batch-dispose.toml in the working folder, else none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: the config file does not exist.", path=explicit)
        return explicit
    candidate = cwd / CONFIG_NAME
    return candidate if candidate.is_file() else None


def read_config(path: Path) -> dict[str, Any]:
    """The file's keys, checked by name and type; relative paths made relative to the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).", path=path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: the config file is not valid TOML ({exc}).", path=path) from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "force":
            raise ConfigError(f"{path}: 'force' cannot be set in the config file (every run would send already "
                              f"disposed calls again); pass --force to the one run that needs it.", path=path, key=key)
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(KNOWN_KEYS)})"
            raise ConfigError(f"{path}: unknown key '{key}'{hint}.", path=path, key=key)
        values[key] = _typed(path, key, value)
    return values


def _typed(path: Path, key: str, value: object) -> object:
    if key == "columns":
        if not isinstance(value, dict) or not all(isinstance(v, str) and v.strip() for v in value.values()):
            raise ConfigError(f'{path}: \'columns\' must be a table of field = "header text" (e.g. [columns] '
                              f'then notes = "Remarks"), after the top-level keys.', path=path, key=key)
        return column_mapping(value.items(), f"{path}: [columns]")
    if key == "call_id_pattern":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: 'call_id_pattern' must be a regular expression in quotes.", path=path, key=key)
        return check_pattern(value, f"{path}: 'call_id_pattern'")
    if key in PATH_KEYS or key in ("subdomain", "base_url"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: '{key}' must be a non-empty text value in quotes.", path=path, key=key)
        return (path.parent / Path(value).expanduser()).resolve() if key in PATH_KEYS else value.strip()
    if key in BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: '{key}' must be true or false.", path=path, key=key)
        return value
    kind = NUMBER_KEYS[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{path}: '{key}' must be a {'whole ' if kind is int else ''}number.", path=path, key=key)
    return check_limit(key, kind(value), f"{path}: '{key}'")


def check_limit(key: str, value: float, label: str) -> Any:
    low, high = LIMITS[key]
    if not low <= value <= high:
        raise UsageError(f"{label} must be between {low:g} and {high:g} (got {value:g}).")
    return value


def column_mapping(pairs, label: str) -> tuple[tuple[str, str], ...]:  # type: ignore[no-untyped-def]
    """(field, header) pairs with the field's canonical spelling; a field not among the four is an error."""
    mapping: dict[str, str] = {}
    for name, header in pairs:
        canonical = next((known for known in COLUMN_FIELDS if known.casefold() == str(name).strip().casefold()), None)
        if canonical is None:
            raise UsageError(f"{label}: {name!r} is not a field; map one of {', '.join(COLUMN_FIELDS)} "
                             f"(e.g. notes=Remarks).")
        mapping[canonical] = str(header).strip()
    return tuple(mapping.items())


def check_pattern(pattern: str, label: str) -> str:
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"{label} is not a valid regular expression ({exc}); e.g. \\d+ for digits only.") from None
    return pattern


def resolve(flags: Mapping[str, Any], *, config: Path | None, cwd: Path) -> Settings:
    """Settings from flags (None = not given), then the config file, then defaults; with sources."""
    path = find_config(config, cwd)
    from_file = read_config(path) if path is not None else {}
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if flags.get("columns") and from_file.get("columns"):  # a flag maps its field; the file keeps the others
        flags = {**flags, "columns": tuple({**dict(from_file["columns"]), **dict(flags["columns"])}.items())}
    for key in KNOWN_KEYS:
        if flags.get(key) is not None and flags.get(key) is not False and flags.get(key) != ():
            merged[key], sources[key] = flags[key], "command line"
        elif key in from_file:
            merged[key], sources[key] = from_file[key], str(path)
    if "subdomain" in from_file and "base_url" in from_file:
        raise ConfigError(f"{path}: give either 'subdomain' or 'base_url', not both.", path=path, key="base_url")
    subdomain, base_url = merged.pop("subdomain", None), merged.pop("base_url", None)
    source = sources.pop("subdomain", None)
    if subdomain is not None and base_url is not None and source != sources["base_url"]:
        # one on the command line, one in the file: the command line wins
        if source == "command line":
            base_url = None
        else:
            subdomain = None
    if subdomain is not None or base_url is not None:
        merged["base_url"] = base_url_for(subdomain=subdomain, base_url=base_url)
        sources["base_url"] = source if subdomain is not None and source else sources["base_url"]
    for key in PATH_KEYS:  # flags are relative to the working folder (the file's are already absolute)
        if key in merged:
            merged[key] = (cwd / merged[key]).resolve()
    merged.setdefault("reports_dir", (cwd / DEFAULT_REPORTS_DIR).resolve())
    names = {field.name for field in fields(Settings)}
    settings = Settings(**{key: value for key, value in merged.items() if key in names})
    sources.update({name: "default" for name in names - set(sources) - {"sources"}})
    return replace(settings, sources=sources)
