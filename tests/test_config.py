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
    assert cfg.watch.timeout_minutes == 150.0
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
