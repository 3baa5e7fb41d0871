"""Audio in: sources, resampling, windowing, the silence gate and files.

Everything after the source runs at one rate, `SAMPLE_RATE`: the recorder resamples to it,
chunks and clips are written at it, detectors and model files are made for it.
"""

SAMPLE_RATE = 16000
"""Hz, mono, for everything after the source."""


class AudioFileError(Exception):
    """A recording that cannot be used; ``str()`` is the reason, without the path."""
