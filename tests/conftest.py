import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from beepnet.testing import vmic as _vmic
# In CI, a skip not listed in tests/allowed_skips.txt fails the run.
from skipgate import (pytest_runtest_logreport, pytest_sessionfinish,  # noqa: F401
                      pytest_terminal_summary)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers get COLUMNS=80 and LINES=24: every program a test starts would
    # inherit them, and a terminal UI in tmux would draw for that size, not its own.
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


@pytest.fixture
def vmic():
    """A started 48 kHz virtual microphone; os.environ points at it until the test ends."""
    reason = _vmic.available()
    if reason:
        # `make test` installs PulseAudio; in CI a missing piece is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"virtual microphone unavailable: {reason}")
        pytest.skip(reason)
    with _vmic.VirtualMic(rate=48000) as mic:
        yield mic


@pytest.fixture
def broker():
    """A real Mosquitto on 127.0.0.1 with a login (`beepnet.testing.mosquitto`), the test's
    own: stop, kill and restart it at will."""
    from beepnet.testing import mosquitto

    reason = mosquitto.available()
    if reason:
        # `make test` installs mosquitto; in CI a missing broker is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"MQTT broker unavailable: {reason}")
        pytest.skip(reason)
    with mosquitto.Mosquitto() as b:
        yield b


@pytest.fixture(scope="module")
def worker():
    """One spawned process per test module (torch imported once there, never in pytest's own
    process, whose peak RSS its children inherit) that runs the modules' ``_case_*``
    functions."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        yield lambda fn, *args: ex.submit(fn, *args).result(timeout=240)


@pytest.fixture
def env(tmp_path) -> dict:
    """The environment of a `beepnet` started as a new user would: no daemon settings or
    token from the caller, HOME in tmp_path (so no user config file either), a terminal
    type for tmux. A machine-wide /etc/beepnet/beepnet.toml would still be read: CI
    machines have none."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "BEEPNET_CONFIG",
                      "BEEPNET_TELEGRAM_TOKEN", "BEEPNET_TELEGRAM_CHAT_ID", "TMUX",
                      "BEEPNET_MQTT_PASSWORD", "BEEPNET_APPRISE_URLS", "BEEPNET_HEARTBEAT_URL",
                      "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CREDENTIALS_DIRECTORY")}
    e["HOME"] = str(tmp_path / "home")
    os.makedirs(e["HOME"], exist_ok=True)
    e["TERM"] = "xterm-256color"
    return e
