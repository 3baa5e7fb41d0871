import os

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
