"""Stand-ins for the two edges beepnet cannot reach on a test machine, shared by the test
suite and the benchmark (``python -m beepnet.bench``); the daemon never imports them.

- ``vmic``: a PulseAudio null sink as the default microphone, which the real PyAudio
  records from in real time (needs pulseaudio, pulseaudio-utils, libasound2-plugins).
- ``fake_telegram``: a Bot API server on 127.0.0.1 that the real python-telegram-bot
  client talks to (standard library only).
"""
