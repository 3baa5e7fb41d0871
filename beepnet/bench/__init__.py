"""The benchmark behind every performance figure in the README: ``make bench``.

Modules are named after what they measure: ``quality`` (event recall, precision and false
alarms on generated continuous recordings), ``speed`` (offline detection, per-chunk inference),
``user`` (the "training" part: training time on a user's first labelled set, and recall and
false alarms of the models on held-out recordings of that beep), ``live`` (the daemon on a
virtual microphone: CPU, memory, beep-to-alert latency), ``machine`` (what it ran on) and
``report`` (targets, the table, the result files). ``python -m beepnet.bench --help`` for
the options.
"""
