"""MP3 clips for the phone, made by LAME (the self-contained `lameenc` wheel; no shell).

The alert clips are encoded in the supervisor, which never needs numpy otherwise: the
classifier keeps each clip as 16-bit PCM WAV, whose samples `beepnet.audio.wav.pcm16`
hands to LAME as they are (numpy would cost the supervisor 18 MB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..audio import SAMPLE_RATE
from ..audio.wav import pcm16

if TYPE_CHECKING:
    import numpy as np

MAX_CLIP_SECONDS = 20.0
"""Telegram plays anything under its 50 MB upload limit; the classifier caps a beep
pattern's clip at 20 s (`beepnet.daemon.pattern`), 120 kB of MP3."""


def encode_pcm16(pcm: bytes, rate: int = SAMPLE_RATE, kbps: int = 48) -> bytes:
    """Encode mono 16-bit little-endian PCM as a constant-bit-rate MP3."""
    import lameenc

    enc = lameenc.Encoder()
    enc.set_bit_rate(kbps)
    enc.set_in_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(2)  # 2 = high quality, still fast for a few seconds of audio
    return bytes(enc.encode(pcm) + enc.flush())


def encode_mp3(audio: np.ndarray, rate: int = SAMPLE_RATE, kbps: int = 48) -> bytes:
    """Encode mono float audio in [-1, 1] as a constant-bit-rate MP3."""
    import numpy as np

    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    return encode_pcm16(pcm.tobytes(), rate, kbps)


def clip_to_mp3(wav_path: str, max_seconds: float = MAX_CLIP_SECONDS) -> bytes:
    """The alert clip (a WAV the classifier kept) as MP3, its last ``max_seconds`` at most
    (the classifier's clips are never longer)."""
    keep = int(max_seconds * SAMPLE_RATE)
    pcm = pcm16(wav_path, SAMPLE_RATE, last=keep)
    if pcm is not None:
        return encode_pcm16(pcm, SAMPLE_RATE)
    # Not what the classifier writes (another tool's WAV): decode it the general way.
    from ..audio.files import read_audio

    return encode_mp3(read_audio(wav_path, SAMPLE_RATE)[-keep:], SAMPLE_RATE)
