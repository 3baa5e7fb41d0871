import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from beepnet.testing import vmic as _vmic


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


@pytest.fixture(scope="module")
def worker():
    """One spawned process per test module (torch imported once there, never in pytest's own
    process, whose peak RSS its children inherit) that runs the modules' ``_case_*``
    functions."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        yield lambda fn, *args: ex.submit(fn, *args).result(timeout=240)
