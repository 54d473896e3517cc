"""``gpunn bench``: training throughput against the GEMM roofline and against peers, in one run.

- :mod:`gpunn.bench.configs`: the named configurations and the NAME:IN:H1xH2:OUT:BATCH spec;
- :mod:`gpunn.bench.runners`: the implementations under test (gpunn, a GEMM, the peers), the
  per-op profile and the interleaved run;
- :mod:`gpunn.bench.system`: the machine (CPU, BLAS, versions), also used by ``gpunn info``;
- :mod:`gpunn.bench.report`, :mod:`gpunn.bench.plot`: the table, JSON and chart;
- :mod:`gpunn.bench.naive`: the naive NumPy baseline (the seed's equations, written plainly);
- :mod:`gpunn.bench.kernels`: the elementwise-kernel bandwidth benchmark
  (``python -m gpunn.bench.kernels``).

The names below are what ``gpunn bench`` (gpunn.cli.bench) uses.
"""
from __future__ import annotations

from .configs import CONFIGS, QUICK_CONFIG, Config, parse_config
from .plot import plot
from .report import format_setup, format_table, gemm_note, write_json
from .runners import PEERS, available_backends, load_naive, run
from .system import blas_info, setup_info

__all__ = ["CONFIGS", "QUICK_CONFIG", "Config", "parse_config", "plot", "format_setup", "format_table", "gemm_note",
           "write_json", "PEERS", "available_backends", "load_naive", "run", "blas_info", "setup_info"]
