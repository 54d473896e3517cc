"""``gpunn bench``: training throughput against the GEMM roofline and against peers, in one run.

- :mod:`gpunn.bench.configs`: the named configurations and the NAME:IN:H1xH2:OUT:BATCH spec;
- :mod:`gpunn.bench.runners`: the implementations under test (gpunn, a GEMM, the peers), the
  per-op profile and the interleaved run;
- :mod:`gpunn.bench.ensemble`: ensembles (``small-x64``): gpunn.Ensemble against K sequential fits,
  a torch vmap ensemble and K torch models in a loop;
- :mod:`gpunn.bench.system`: the machine (CPU, BLAS, versions), also used by ``gpunn info``;
- :mod:`gpunn.bench.report`, :mod:`gpunn.bench.plot`: the table, JSON and chart;
- :mod:`gpunn.bench.naive`: the naive NumPy baseline (README's "The math", written plainly);
- :mod:`gpunn.bench.kernels`: the elementwise-kernel bandwidth benchmark
  (``python -m gpunn.bench.kernels``).

The names below are what ``gpunn bench`` (gpunn.cli.bench) uses.
"""
from __future__ import annotations

from .configs import CONFIGS, ENSEMBLE_CONFIGS, QUICK_CONFIG, Config, parse_config
from .ensemble import ENSEMBLE_PEERS, run_ensembles
from .plot import plot
from .report import format_setup, format_table, gemm_note, graph_note, json_bytes, write_json
from .runners import PEERS, available_backends, load_naive, run
from .system import blas_info, peer_versions, setup_info

__all__ = ["CONFIGS", "ENSEMBLE_CONFIGS", "ENSEMBLE_PEERS", "run_ensembles", "QUICK_CONFIG", "Config", "parse_config", "plot", "format_setup", "format_table", "gemm_note", "graph_note",
           "write_json", "json_bytes", "PEERS", "available_backends", "load_naive", "run", "blas_info", "peer_versions",
           "setup_info"]
