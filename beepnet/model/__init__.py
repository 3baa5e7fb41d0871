"""BeepNet: a small 1D-conv network on the raw 16 kHz waveform, and its training tools.

Modules: ``net`` (the network), ``io`` (model files), ``dataset`` (generated
training clips), ``train`` (training and threshold choice), ``evaluate`` (figures and
plots of a model on a labelled set).
"""
