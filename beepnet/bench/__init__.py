"""The benchmark behind every performance figure in the README: ``make bench``.

Modules are named after what they measure: ``quality`` (event recall, precision and false
alarms on generated continuous recordings), ``speed`` (offline detection, per-chunk inference,
training on a user-sized set), ``live`` (the daemon on a virtual microphone: CPU, memory,
beep-to-alert latency), ``machine`` (what it ran on) and ``report`` (targets, the table, the
result files). ``python -m beepnet.bench --help`` for the options.
"""
