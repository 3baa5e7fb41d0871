"""The architectures a model file can name, as plain data: no torch.

`NetConfig` is BeepNet (the default); `OriginalConfig` is the first author's 2-filter net,
a baseline. Both come from a model file's ``arch`` through `arch_from_dict`, which checks
every field (a file is untrusted input), and both list the tensors their net has with
`shapes()`, so that a file's weights are checked against the architecture before any of
them is read, by the daemon without torch and by training alike. The torch nets
(`beepnet.training.net`, `beepnet.training.original`) and the numpy runtime
(`beepnet.model.npnet`) build their layers from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

BEEPNET = "beepnet"
ORIGINAL = "original"
BODY_KERNEL = 5
"""Kernel of BeepNet's body convolutions."""
MAX_SIZE = 1 << 16
"""Bound on every size in an ``arch`` (BeepNet's largest is 400): a hostile file cannot
describe a net whose shapes or work are absurd before its weights are even looked at."""


def _norm_shapes(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    """A BatchNorm1d's state_dict entries."""
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean",
                                            "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


@dataclass(frozen=True)
class NetConfig:
    """BeepNet's hyper-parameters (stored in the model file as ``arch``)."""

    n_classes: int = 6
    n_filters: int = 64
    kernel: int = 400
    stride: int = 160
    channels: tuple[int, ...] = (64, 64, 96)
    pool: int = 2

    kind = BEEPNET

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return {"kind": self.kind, **d}

    def dilation(self, block: int) -> int:
        """Of body block ``block``: 1, then 2, 4, ... Growing dilation widens the receptive
        field (~0.3 s) without more pooling."""
        return 1 if block == 0 else 2 * block

    def body_layers(self) -> list[tuple[int, int, int, int]]:
        """(conv index in ``body``, c_in, c_out, dilation) per block; its BatchNorm is the
        next index. Block 0 has conv, norm, ReLU and pooling; the others conv, norm, ReLU."""
        out, index, c_in = [], 0, self.n_filters
        for i, c_out in enumerate(self.channels):
            out.append((index, c_in, c_out, self.dilation(i)))
            index += 4 if i == 0 else 3
            c_in = c_out
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict entry BeepNet has, with its shape."""
        out = {"frontend.weight": (2 * self.n_filters, 1, self.kernel),
               **_norm_shapes("front_norm", self.n_filters)}
        for index, c_in, c_out, _ in self.body_layers():
            out[f"body.{index}.weight"] = (c_out, c_in, BODY_KERNEL)
            out.update(_norm_shapes(f"body.{index + 1}", c_out))
        out["classifier.weight"] = (self.n_classes, 2 * self.channels[-1], 1)
        out["classifier.bias"] = (self.n_classes,)
        return out


@dataclass(frozen=True)
class OriginalConfig:
    """The original net's hyper-parameters (``arch`` with ``kind = "original"``)."""

    n_classes: int = 2
    n_filters: int = 2
    kernel: int = 400
    stride: int = 160
    pool: int = 4
    window_samples: int = 48000

    kind = ORIGINAL

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @property
    def fc_inputs(self) -> int:
        """Width of the Linear layer: filters x pooled steps of one window."""
        steps = (self.window_samples - self.kernel) // self.stride + 1
        return self.n_filters * (steps // self.pool)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"conv.weight": (self.n_filters, 1, self.kernel),
                "conv.bias": (self.n_filters,),
                "fc.weight": (self.n_classes, self.fc_inputs),
                "fc.bias": (self.n_classes,)}


Arch = NetConfig | OriginalConfig


def arch_from_dict(d: object) -> Arch:
    """A model file's ``arch``, checked field by field; ValueError names what is wrong.

    Files written before ``kind`` existed hold BeepNets."""
    if not isinstance(d, dict):
        raise ValueError("no architecture")
    kind = d.get("kind", BEEPNET)
    cls = {BEEPNET: NetConfig, ORIGINAL: OriginalConfig}.get(kind) if isinstance(kind, str) \
        else None
    if cls is None:
        raise ValueError(f"unknown architecture kind {str(kind)[:40]!r}")
    d = {k: v for k, v in d.items() if k != "kind"}
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown architecture keys {', '.join(sorted(map(str, unknown)))[:80]}")
    if "channels" in d:
        if not isinstance(d["channels"], (list, tuple)) or not 0 < len(d["channels"]) <= 16:
            raise ValueError("channels is not a list of 1 to 16 sizes")
        d["channels"] = tuple(d["channels"])
    arch = cls(**d)
    sizes = [getattr(arch, f.name) for f in fields(arch) if f.name != "channels"]
    sizes += list(getattr(arch, "channels", ()))
    # bool is an int in Python; a size of True is still a broken file.
    if not all(type(v) is int and 0 < v <= MAX_SIZE for v in sizes):
        raise ValueError(f"sizes must be whole numbers from 1 to {MAX_SIZE}")
    if isinstance(arch, OriginalConfig) and arch.fc_inputs <= 0:
        raise ValueError("a window shorter than one pooled filter step")
    return arch
