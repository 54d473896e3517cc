"""Data-parallel training: ``mpiexec -n P python script.py`` with ``model.fit(..., distributed=True)`` (an
MLP or a gpunn.Ensemble; ``mpiexec -n P gpunn train`` and ``gpunn sweep`` turn it on themselves).

Every rank runs the same script on the same data; each trains its piece of every global batch
(P x the per-rank ``batch_size`` rows; of a gpunn.data source, each rank reads only its shard:
:class:`ShardedSource`), the gradients are summed over ranks in one all-reduce
of the flat gradient buffer per step, and every rank takes the same optimizer step: the result
is the single-process run at the global batch size, up to the order of summation (on a gpunn.data
source, the one process reading ``ShardedSource(source, P)``: the same rows per global batch as the
source at P x ``batch_size``, batch i of every shard, in another order).
Engines: MPI through mpi4py for CPU models (``pip install "gpunn[mpi]"``), NCCL through CuPy
for GPU models (one GPU per rank: ``MLP(..., device=gpunn.distributed.local_device())``).
"""
from .comm import DistributedError, MpiComm, NcclComm, launched_rank, launched_size, local_device, world
from .digest import ConfigMismatch
from .hook import GradientAllReduce
from .shard import ShardedArraySource, ShardedSource

__all__ = ["ConfigMismatch", "DistributedError", "GradientAllReduce", "MpiComm", "NcclComm", "ShardedArraySource",
           "ShardedSource",
           "launched_rank", "launched_size", "local_device", "world"]
