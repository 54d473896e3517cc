"""The benchmark configurations: named network shapes and batch sizes, and the NAME:IN:H1xH2:OUT:BATCH spec."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    inputs: int
    hidden: tuple
    outputs: int
    batch: int
    gpu_only: bool = False

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

    def spec(self) -> str:
        return f"{self.name}:{self.inputs}:{'x'.join(map(str, self.hidden))}:{self.outputs}:{self.batch}"


CONFIGS = {c.name: c for c in (
    Config("small", 16, (64, 64), 1, 128),
    Config("medium", 64, (256, 256), 1, 256),
    Config("wide", 256, (1024, 1024, 1024), 1, 1024),
    Config("deep", 128, (512,) * 6, 4, 512),
    Config("large", 1024, (4096,) * 4, 1, 8192, gpu_only=True),
)}
QUICK_CONFIG = Config("tiny", 8, (32, 32), 1, 64)


def parse_config(text: str) -> Config:
    """A named configuration, or ``name:inputs:h1xh2x...:outputs:batch`` (hidden may be empty)."""
    if text in CONFIGS:
        return CONFIGS[text]
    parts = text.split(":")
    if len(parts) != 5:
        known = ", ".join(CONFIGS)
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
