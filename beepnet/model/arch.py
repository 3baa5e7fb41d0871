"""BeepNet's architecture hyper-parameters, without torch.

The torch net (`beepnet.model.net`) and the numpy runtime (`beepnet.model.npnet`) build
the same layers from one `NetConfig`; the model file stores it as ``arch``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters (stored in the model file)."""

    n_classes: int = 6
    n_filters: int = 64
    kernel: int = 400
    stride: int = 160
    channels: tuple[int, ...] = (64, 64, 96)
    pool: int = 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)

    def dilation(self, block: int) -> int:
        """Of body block ``block``: 1, then 2, 4, ... Growing dilation widens the receptive
        field (~0.3 s) without more pooling."""
        return 1 if block == 0 else 2 * block
