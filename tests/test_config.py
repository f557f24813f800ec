"""`batch-dispose.toml` and `batch-dispose config`: where each setting comes from, and mistakes named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TOKEN, default_ledger, read_results, rows_of, write_csv

#: Every setting a user can put in the file or on the command line (the long flags, `_` for `-`).
SETTINGS = ("base_url", "concurrency", "rate", "timeout", "retries", "reports_dir", "ledger", "dispositions",
            "token_file", "strict", "force", "retry_unknown")


def _toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _settings(result) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    assert result.code in (0, 1), result.err  # 1: a check failed (`config` is also a doctor: test_commands.py)
    return result.json()["settings"]


# --- mistakes in the file ------------------------------------------------------------------------------------


def test_typo_in_a_key_names_it_and_suggests_the_right_one(cli, tmp_path: Path) -> None:
    """`concurency = 4` is refused with exit 2, naming the key and suggesting `concurrency`."""
    config = _toml(tmp_path / "batch-dispose.toml", "concurency = 4\n")
    result = cli("config", "--config", config)
    assert result.code == 2
    assert "concurency" in result.err and "'concurrency'" in result.err
    assert "batch-dispose.toml" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_force_cannot_be_set_in_the_config_file(cli, sim, tmp_path: Path) -> None:
    """`force = true` in the file is refused (every run would resend disposed calls); --force still works."""
    config = _toml(tmp_path / "batch-dispose.toml", f'base_url = "{sim.base_url}"\nforce = true\n')
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, "--config", config)
    assert result.code == 2 and "'force' cannot be set in the config file" in result.err
    assert sim.stats.requests == 0


def test_typo_in_the_working_folders_config_stops_a_run_before_sending(cli, sim, tmp_path: Path) -> None:
    """A run with a bad key in ./batch-dispose.toml exits 2 and sends nothing (a silent default would be worse)."""
    _toml(tmp_path / "batch-dispose.toml", f'base_url = "{sim.base_url}"\nretires = 0\n')
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    result = cli("run", source)
    assert result.code == 2
    assert "retires" in result.err and "'retries'" in result.err
    assert sim.stats.requests == 0
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*.xlsx"))


def test_unknown_key_with_no_near_match_lists_the_known_keys(cli, tmp_path: Path) -> None:
    """A key like nothing we know is named, and the known keys are listed."""
    config = _toml(tmp_path / "batch-dispose.toml", 'flavour = "red"\n')
    result = cli("config", "--config", config)
    assert result.code == 2
    assert "flavour" in result.err
    assert all(key in result.err for key in ("base_url", "concurrency", "token_file"))


@pytest.mark.parametrize(("line", "key"), [
    ('concurrency = "8"', "concurrency"),
    ("concurrency = 4.5", "concurrency"),
    ("concurrency = 0", "concurrency"),
    ('strict = "yes"', "strict"),
    ("force = 1", "force"),
    ("rate = -1", "rate"),
    ("timeout = 0", "timeout"),
    ('timeout = "30s"', "timeout"),
    ("retries = -1", "retries"),
    ("base_url = 8080", "base_url"),
    ('reports_dir = ""', "reports_dir"),
    ("token_file = true", "token_file"),
])
def test_a_value_of_the_wrong_type_or_range_names_the_key(cli, tmp_path: Path, line: str, key: str) -> None:
    """A value of the wrong type or out of range exits 2 with one line naming the file and the key."""
    config = _toml(tmp_path / "batch-dispose.toml", line + "\n")
    result = cli("config", "--config", config)
    assert result.code == 2
    assert f"'{key}'" in result.err and "batch-dispose.toml" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


@pytest.mark.parametrize("text", ["concurrency = \n", "base_url = http://127.0.0.1\n", "[settings\n",
                                  "concurrency = 4\nconcurrency = 5\n"])
def test_invalid_toml_names_the_file(cli, tmp_path: Path, text: str) -> None:
    """A file that is not valid TOML exits 2 naming the file."""
    config = _toml(tmp_path / "conf" / "nightly.toml", text)
    result = cli("config", "--config", config)
    assert result.code == 2
    assert "nightly.toml" in result.err and "TOML" in result.err


def test_a_missing_config_file_names_it(cli, tmp_path: Path) -> None:
    """--config naming a file that is not there exits 2 naming the file."""
    result = cli("config", "--config", tmp_path / "nowhere.toml")
    assert result.code == 2
    assert "nowhere.toml" in result.err


def test_subdomain_and_base_url_both_in_the_file_names_the_file(cli, tmp_path: Path) -> None:
    """Both subdomain and base_url in the file is an error that points at the file, not at flags never given."""
    config = _toml(tmp_path / "batch-dispose.toml", 'subdomain = "acme"\nbase_url = "https://proxy.example"\n')
    result = cli("config", "--config", config)
    assert result.code == 2
    assert "batch-dispose.toml" in result.err


# --- precedence -----------------------------------------------------------------------------------------------


def test_flags_beat_the_file_and_the_file_beats_defaults(cli, tmp_path: Path) -> None:
    """`config --json` shows each value with its source: "command line", the config file, or "default"."""
    config = _toml(tmp_path / "batch-dispose.toml",
                   'base_url = "https://proxy.example"\nconcurrency = 4\ntimeout = 12\nstrict = true\n')
    settings = _settings(cli("config", "--config", config, "--concurrency", "16", "--json"))
    assert settings["concurrency"] == {"value": "16", "source": "command line"}
    assert settings["timeout"]["value"] == "12 s"
    assert settings["strict"]["value"] == "yes"
    assert settings["base_url"]["value"] == "https://proxy.example"
    for key in ("timeout", "strict", "base_url"):
        assert Path(settings[key]["source"]).resolve() == config.resolve(), key
    assert settings["retries"] == {"value": "3", "source": "default"}
    assert settings["rate"]["source"] == "default"
    assert settings["force"] == {"value": "no", "source": "default"}


def test_defaults_are_the_documented_ones(cli, tmp_path: Path) -> None:
    """With no file and no flags: concurrency 8, timeout 30 s, retries 3, reports/ in the working folder."""
    settings = _settings(cli("config", "--json"))
    assert settings["concurrency"]["value"] == "8"
    assert settings["timeout"]["value"] == "30 s"
    assert settings["retries"]["value"] == "3"
    assert Path(settings["reports_dir"]["value"]) == tmp_path / "reports"
    assert Path(settings["ledger"]["value"]) == default_ledger()  # the user's, not the folder's
    assert {entry["source"] for entry in settings.values()} == {"default"}


@pytest.mark.parametrize(("file_line", "flags", "expected"), [
    ('base_url = "https://proxy.example"', ("--subdomain", "acme"), "https://acme.ryng.in"),
    ('subdomain = "acme"', ("--base-url", "https://proxy.example"), "https://proxy.example"),
    ('subdomain = "acme"', ("--subdomain", "other"), "https://other.ryng.in"),
])
def test_the_target_on_the_command_line_beats_the_one_in_the_file(cli, tmp_path: Path, file_line: str,
                                                                  flags: tuple[str, ...], expected: str) -> None:
    """--subdomain or --base-url on the command line wins over base_url or subdomain in the file."""
    config = _toml(tmp_path / "batch-dispose.toml", file_line + "\n")
    settings = _settings(cli("config", "--config", config, *flags, "--json"))
    assert settings["base_url"] == {"value": expected, "source": "command line"}


def test_subdomain_in_the_file_means_its_ryng_host(cli, tmp_path: Path) -> None:
    """`subdomain = "acme"` in the file targets https://acme.ryng.in, sourced from the file."""
    config = _toml(tmp_path / "batch-dispose.toml", 'subdomain = "acme"\n')
    settings = _settings(cli("config", "--config", config, "--json"))
    assert settings["base_url"]["value"] == "https://acme.ryng.in"
    assert Path(settings["base_url"]["source"]).resolve() == config.resolve()


# --- paths ----------------------------------------------------------------------------------------------------


def test_relative_paths_in_the_file_are_relative_to_the_file(cli, monkeypatch, tmp_path: Path) -> None:
    """reports_dir, ledger, token_file and dispositions in the file resolve beside the file, not in the cwd."""
    etc = tmp_path / "etc" / "batch"
    config = _toml(etc / "batch-dispose.toml", 'reports_dir = "out"\nledger = "state/ledger.sqlite"\n'
                   'token_file = "secret/token.txt"\ndispositions = "../names.txt"\n')
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    settings = _settings(cli("config", "--config", config.resolve(), "--json"))
    assert Path(settings["reports_dir"]["value"]) == etc / "out"
    assert Path(settings["ledger"]["value"]) == etc / "state" / "ledger.sqlite"
    assert Path(settings["token_file"]["value"]) == etc / "secret" / "token.txt"
    assert Path(settings["dispositions"]["value"]) == tmp_path / "etc" / "names.txt"


def test_relative_paths_on_the_command_line_are_relative_to_the_cwd(cli, monkeypatch, tmp_path: Path) -> None:
    """A relative --reports-dir or --ledger flag means the working folder, even when a config file elsewhere
    is used."""
    config = _toml(tmp_path / "etc" / "batch-dispose.toml", 'reports_dir = "out"\n')
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = _settings(cli("config", "--config", config, "--reports-dir", "mine", "--ledger", "l.sqlite",
                             "--json"))
    assert Path(settings["reports_dir"]["value"]) == cwd / "mine"
    assert Path(settings["ledger"]["value"]) == cwd / "l.sqlite"


def test_a_run_writes_where_the_config_file_says_from_another_folder(cli, sim, monkeypatch, tmp_path: Path) -> None:
    """A run with --config from another folder sends with the file's settings and writes beside the file."""
    etc = tmp_path / "etc"
    config = _toml(etc / "batch-dispose.toml", f'base_url = "{sim.base_url}"\nconcurrency = 3\n'
                   'reports_dir = "reports"\nledger = "state/ledger.sqlite"\n')
    cwd = tmp_path / "work"
    cwd.mkdir()
    source = write_csv(cwd / "calls.csv", rows_of(5))
    monkeypatch.chdir(cwd)
    result = cli("run", "calls.csv", "--config", config, "--json")
    assert result.code == 0, result.err
    workbook = Path(result.json()["results"])
    assert workbook.parent == etc / "reports"
    assert (etc / "state" / "ledger.sqlite").is_file()
    assert sorted(p.name for p in cwd.iterdir()) == [source.name]
    _, _, summary = read_results(workbook)
    assert str(summary["Setting: concurrency"]) == "3"
    assert sim.stats.route_requests == 5


# --- `batch-dispose config` -----------------------------------------------------------------------------------


def test_config_shows_every_setting_with_its_source(cli, tmp_path: Path) -> None:
    """The text output has a line per setting with its value and where it came from, then the token state."""
    config = _toml(tmp_path / "batch-dispose.toml", "retries = 5\n")
    result = cli("config", "--config", config, "--timeout", "9")
    assert result.code == 1, result.err  # no base_url: that check fails
    lines = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    for name in SETTINGS:
        assert name in lines, f"{name} missing from `batch-dispose config`"
    assert lines["retries"].split()[1] == "5" and str(config) in lines["retries"]
    assert "9 s" in lines["timeout"] and "(command line)" in lines["timeout"]
    assert "(default)" in lines["concurrency"]
    assert "token" in lines


@pytest.mark.parametrize("via", ["environment", "token_file", "--token-file"])
def test_config_shows_the_token_only_as_set_never_its_value(cli, monkeypatch, tmp_path: Path, via: str) -> None:
    """The token is shown as set or not set, in text and JSON, never its value (env var or token file)."""
    secret = "s3cr3t-token-do-not-print-0042"
    token_file = tmp_path / "token.txt"
    token_file.write_text(secret + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    args: list[object] = ["config"]
    if via == "token_file":
        args += ["--config", _toml(tmp_path / "batch-dispose.toml", 'token_file = "token.txt"\n')]
    elif via == "--token-file":
        args += ["--token-file", token_file]
    env_token = secret if via == "environment" else None
    text = cli(*args, token=env_token)
    as_json = cli(*args, "--json", token=env_token)
    for result in (text, as_json):
        assert result.code in (0, 1), result.err  # 1: no base_url in this setup
        assert secret not in result.out + result.err
        assert "s3cr3t" not in result.out + result.err
    token_state = as_json.json()["token"]
    assert "NOT SET" not in token_state and "MISSING" not in token_state
    if via != "environment":
        assert str(token_file) in token_state


def test_config_says_when_there_is_no_token(cli, tmp_path: Path) -> None:
    """With no RYNG_ACCESS_TOKEN and no token file, `config` says the token is not set."""
    result = cli("config", token=None)
    assert result.code == 1  # a failed check
    token_line = next(line for line in result.out.splitlines() if line.startswith("token "))
    assert "NOT SET" in token_line and "RYNG_ACCESS_TOKEN" in token_line
    assert TOKEN not in result.out


def test_config_in_the_working_folder_is_picked_up_without_config_flag(cli, sim, tmp_path: Path) -> None:
    """./batch-dispose.toml is read with no --config: `config` shows it as the source and `run` uses it."""
    _toml(tmp_path / "batch-dispose.toml", f'base_url = "{sim.base_url}"\nconcurrency = 5\n')
    settings = _settings(cli("config", "--json"))
    assert settings["concurrency"]["value"] == "5"
    assert Path(settings["concurrency"]["source"]) == tmp_path / "batch-dispose.toml"
    assert settings["base_url"]["value"] == sim.base_url
    source = write_csv(tmp_path / "calls.csv", rows_of(4))
    result = cli("run", source, "--json")  # no --base-url: it comes from the file
    assert result.code == 0, result.err
    assert result.json()["counts"]["disposed"] == 4
    assert sim.stats.route_requests == 4
