"""The systemd unit (systemd/beepnet.service) and its installer (systemd/install.sh).

systemd itself judges the unit: `systemd-analyze verify` must print nothing (it exits 0 even
for unknown keys, so any output is a failure), and `systemd-analyze security --offline=yes`
must rate it 2.5 or better. verify also insists that ExecStart='s program exists, which
/opt/beepnet/venv/bin/beepnet does not on a build machine, so it checks a copy whose
ExecStart= names this venv's beepnet, and the unit as installed into a temporary prefix.

The installer runs with BEEPNET_NO_SYSTEM=1 into temporary directories: no apt, no user,
no systemctl, nothing outside tmp_path. It makes a real venv and pip-installs beepnet into
it (without dependencies or torch, which would take minutes), twice, as an upgrade would.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "beepnet.service"
INSTALLER = ROOT / "systemd" / "install.sh"
SHIPPED_EXEC = "/opt/beepnet/venv/bin/beepnet"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 60)
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)


def systemd_analyze() -> str:
    """The systemd-analyze binary; `make test` installs it (Debian package systemd)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        reason = "systemd-analyze not found (Debian package systemd; `make test-deps` installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


def analyze(*args: str) -> subprocess.CompletedProcess:
    # SYSTEMD_LOG_LEVEL and friends from the caller would change what it prints.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    return run([systemd_analyze(), *args], env=env)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (a key may repeat), ignoring sections and comments."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def runnable_copy(directory: Path, extra: str = "") -> Path:
    """The unit with ExecStart= pointing at the beepnet of the venv running the tests."""
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    beepnet = Path(sys.executable).with_name("beepnet")
    program = str(beepnet) if beepnet.exists() else f"{sys.executable} -m beepnet"
    text = text.replace(SHIPPED_EXEC, program)
    if extra:
        text = text.replace("[Service]\n", f"[Service]\n{extra}\n")
    path = directory / "beepnet.service"   # verify takes the unit's name from the file name
    path.write_text(text)
    return path


# --- the unit ------------------------------------------------------------------------------


def test_verify_prints_nothing(tmp_path):
    r = analyze("verify", str(runnable_copy(tmp_path)))
    assert (r.stdout + r.stderr) == "" and r.returncode == 0, r.stdout + r.stderr


def test_verify_would_notice_a_mistake(tmp_path):
    # The check above means something: a misspelt key makes verify talk (and still exit 0).
    r = analyze("verify", str(runnable_copy(tmp_path, extra="RestartSecs=5")))
    assert "RestartSecs" in r.stdout + r.stderr


def test_security_exposure_is_ok():
    r = analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Overall exposure level for beepnet\.service: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) <= 2.5, r.stdout


def test_unit_settings():
    s = unit_settings(UNIT.read_text())
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30",
        "Restart": "on-failure", "RestartSec": "5", "RestartPreventExitStatus": "78",
        "TimeoutStartSec": "120", "TimeoutStopSec": "30", "KillMode": "mixed",
        "User": "beepnet", "Group": "beepnet", "SupplementaryGroups": "audio",
        "StateDirectory": "beepnet", "RuntimeDirectory": "beepnet",
        "ConfigurationDirectory": "beepnet",
        "EnvironmentFile": "-/etc/beepnet/beepnet.env",
        "ExecStart": f"{SHIPPED_EXEC} run --config /etc/beepnet/beepnet.toml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "DevicePolicy": "closed", "DeviceAllow": "char-alsa rw",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "UMask": "0077",
        "CapabilityBoundingSet": "", "AmbientCapabilities": "",
        "ProtectProc": "invisible", "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], f"{key}: {s.get(key)}"
    assert "PYTHONUNBUFFERED=1" in s["Environment"]
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged"]
    # Deliberately absent (see the comments in the unit): PyTorch's JIT needs W+X memory,
    # the sound devices must stay visible, /proc/cpuinfo must stay readable, the audio
    # group must keep working, and a credential file that is missing would stop the start.
    for key in ("MemoryDenyWriteExecute", "PrivateDevices", "ProcSubset", "PrivateUsers",
                "LoadCredential", "IPAddressDeny"):
        assert key not in s, key


def test_neither_make_install_nor_the_service_installs_torch():
    """The runtime needs no torch: `make install` (and so `make demo`) and the service's
    installer leave it out; only the train extra (make model, test, bench) brings it."""
    assert re.search(r"^TORCH_SPEC=\$\{TORCH_SPEC:-\}$", INSTALLER.read_text(), re.MULTILINE)
    r = run(["make", "-n", "-C", str(ROOT), "install-service"])
    assert r.returncode == 0 and "systemd/install.sh install" in r.stdout, r.stderr
    assert "TORCH" not in r.stdout, r.stdout
    # -W: as if pyproject.toml had changed, so make prints what (re)installing would run.
    for target, wants_torch in ((".venv/.installed", False), (".venv/.installed-train", True)):
        r = run(["make", "-n", "-C", str(ROOT), "-W", "pyproject.toml", target])
        assert r.returncode == 0 and "pip install" in r.stdout, r.stdout + r.stderr
        assert ("torch" in r.stdout) == wants_torch, (target, r.stdout)


# --- the installer ---------------------------------------------------------------------------


def venv_python() -> str:
    """An interpreter that can make venvs: Debian's, as the real install uses, if it can."""
    debian = "/usr/bin/python3"
    if os.access(debian, os.X_OK) and run([debian, "-c", "import ensurepip, venv"]).returncode == 0:
        return debian
    return getattr(sys, "_base_executable", sys.executable)


class Tree:
    """Where the installer puts things under tmp_path, and how to run it there."""

    def __init__(self, root: Path):
        self.prefix, self.etc = root / "opt" / "beepnet", root / "etc" / "beepnet"
        self.unit_dir, self.state = root / "etc" / "systemd" / "system", root / "var" / "beepnet"
        self.venv, self.unit = self.prefix / "venv", self.unit_dir / "beepnet.service"
        self.toml, self.env = self.etc / "beepnet.toml", self.etc / "beepnet.env"
        self.beepnet = self.venv / "bin" / "beepnet"

    def run(self, action: str, **extra: str) -> subprocess.CompletedProcess:
        # Built from scratch so that nothing from the caller can aim it at the real system.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BEEPNET_", "TORCH_"))}
        env.update(BEEPNET_NO_SYSTEM="1", BEEPNET_PREFIX=str(self.prefix),
                   BEEPNET_ETC=str(self.etc), BEEPNET_UNIT_DIR=str(self.unit_dir),
                   BEEPNET_STATE=str(self.state), BEEPNET_PYTHON=venv_python(),
                   TORCH_SPEC="", BEEPNET_PIP_ARGS="--no-deps",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
        return run(["bash", str(INSTALLER), action], env=env, timeout=240)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_install_upgrade_uninstall(tmp_path):
    t = Tree(tmp_path)
    build_dir_before = (ROOT / "build").exists()

    out = check_ok(t.run("install"))
    # A real venv with a copy of beepnet in it, not an editable link to this checkout.
    assert (t.venv / "pyvenv.cfg").is_file()
    where = run([str(t.venv / "bin" / "python"), "-c", "import beepnet; print(beepnet.__file__)"],
                cwd=tmp_path)
    assert where.stdout.startswith(str(t.venv)), where.stdout + where.stderr
    assert (ROOT / "build").exists() == build_dir_before   # nothing built in the checkout
    # The wheel carries the runtime, the training code and the shipped model, but not the
    # benchmark and the test fakes (a fake Bot API server has no place on a Pi).
    package = next(t.venv.glob("lib/python3*/site-packages/beepnet"))
    assert (package / "model" / "npnet.py").is_file() and (package / "training").is_dir()
    assert not (package / "testing").exists() and not (package / "bench").exists()
    assert (t.venv / "share" / "beepnet" / "models" / "beepnet-default.safetensors").is_file()
    # Config: the example, readable by the service's group; the token file root's alone.
    example = run([str(t.beepnet), "config", "--example"]).stdout
    assert example and t.toml.read_text() == example
    assert (mode(t.etc), mode(t.toml), mode(t.env)) == (0o750, 0o640, 0o600)
    assert "#BEEPNET_TELEGRAM_TOKEN=" in t.env.read_text()
    assert "#BEEPNET_TELEGRAM_CHAT_ID=" in t.env.read_text()
    # The unit, pointed at this tree, and still acceptable to systemd.
    assert mode(t.unit) == 0o644
    s = unit_settings(t.unit.read_text())
    assert s["ExecStart"] == [f"{t.beepnet} run --config {t.toml}"]
    assert s["EnvironmentFile"] == [f"-{t.env}"]
    verify = analyze("verify", str(t.unit))
    assert verify.stdout + verify.stderr == ""
    # What to do next.
    for hint in ("journalctl -u beepnet -f", "systemctl status beepnet", "notify-test",
                 "skipped: systemctl enable beepnet.service"):
        assert hint in out, out

    # The admin edits both files; a second run upgrades the venv and keeps them.
    t.toml.write_text(t.toml.read_text().replace("gate_dbfs = -50", "gate_dbfs = -45")
                      + "# edited by hand\n")
    t.env.write_text(f'BEEPNET_TELEGRAM_TOKEN="{TOKEN}"\nBEEPNET_TELEGRAM_CHAT_ID=987654321\n')
    toml, env = t.toml.read_text(), t.env.read_text()
    installed = t.venv / "lib"
    marker = next(installed.glob("python3*/site-packages/beepnet/cli.py"))
    marker.write_text("# stale\n")
    out = check_ok(t.run("install"))
    assert t.toml.read_text() == toml and t.env.read_text() == env
    assert (mode(t.toml), mode(t.env)) == (0o640, 0o600)
    assert "kept" in out and "config OK" in out, out   # checked with the token from the env file
    assert marker.read_text() != "# stale\n"            # the package was installed again
    check_ok(run([str(t.beepnet), "--version"]))

    # Uninstall: unit and venv go, config and data stay; a second uninstall is harmless.
    (t.state / "outbox").mkdir(parents=True)
    (t.state / "outbox" / "pending.json").write_text("{}")
    out = check_ok(t.run("uninstall"))
    assert not t.unit.exists() and not t.venv.exists() and not t.prefix.exists()
    assert t.toml.read_text() == toml and t.env.read_text() == env
    assert (t.state / "outbox" / "pending.json").exists()
    assert f"rm -rf {t.etc} {t.state}" in out, out
    check_ok(t.run("uninstall"))


def test_uninstall_leaves_a_directory_that_is_not_a_venv(tmp_path):
    t = Tree(tmp_path)
    t.venv.mkdir(parents=True)
    (t.venv / "precious").write_text("x")
    r = t.run("uninstall")
    assert r.returncode != 0 and "not a venv" in r.stderr
    assert (t.venv / "precious").exists()


def test_installer_usage(tmp_path):
    r = Tree(tmp_path).run("frobnicate")
    assert r.returncode == 2 and "usage" in r.stderr


# --- the token and process arguments -------------------------------------------------------

# Every command the installer runs by name goes through this: it appends its command line to
# $ARGV_LOG, then runs the real command from $REAL_PATH.
_SHIM = """#!/bin/sh
name=${0##*/}
{ printf '%s' "$name"; printf ' %s' "$@"; printf '\\n'; } >> "$ARGV_LOG"
real=$(PATH=$REAL_PATH command -v -- "$name") || exit 127
exec "$real" "$@"
"""


def shim_path(directory: Path, path: str) -> Path:
    """A directory to put first on PATH: one recording shim for every command on `path`."""
    directory.mkdir()
    shim = directory.parent / "record-argv"
    shim.write_text(_SHIM)
    shim.chmod(0o755)
    for folder in path.split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = os.path.join(folder, name)
            if (os.access(target, os.X_OK) and not os.path.isdir(target)
                    and not (directory / name).exists()):
                (directory / name).symlink_to(shim)
    return directory


class ProcWatch:
    """Polls /proc while the installer runs, for what the shims cannot see: programs run by
    absolute path ($VENV/bin/beepnet). Keeps every command line seen, and the environment
    of the processes whose command line contains `needle`."""

    def __init__(self, needle: str):
        self.needle = needle
        self.cmdlines: set[str] = set()
        self.environs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "ProcWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.02):
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
                    if self.needle in text and text not in self.cmdlines:
                        self.environs.append(Path(f"/proc/{pid}/environ").read_bytes()
                                             .decode(errors="replace"))
                except OSError:  # gone meanwhile
                    continue
                self.cmdlines.add(text)


def test_installer_passes_the_token_in_the_environment_not_in_arguments(tmp_path):
    """ps shows every process's arguments to every user: the config check the installer runs
    with the token from beepnet.env must get it through its environment."""
    # A token of this test alone: other tests running on the machine must not match it.
    token = f"{random.randint(10**8, 10**9)}:{secrets.token_urlsafe(27)[:35]}"
    t = Tree(tmp_path)
    t.etc.mkdir(parents=True)
    t.env.write_text(f'BEEPNET_TELEGRAM_TOKEN="{token}"\nBEEPNET_TELEGRAM_CHAT_ID=987654321\n')
    t.env.chmod(0o600)
    log = tmp_path / "argv.log"
    shims = shim_path(tmp_path / "shims", os.environ["PATH"])
    with ProcWatch(f"config --config {t.toml}") as watch:
        r = t.run("install", PATH=f"{shims}{os.pathsep}{os.environ['PATH']}",
                  REAL_PATH=os.environ["PATH"], ARGV_LOG=str(log))
    out = check_ok(r)
    assert "config OK" in out, out
    recorded = log.read_text()
    assert "install -m 0644" in recorded and "mktemp" in recorded   # the shims saw commands
    assert token not in recorded, [ln for ln in recorded.splitlines() if token in ln]
    assert not [c for c in watch.cmdlines if token in c]
    # The config check itself was seen, and it had the token, in its environment.
    assert watch.environs, sorted(watch.cmdlines)
    assert any(f"BEEPNET_TELEGRAM_TOKEN={token}" in e.split("\0") for e in watch.environs)
    assert token not in out + r.stderr
