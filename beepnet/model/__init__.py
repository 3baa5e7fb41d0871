"""What the daemon needs to load and run a BeepNet model, without torch, pandas or sklearn.

``arch`` (the architectures as plain data, with the tensors each has), ``modelfile`` (the
safetensors model file: read, check, write) and ``npnet`` (numpy inference). Training,
evaluation and the torch nets are in `beepnet.training`.
"""
