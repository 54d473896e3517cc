"""cupy.cuda.nccl for tests: communicators whose ranks are threads of this process.

``NcclCommunicator(ndev, uid, rank)`` joins the clique of ``uid`` (one per ``get_unique_id()``) on the
device current when it is made, as NCCL binds a communicator to it. ``allReduce`` and ``bcast`` take raw
device addresses, a count of elements and an NCCL data type, as NCCL does, and check what NCCL cannot
check for its caller:

- the buffer at the address is a live allocation of that data type, and holds ``count`` elements (a
  count in bytes, or a float32 code for a float64 buffer, fails here);
- the stream (a ``cupy.cuda.Stream.ptr``; 0 is the legacy null stream of the communicator's device, which
  NCCL makes current to enqueue) belongs to the communicator's device (a communicator made with another
  device current fails here), and the collective is ordered on it like a kernel (tests/fakecupy/ordering.py):
  gradients written on one stream and reduced on another without an event fail;
- then every rank waits for the others (a thread barrier), and each receives the reduction of all ranks'
  buffers in rank order (``NCCL_SUM``, ``NCCL_MAX``...) or the root's buffer.

gpunn.distributed.comm.NcclComm takes this module where ``_load_nccl`` would return cupy.cuda.nccl
(tests/test_fakecupy.py patches it). Nothing here is NCCL's own code: the GPU run's bench/gpu_checks/nccl.py
runs the real library.
"""
from __future__ import annotations

import itertools
import threading

import numpy

from . import _STREAMS, _allocations, CUDARuntimeError, _cython_ints, _device_current, _issuing, _ordering, state

available = True
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3  # ncclRedOp_t
NCCL_FLOAT32, NCCL_FLOAT64 = 7, 8  # ncclDataType_t (ncclFloat32, ncclFloat64)
_DTYPES = {NCCL_FLOAT32: numpy.dtype(numpy.float32), NCCL_FLOAT64: numpy.dtype(numpy.float64)}
_REDUCE = {NCCL_SUM: numpy.add, NCCL_PROD: numpy.multiply, NCCL_MAX: numpy.maximum, NCCL_MIN: numpy.minimum}
_IDS = itertools.count(1)
_CLIQUES: dict = {}
_LOCK = threading.Lock()
TIMEOUT_S = 30.0  # a rank that never joins a collective fails the others instead of hanging the test


class NcclError(RuntimeError):
    pass


def get_unique_id():
    """bytes, as CuPy 14's (cupy_backends/cuda/libs/nccl.pyx: a tuple of ints before 14.0), NCCL_UNIQUE_ID_BYTES long."""
    return next(_IDS).to_bytes(8, "little") + bytes(120)


def get_version():
    return 22105  # 2.21.5


class _Clique:
    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=TIMEOUT_S)
        self.slots = [None] * size

    def exchange(self, rank, value):
        """Every rank's ``value``, in rank order, once all ranks have given theirs."""
        self.slots[rank] = value
        self.barrier.wait()
        got = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before everyone has read them
        return got


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        if not isinstance(commId, bytes):  # CuPy 14: NcclCommunicator(int ndev, bytes commId, int rank)
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got {type(commId).__name__})")
        _cython_ints("NcclCommunicator", ndev=("int", ndev), rank=("int", rank))
        if not 0 <= rank < ndev:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: rank {rank} of {ndev}")
        with _LOCK:
            self._clique = _CLIQUES.setdefault(commId, _Clique(ndev))
        if self._clique.size != ndev:
            raise NcclError(f"NCCL_ERROR_INVALID_USAGE: {ndev} ranks for a clique of {self._clique.size}")
        # underscore names: CuPy's communicator has rank_id(), size() and device_id() methods, not these
        self._rank, self._size, self._device = rank, ndev, state.current
        self._calls = []  # (collective, count, data type, op or root, stream pointer) of each call

    def _buffer(self, what, ptr, count, datatype):
        dtype = _DTYPES.get(datatype)
        if dtype is None:
            raise NcclError(f"{what}: NCCL_ERROR_INVALID_ARGUMENT: data type {datatype}")
        for start, root in _allocations():
            if start <= ptr < start + root.nbytes:
                break
        else:
            raise NcclError(f"{what}: address {ptr:#x} is not in any live device allocation")
        if root.dtype != dtype:
            raise NcclError(f"{what}: an NCCL {dtype} collective on a {root.dtype} buffer")
        offset = ptr - start
        if offset % dtype.itemsize or offset + int(count) * dtype.itemsize > root.nbytes:
            raise NcclError(f"{what}: {count} x {dtype} at offset {offset} runs past a {root.nbytes}-byte allocation")
        return root.reshape(-1).view(numpy.uint8)[offset:offset + int(count) * dtype.itemsize].view(dtype)

    def _stream(self, what, ptr):
        stream = _STREAMS.get(int(ptr))
        if stream is None:
            raise CUDARuntimeError(f"{what}: {ptr:#x} is not a stream")
        if stream._device is not None and stream._device != self._device:
            raise CUDARuntimeError(f"{what}: a stream of device {stream._device} on a communicator of device "
                                   f"{self._device} (make the communicator with its device current)")
        return _issuing(stream)

    def _enqueue(self, what, stream, reads, writes):
        """The collective on ``stream``, enqueued with the communicator's device current, as NCCL enqueues it
        (src/enqueue.cc, ncclEnqueueCheck: cudaSetDevice(comm->cudaDev)): stream 0 is that device's null stream."""
        with _device_current(self._device):
            _ordering.access(self._stream(what, stream), what, reads=reads, writes=writes)

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        what = "ncclAllReduce"
        _cython_ints(what, sendbuf=("intptr_t", sendbuf), recvbuf=("intptr_t", recvbuf), count=("size_t", count),
                     datatype=("int", datatype), op=("int", op), stream=("intptr_t", stream))
        self._calls.append((what, int(count), datatype, op, int(stream)))
        send, recv = self._buffer(what, sendbuf, count, datatype), self._buffer(what, recvbuf, count, datatype)
        if op not in _REDUCE:
            raise NcclError(f"{what}: NCCL_ERROR_INVALID_ARGUMENT: op {op}")
        self._enqueue(what, stream, reads=[send], writes=[recv])
        parts = self._clique.exchange(self._rank, send.copy())
        total = parts[0].copy()
        for part in parts[1:]:
            _REDUCE[op](total, part, out=total)
        recv[...] = total

    def bcast(self, buff, count, datatype, root, stream):
        what = "ncclBcast"
        _cython_ints(what, buff=("intptr_t", buff), count=("size_t", count), datatype=("int", datatype),
                     root=("int", root), stream=("intptr_t", stream))
        self._calls.append((what, int(count), datatype, root, int(stream)))
        buf = self._buffer(what, buff, count, datatype)
        if not 0 <= root < self._size:
            raise NcclError(f"{what}: NCCL_ERROR_INVALID_ARGUMENT: root {root} of {self._size}")
        self._enqueue(what, stream, reads=[buf], writes=[buf])
        buf[...] = self._clique.exchange(self._rank, buf.copy())[root]

    def abort(self):
        self._clique.barrier.abort()


def abort_all():
    """Break every clique's barrier: the ranks still waiting in a collective fail at once (a test whose
    rank failed elsewhere)."""
    with _LOCK:
        for clique in _CLIQUES.values():
            clique.barrier.abort()
        _CLIQUES.clear()
