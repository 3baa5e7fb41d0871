"""Did `make model` rebuild the shipped model? ``python -m beepnet.training.rebuilt NEW OLD``.

`make model` keeps a copy of the model file it is about to replace and ends with this
check: the two files' weights tensor by tensor, their thresholds, what each was trained
on (the training clips' hash) and where (the CPU and torch build each file records).
On another kind of CPU the same code and clips train into other weights (torch's vector
kernels round float sums differently, and training amplifies it): another run of the same
recipe, not a broken build. The model card says which CPU built the shipped file. The
clips' hash takes in the hard negatives the models mined along the way, so on another CPU
it differs too; on the same kind of CPU other clips mean the fetch, the generator or the
code changed.

Exit status 0 whether or not the weights are the same (both are results); 2 with one line
when a file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.modelfile import ModelFile, ModelFileError, read_model_file

UNRECORDED = "not recorded (files trained before 2026-12-06)"


@dataclass
class Rebuild:
    """How a rebuilt model file compares with the one it replaced."""

    tensors: int
    """Tensors in the architecture."""
    differing: list[str]
    """Names of the tensors whose values differ."""
    largest_difference: float
    """The largest absolute difference of any weight or BatchNorm statistic (0 when all
    are the same)."""
    thresholds: tuple[float, float]
    same_data: bool
    """The same training clips (names and labels: the files' ``data_sha256``)."""
    trained_on: tuple[str, str]

    @property
    def same(self) -> bool:
        return not self.differing and self.thresholds[0] == self.thresholds[1]

    def summary(self, new: str, old: str) -> str:
        if self.same:
            return (f"{new} has the same weights ({self.tensors} tensors) and threshold "
                    f"({self.thresholds[0]:.3f}) as {old}: rebuilt exactly.")
        lines = [f"{new} is not {old} rebuilt: {len(self.differing)} of {self.tensors} "
                 f"tensors differ (largest difference {self.largest_difference:.3g}), "
                 f"threshold {self.thresholds[0]:.3f} against {self.thresholds[1]:.3f}."]
        clips = ("the training clips differ too (the hard negatives the models mine follow "
                 "from the weights before them)" if not self.same_data
                 else "the training clips are the same")
        unrecorded = UNRECORDED in self.trained_on  # both unrecorded: no telling either
        if unrecorded or self.trained_on[0] != self.trained_on[1]:
            who = "One file does not record its CPU" if unrecorded else "The CPUs differ"
            which = ", names the CPU that built the shipped file" if unrecorded else ""
            lines.append(f"{who}; {clips}. On another kind of CPU the same code and data "
                         "train into other weights: another run of the same recipe "
                         f"(models/README.md, \"Only on the CPU that built it\"{which}).")
        elif not self.same_data:
            lines.append("The same kind of CPU, other training clips: the fetched recordings, "
                         "the generated set or the code changed.")
        else:
            lines.append("The same kind of CPU and the same training clips: the code "
                         "changed.")
        lines += [f"  trained on (new): {self.trained_on[0]}",
                  f"  trained on (old): {self.trained_on[1]}"]
        return "\n".join(lines)


def compare(new: ModelFile, old: ModelFile) -> Rebuild:
    """Compare two checked model files of one architecture (ValueError if not)."""
    if new.arch != old.arch or new.labels != old.labels:
        raise ValueError("the two files are different architectures or classes")
    differing, largest = [], 0.0
    for name, a in new.tensors.items():
        b = old.tensors[name]
        if not np.array_equal(a, b):
            differing.append(name)
            if a.dtype.kind == "f":  # not BatchNorm's step counters
                largest = max(largest, float(np.max(np.abs(a.astype(np.float64) - b))))
    return Rebuild(len(new.tensors), differing, largest, (new.threshold, old.threshold),
                   new.meta.get("data_sha256") == old.meta.get("data_sha256"),
                   (str(new.meta.get("trained_on", UNRECORDED)),
                    str(old.meta.get("trained_on", UNRECORDED))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beepnet.training.rebuilt",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("new", help="the model file just built")
    p.add_argument("old", help="the one it replaced")
    args = p.parse_args(argv)
    try:
        new, old = read_model_file(args.new), read_model_file(args.old)
        result = compare(new, old)
    except (ModelFileError, ValueError) as e:
        print(f"beepnet: rebuilt: {e}", file=sys.stderr)
        return 2
    print(result.summary(Path(args.new).name, Path(args.old).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
