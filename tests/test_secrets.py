"""The bot token stays secret: out of tracebacks, process arguments, clear-text URLs, and
config files that others can read. Through real processes where it matters."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest

from beepnet import config
from beepnet.config import ConfigError

# Configured tokens; the first is not in the shape logs.redact recognises by itself (fewer
# than 5 digits), so only its being configured can hide it.
TOKEN = "4242:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
# Some other bot's token, configured nowhere: hidden for its shape alone.
STRAY = "987654321:AAStrayTokenFromSomewhereElse_0123456"


def beepnet(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def python(script: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)


def assert_hidden(text: str) -> None:
    for secret in (TOKEN, STRAY):
        assert secret not in text and secret.split(":")[1] not in text, text


# --- tracebacks -------------------------------------------------------------------------------

_MAIN = f"""
import sys
from beepnet import cli

def broken(cfg, args):
    raise RuntimeError(f"POST https://api.telegram.org/bot{{cfg.telegram.token}}/sendAudio "
                       "failed; also tried {STRAY}")

cli.COMMANDS["config"] = broken
sys.exit(cli.main(["config"]))
"""

_THREAD = f"""
import threading
from beepnet import logs

logs.setup("info", ({TOKEN!r},))

def deliver():
    raise ConnectionError("https://api.telegram.org/bot{TOKEN}/sendMessage and {STRAY}")

t = threading.Thread(target=deliver, name="telegram-delivery")
t.start()
t.join()
"""

# A daemon child: set up as the supervisor's children are, then a bug.
_CHILD = f"""
import multiprocessing
from beepnet.daemon import child

def classifier(stop):
    child.init("classifier", "info", ({TOKEN!r},), stop)
    raise ValueError("bad chunk; token {TOKEN}, or {STRAY}")

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()  # referenced until the child has it: start() drops its args
    p = ctx.Process(target=classifier, args=(stop,), name="classifier")
    p.start()
    p.join()
    print("child exit", p.exitcode)
"""


@pytest.mark.parametrize("script, where", [
    (_MAIN, "uncaught exception"),
    (_THREAD, "telegram-delivery"),
    (_CHILD, "classifier"),
], ids=["main-thread", "other-thread", "child-process"])
def test_uncaught_exceptions_hide_the_token(tmp_path, env, script, where):
    path = tmp_path / "crash.py"
    path.write_text(script)
    env = dict(env, BEEPNET_TELEGRAM_TOKEN=TOKEN)
    r = python(path, env)
    # Still the whole story, for a bug report: where it happened, and the traceback.
    assert "Traceback" in r.stderr and where in r.stderr, r.stderr
    assert "<token>" in r.stderr, r.stderr
    assert_hidden(r.stdout + r.stderr)


# --- process arguments ----------------------------------------------------------------------


def test_token_on_the_command_line_is_refused(env):
    r = beepnet("config", "--set", f"telegram.token={TOKEN}", env=env)
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "BEEPNET_TELEGRAM_TOKEN" in lines[0] and "credential" in lines[0]
    assert_hidden(r.stdout + r.stderr)
    # Nor echoed when the section is forgotten.
    r = beepnet("config", "--set", f"token={TOKEN}", env=env)
    assert r.returncode == 78 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert_hidden(r.stdout + r.stderr)


# --- clear-text URLs ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081", "http://127.3.2.1", "http://[::1]:8081", "http://localhost:8081",
    "http://LocalHost/", "https://api.telegram.org", "https://bot-api.example.org:8443",
])
def test_api_url_allowed(url):
    assert config.load(environ={}, overrides=[f"telegram.api_url={url}"]).telegram.api_url == url


@pytest.mark.parametrize("url", [
    "http://api.telegram.org", "http://192.168.1.20:8081", "http://10.0.0.1",
    "http://[::ffff:10.0.0.1]/", "http://localhost.example.org", "http://127.0.0.1.nip.io",
])
def test_api_url_in_clear_text_over_the_network_is_refused(url):
    with pytest.raises(ConfigError, match="telegram.api_url.*https://"):
        config.load(environ={}, overrides=[f"telegram.api_url={url}"])


def test_api_url_refusal_is_one_config_error_line(env):
    r = beepnet("config", "--set", "telegram.api_url=http://bot-api.example.org", env=env)
    assert r.returncode == 78
    assert r.stderr.count("\n") == 1 and "https://" in r.stderr, r.stderr


# --- a config file that others can read -----------------------------------------------------


def token_file(home: Path, mode: int) -> Path:
    f = home / ".config" / "beepnet" / "beepnet.toml"
    f.parent.mkdir(parents=True, exist_ok=True)
    # No chat id: Telegram stays off, so nothing here talks to the network.
    f.write_text(f'[telegram]\ntoken = "{TOKEN}"\n[detector]\nkind = "tone"\n')
    f.chmod(mode)
    return f


def quiet_wav(path: Path, seconds: float = 3.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return path


def exposure_lines(stderr: str, f: Path) -> list[str]:
    return [ln for ln in stderr.splitlines() if "holds the bot token" in ln and str(f) in ln]


def test_run_and_doctor_warn_once_about_a_readable_token_file(tmp_path, env):
    f = token_file(Path(env["HOME"]), 0o644)
    wav = quiet_wav(tmp_path / "quiet.wav")
    r = beepnet("run", "--config", str(f), "--source", str(wav), "--speed", "10", "--set",
                f"storage.dir={tmp_path / 'state'}", env=env)
    assert r.returncode == 0, r.stderr
    lines = exposure_lines(r.stderr, f)
    assert len(lines) == 1 and "WARNING" in lines[0] and f"chmod 600 {f}" in lines[0], r.stderr
    assert f"config {f};" in r.stderr   # the start line says which file it is
    assert_hidden(r.stdout + r.stderr)
    # doctor finds the same file without being told (~/.config/beepnet/beepnet.toml).
    r = beepnet("doctor", "--no-mic", "--set", f"storage.dir={tmp_path / 'state'}", env=env)
    assert len(exposure_lines(r.stderr, f)) == 1, r.stdout + r.stderr
    assert_hidden(r.stdout + r.stderr)


def test_no_warning_for_a_private_file_or_a_token_from_the_environment(tmp_path):
    home = tmp_path / "home"
    f = token_file(home, 0o600)
    cfg = config.load(environ={"HOME": str(home)})
    assert cfg.telegram.token == TOKEN and cfg.origin.path == f
    assert config.startup_warnings(cfg, "run") == []
    f.chmod(0o640)   # readable by the group: said for run and doctor, not for every command
    assert len(config.startup_warnings(config.load(environ={"HOME": str(home)}), "run")) == 1
    assert len(config.startup_warnings(config.load(environ={"HOME": str(home)}), "doctor")) == 1
    assert config.startup_warnings(config.load(environ={"HOME": str(home)}), "detect") == []
    f.write_text('[detector]\nkind = "tone"\n')   # readable, but the token is elsewhere
    cfg = config.load(environ={"HOME": str(home), "BEEPNET_TELEGRAM_TOKEN": TOKEN})
    assert cfg.telegram.token == TOKEN and config.startup_warnings(cfg, "run") == []
