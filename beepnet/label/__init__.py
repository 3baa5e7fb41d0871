"""`beepnet label`: sorting recorded chunks into label folders, one key a clip, over SSH.

Modules: ``core`` (the clip queue, suggestions, "similar" runs, the session; no terminal),
``journal`` (moves that never overwrite or delete, and their undo history on disk),
``spectrum`` (level and spectrogram with numpy), ``analysis`` (reading and scoring clips once,
ahead of the user, the model loaded lazily), ``player`` (whatever command-line player exists),
``view`` (drawing a screen) and ``terminal`` (keys, the loop, the subcommand).
"""
