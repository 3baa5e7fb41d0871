"""Config precedence and validation, through the real `beepnet` command where it matters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beepnet import config
from beepnet.config import ConfigError

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_defaults_need_no_file():
    cfg = config.load(environ={})
    assert cfg.telegram.api_url == "https://api.telegram.org"
    assert cfg.notify.cooldown_minutes == 2.0
    assert cfg.cycle.no_beep_minutes == 150.0 and cfg.cycle.remind_minutes == 30.0
    assert cfg.audio.chunk_seconds == 3.0
    assert not cfg.telegram.enabled


def test_file_then_env_then_set(tmp_path):
    f = tmp_path / "beepnet.toml"
    f.write_text('[telegram]\nchat_id = 111\ntoken = "1:short"\n'
                 '[audio]\ngate_dbfs = -40\n[storage]\ndir = "/srv/a"\n')
    env = {"BEEPNET_TELEGRAM_TOKEN": TOKEN, "BEEPNET_TELEGRAM_CHAT_ID": "222"}
    cfg = config.load(f, ["audio.gate_dbfs=-35.5", "storage.dir=/srv/b"], environ=env)
    assert cfg.telegram.chat_id == "222"          # env beats file
    assert cfg.telegram.token == TOKEN            # env beats file (whose token was invalid)
    assert cfg.audio.gate_dbfs == -35.5           # --set beats file
    assert str(cfg.storage.path) == "/srv/b"
    cfg = config.load(f, ["telegram.chat_id=333"], environ=env)
    assert cfg.telegram.chat_id == "333"          # --set beats env


def test_example_config_is_valid_and_documents_every_key(tmp_path):
    example = tmp_path / "example.toml"
    r = run_cli("config", "--example")
    assert r.returncode == 0
    example.write_text(r.stdout)
    text = r.stdout
    config.load(example, environ={})
    for name, cls in config.sections().items():
        assert f"[{name}]" in text
        for key in config._keys(cls):
            assert f"{key} =" in text, f"{name}.{key} missing from the example"


@pytest.mark.parametrize("override, needle", [
    ("audio.gate_dbfs=loud", "audio.gate_dbfs"),
    ("audio.gate_dbfs=12", "audio.gate_dbfs"),
    ("notify.cooldown_minutes=-1", "notify.cooldown_minutes"),
    ("detector.kind=magic", "detector.kind"),
    ("audio.nope=1", "audio.nope"),
    ("nosuch.key=1", "nosuch"),
    ("telegram.chat_id=my chat", "telegram.chat_id"),
    ("telegram.api_url=ftp://x", "telegram.api_url"),
    ("storage.max_backlog_chunks=2.5", "storage.max_backlog_chunks"),
    ("audio.hop_seconds=4", "audio.hop_seconds"),
    ("gate_dbfs", "section.key=value"),
    ("cycle.pause_minutes=12", "cycle.pause_minutes"),
    ("cycle.start_minutes=9", "cycle.start_minutes"),
])
def test_bad_value_exits_78_with_one_line(override, needle):
    r = run_cli("config", "--set", override)
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_bad_file_exits_78(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[audio]\ngate_dbfs = \n")
    r = run_cli("run", "--config", str(f))
    assert r.returncode == 78 and "not valid TOML" in r.stderr
    f.write_text("[audio]\ngain = 3\n")
    r = run_cli("run", "--config", str(f))
    assert r.returncode == 78 and "audio.gain" in r.stderr and "gate_dbfs" in r.stderr
    r = run_cli("run", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 78 and "does not exist" in r.stderr


def test_printed_config_masks_the_token():
    env = {"BEEPNET_TELEGRAM_TOKEN": TOKEN, "BEEPNET_TELEGRAM_CHAT_ID": "-1001234",
           "PATH": "/usr/bin:/bin"}
    r = run_cli("config", env=env)
    assert r.returncode == 0
    assert TOKEN not in r.stdout and TOKEN.split(":")[1] not in r.stdout
    assert 'token = "(set, hidden)"' in r.stdout
    assert 'chat_id = "-1001234"' in r.stdout
    # The printed config is itself a valid config (after dropping the masked secret).
    text = r.stdout.replace('token = "(set, hidden)"', "")
    assert config.tomllib.loads(text)["telegram"]["chat_id"] == "-1001234"


def test_a_wrong_token_is_never_echoed():
    bad = "123:" + "x" * 10
    with pytest.raises(ConfigError) as e:
        config.load(environ={"BEEPNET_TELEGRAM_TOKEN": bad})
    assert bad not in str(e.value)


def test_storage_follows_systemd_directories(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/beepnet")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/beepnet")
    cfg = config.load(environ={})
    assert str(cfg.storage.path) == "/var/lib/beepnet"
    assert str(cfg.storage.chunk_dir) == "/run/beepnet/chunks"
    assert str(cfg.storage.alert_dir) == "/var/lib/beepnet/alerts"
    cfg = config.load(environ={}, overrides=["storage.runtime_dir=/dev/shm/bn"])
    assert str(cfg.storage.chunk_dir) == "/dev/shm/bn/chunks"


def test_token_from_a_systemd_credential(tmp_path):
    (tmp_path / "telegram-token").write_text(TOKEN + "\n")
    cfg = config.load(environ={"CREDENTIALS_DIRECTORY": str(tmp_path),
                               "BEEPNET_TELEGRAM_TOKEN": "1:" + "x" * 30})
    assert cfg.telegram.token == TOKEN  # the credential wins over the environment
    cfg = config.load(environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert cfg.telegram.token == ""


# --- where the file is looked for -------------------------------------------------------------


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A home, an XDG config directory and a stand-in for /etc/beepnet/beepnet.toml (patched:
    the real /etc is never touched), none of them holding a file yet."""
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    system = tmp_path / "etc" / "beepnet" / "beepnet.toml"
    monkeypatch.setattr(config, "SYSTEM_CONFIG", system)

    def put(path, gate: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"[audio]\ngate_dbfs = {gate}\n")
        return path

    return home, xdg, system, put


def test_the_first_file_found_is_the_only_one_read(places, tmp_path):
    home, xdg, system, put = places
    environ = {"HOME": str(home)}
    cfg = config.load(environ=environ)
    assert cfg.origin.path is None and config.describe(cfg) == "none: built-in defaults"
    put(system, -41)
    assert config.load(environ=environ).audio.gate_dbfs == -41
    # ~/.config/beepnet/beepnet.toml without $XDG_CONFIG_HOME; it shadows /etc wholly.
    user = put(home / ".config" / "beepnet" / "beepnet.toml", -42)
    user.write_text('[detector]\nkind = "tone"\n')
    cfg = config.load(environ=environ)
    assert cfg.origin.path == user and cfg.audio.gate_dbfs == -50 and cfg.detector.kind == "tone"
    # $XDG_CONFIG_HOME, when set (and absolute), replaces ~/.config.
    put(xdg / "beepnet" / "beepnet.toml", -43)
    assert config.load(environ=dict(environ, XDG_CONFIG_HOME=str(xdg))).audio.gate_dbfs == -43
    assert config.load(environ=dict(environ, XDG_CONFIG_HOME="rel")).origin.path == user
    # $BEEPNET_CONFIG, then --config, before all of them.
    env_file = put(tmp_path / "env.toml", -44)
    environ.update(XDG_CONFIG_HOME=str(xdg), BEEPNET_CONFIG=str(env_file))
    assert config.load(environ=environ).audio.gate_dbfs == -44
    assert config.load(put(tmp_path / "arg.toml", -45), environ=environ).audio.gate_dbfs == -45


def test_a_default_file_that_cannot_be_read_is_skipped_with_a_warning(places):
    home, xdg, system, put = places
    put(system, -41)
    user = home / ".config" / "beepnet" / "beepnet.toml"
    user.mkdir(parents=True)   # root reads any file; a directory is unreadable to all
    cfg = config.load(environ={"HOME": str(home)})
    assert cfg.origin.path == system and cfg.audio.gate_dbfs == -41
    [note] = config.startup_warnings(cfg, "config")
    assert str(user) in note and "not used" in note
    # A bad file found by the search is an error, as one named by --config is.
    user.rmdir()
    user.write_text("[audio]\ngate_dbfs = loud\n")
    with pytest.raises(ConfigError, match=str(user)):
        config.load(environ={"HOME": str(home)})


def test_config_doctor_and_run_say_which_file_is_used(tmp_path, env):
    xdg = tmp_path / "xdg"
    f = xdg / "beepnet" / "beepnet.toml"
    f.parent.mkdir(parents=True)
    f.write_text('[audio]\ngate_dbfs = -44\n[detector]\nkind = "tone"\n')
    env = dict(env, XDG_CONFIG_HOME=str(xdg))
    r = run_cli("config", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"# config file: {f}"
    assert "gate_dbfs = -44" in r.stdout
    assert f"config {f};" in config.summary(config.load(environ=env))   # the start log line
    r = run_cli("doctor", "--no-mic", "--set", f"storage.dir={tmp_path}", env=env)
    assert f"ok   config: valid ({f});" in r.stdout, r.stdout + r.stderr


def test_config_says_when_no_file_is_used(places, capsys):
    import argparse

    from beepnet.cli import cmd_config

    home, _, _, _ = places
    cfg = config.load(environ={"HOME": str(home)})
    assert cmd_config(cfg, argparse.Namespace(example=False)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "# config file: none: built-in defaults"
    assert config.tomllib.loads(out.replace('"(not set)"', '""'))["audio"]["device"] == "default"
    assert "config none: built-in defaults;" in config.summary(cfg)


def test_the_old_place_is_named_and_ignored(tmp_path, env):
    old = tmp_path / "home" / ".config" / "beepnet.toml"
    old.parent.mkdir(parents=True)
    old.write_text("[audio]\ngate_dbfs = -33\n")
    r = run_cli("config", env=env)
    assert r.returncode == 0 and "gate_dbfs = -50" in r.stdout
    new = old.parent / "beepnet" / "beepnet.toml"
    [line] = [ln for ln in r.stderr.splitlines() if str(old) in ln]
    assert "WARNING" in line and "ignored" in line and str(new) in line, r.stderr
    # Named explicitly, it is used, and nothing is said about it.
    r = run_cli("config", "--config", str(old), env=env)
    assert r.returncode == 0 and "gate_dbfs = -33" in r.stdout and r.stderr == "", r.stderr


def test_the_old_watch_section_is_read_as_cycle_with_a_note(tmp_path, env):
    """beepnet 0.2's [watch]: its timeout is the cycle's no_beep_minutes now, its idle time
    is gone; a config written for 0.2 still runs, and says what to rename."""
    f = tmp_path / "old.toml"
    f.write_text("[watch]\ntimeout_minutes = 90\nidle_minutes = 5\n")
    r = run_cli("config", "--config", str(f), env=env)
    assert r.returncode == 0, r.stderr
    assert "no_beep_minutes = 90" in r.stdout and "[watch]" not in r.stdout
    notes = [ln for ln in r.stderr.splitlines() if "watch." in ln]
    assert len(notes) == 2, r.stderr
    assert "watch.timeout_minutes in " in notes[0] and "is now cycle.no_beep_minutes" in notes[0]
    assert "watch.idle_minutes" in notes[1] and "ignored" in notes[1]
    r = run_cli("config", "--set", "watch.timeout_minutes=30", env=env)
    assert r.returncode == 0 and "no_beep_minutes = 30" in r.stdout, r.stderr


# --- a key above the first [section] --------------------------------------------------------


@pytest.mark.parametrize("key, home", [
    ('device = "USB"', "[audio]"), ("gate_dbfs = -40", "[audio]"),
    ('dir = "/srv/x"', "[storage] or [record]"), ("cooldown_minutes = 5", "[notify]"),
])
def test_a_key_outside_any_section_is_called_so(tmp_path, key, home):
    f = tmp_path / "c.toml"
    f.write_text(f"{key}\n[audio]\nhop_seconds = 1\n")
    r = run_cli("config", "--config", str(f))
    assert r.returncode == 78
    [line] = r.stderr.strip().splitlines()
    name = key.split()[0]
    assert f"{name} is a key outside any section" in line and f"belongs under {home}" in line
    assert "unknown config section" not in line


def test_an_unknown_key_outside_any_section_lists_the_sections(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("volume = 3\n")
    with pytest.raises(ConfigError, match="volume is a key outside any section.*sections are "
                                          "audio, detector"):
        config.load(f, environ={})
    f.write_text("[volume]\nlevel = 3\n")   # a table is still an unknown section
    with pytest.raises(ConfigError, match=r"unknown config section \[volume\]"):
        config.load(f, environ={})
