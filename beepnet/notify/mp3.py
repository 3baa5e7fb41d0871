"""MP3 clips for the phone, made by LAME (the self-contained `lameenc` wheel; no shell)."""

from __future__ import annotations

import numpy as np

MAX_CLIP_SECONDS = 10.0
"""Telegram plays anything under its 50 MB upload limit; ten seconds keep the message small."""


def encode_mp3(audio: np.ndarray, rate: int = 16000, kbps: int = 48) -> bytes:
    """Encode mono float audio in [-1, 1] as a constant-bit-rate MP3."""
    import lameenc

    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    enc = lameenc.Encoder()
    enc.set_bit_rate(kbps)
    enc.set_in_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(2)  # 2 = high quality, still fast for a few seconds of audio
    return bytes(enc.encode(pcm.tobytes()) + enc.flush())


def clip_to_mp3(wav_path: str, max_seconds: float = MAX_CLIP_SECONDS) -> bytes:
    """The alert clip (a WAV the classifier kept) as MP3, its last ``max_seconds`` at most."""
    from ..audio.files import read_audio

    audio = read_audio(wav_path, 16000)
    # The beep is at the end of the clip (context comes before it): keep the end.
    return encode_mp3(audio[-int(max_seconds * 16000):], 16000)
