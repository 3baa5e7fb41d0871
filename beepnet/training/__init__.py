"""Making and judging BeepNet models: everything the daemon does not need.

``synth`` (generated audio: beeps, washers, speech-like and music-like sounds, rooms),
``dataset`` (labelled 3-s clips from it: ``beepnet synth``), ``streams`` (long generated
recordings with known beep times, for the benchmark), ``net`` and ``original`` (the torch
nets), ``torchmodel`` (torch nets to and from model files; converting beepnet 0.1's
``.pt``), ``train`` (``beepnet train``), ``corrections`` and ``retrain`` (``beepnet train --feedback``:
the owner's answers to alerts learned, the new model put in use), ``evaluate`` (``beepnet evaluate``) and
``heldout`` (the shipped model against the tone detector on a held-out generated set).

torch, pandas, scikit-learn and matplotlib come with the ``[train]`` extra and are imported
only by the modules (or functions) that use them: ``synth`` and ``dataset`` need numpy
alone, which is why ``beepnet doctor`` and ``notify-test`` can borrow a generated beep.
"""
