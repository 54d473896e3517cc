"""The benchmark configurations: named network shapes and batch sizes, and the NAME:IN:H1xH2:OUT:BATCH spec.

Any configuration may be an ensemble of K members of its shape: ``small-x64`` (or ``--ensemble 64``),
trained as one :class:`gpunn.Ensemble` (gpunn.bench.ensemble).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    inputs: int
    hidden: tuple
    outputs: int
    batch: int
    gpu_only: bool = False
    members: int = 1  # K > 1: an ensemble of K networks of this shape

    def ensemble(self, members: int) -> "Config":
        """This shape as an ensemble of ``members`` networks, named NAME-xK."""
        return dataclasses.replace(self, name=f"{self.base_name}-x{members}", members=int(members))

    @property
    def base_name(self) -> str:
        """The name of one network of this shape: an ensemble's without its -xK."""
        return self.name.rsplit("-x", 1)[0] if self.members > 1 else self.name

    @property
    def sizes(self) -> list:
        return [self.inputs, *self.hidden, self.outputs]

    @property
    def n_weights(self) -> int:
        s = self.sizes
        return sum(a * b for a, b in zip(s[:-1], s[1:]))

    @property
    def flops_per_sample(self) -> int:
        """Forward (2W) + backward (dW and dA_prev: 4W) multiply-adds, as 2 FLOPs each."""
        return 6 * self.n_weights

    @property
    def gemm_shape(self) -> tuple:
        """The representative GEMM: one hidden layer's forward product, batch x widest x widest."""
        width = max(self.hidden) if self.hidden else max(self.inputs, self.outputs)
        return (self.batch, width, width)

    @property
    def gemm_batch(self) -> int:
        """How many of gemm_shape the GEMM roofline runs as one batched product (the ensemble's K)."""
        return self.members

    def spec(self) -> str:
        """NAME:IN:H1xH2:OUT:BATCH, with -xK for an ensemble of K (small:16:64x64:1:128-x4), as parse_config reads it
        back: the same shape and members (not gpu_only, which no spec holds). An ensemble's was small-x4:16:64x64:1:128,
        read back as one network named small-x4."""
        shape = f"{self.base_name}:{self.inputs}:{'x'.join(map(str, self.hidden))}:{self.outputs}:{self.batch}"
        return shape + (f"-x{self.members}" if self.members > 1 else "")


CONFIGS = {c.name: c for c in (
    Config("small", 16, (64, 64), 1, 128),
    Config("medium", 64, (256, 256), 1, 256),
    Config("wide", 256, (1024, 1024, 1024), 1, 1024),
    Config("deep", 128, (512,) * 6, 4, 512),
    Config("large", 1024, (4096,) * 4, 1, 8192, gpu_only=True),
)}
QUICK_CONFIG = Config("tiny", 8, (32, 32), 1, 64)
# The ensemble targets of issue 11 (not in the default run: each also times K sequential fits).
ENSEMBLE_CONFIGS = {c.name: c for c in (
    CONFIGS["small"].ensemble(64),
    CONFIGS["medium"].ensemble(16),
    dataclasses.replace(CONFIGS["small"].ensemble(256), gpu_only=True),
)}
_ENSEMBLE_SUFFIX = re.compile(r"^(.*)-x(\d+)$")


def parse_config(text: str) -> Config:
    """A named configuration, or ``name:inputs:h1xh2x...:outputs:batch`` (hidden may be empty);
    either with ``-xK`` appended is an ensemble of K (e.g. ``small-x64``)."""
    if text in CONFIGS:
        return CONFIGS[text]
    if text == QUICK_CONFIG.name:  # --quick's, which its rows name (not in the default run)
        return QUICK_CONFIG
    if text in ENSEMBLE_CONFIGS:
        return ENSEMBLE_CONFIGS[text]
    match = _ENSEMBLE_SUFFIX.match(text)
    if match and int(match.group(2)) == 1:  # (it ran as the plain configuration, in rows named NAME-x1)
        raise ValueError(f"configuration {text!r}: an ensemble needs K of 2 or more; {match.group(1)} alone times one "
                         "network")
    if match and int(match.group(2)) >= 2:
        return parse_config(match.group(1)).ensemble(int(match.group(2)))
    parts = text.split(":")
    if len(parts) != 5:
        known = ", ".join([*CONFIGS, QUICK_CONFIG.name])
        raise ValueError(f"unknown configuration {text!r}: use one of {known}, or name:inputs:h1xh2:outputs:batch "
                         "(e.g. mine:32:128x128:1:256)")
    name, inputs, hidden, outputs, batch = parts
    try:
        hidden_sizes = tuple(int(h) for h in hidden.replace(",", "x").split("x") if h.strip())
        numbers = [int(inputs), int(outputs), int(batch), *hidden_sizes]
    except ValueError:
        raise ValueError(f"configuration {text!r}: sizes must be integers, e.g. mine:32:128x128:1:256") from None
    if not name or any(n < 1 for n in numbers):
        raise ValueError(f"configuration {text!r}: needs a name and positive sizes")
    return Config(name, int(inputs), hidden_sizes, int(outputs), int(batch))
