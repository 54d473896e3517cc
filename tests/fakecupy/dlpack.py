"""DLPack capsules of the stand-in's device arrays, as CuPy's ``__dlpack__`` exports them: a ``dltensor`` capsule
whose DLTensor says ``(kDLCUDA, device)`` and points at the array's memory (cupy/_core/dlpack.pyx ``_toDlpack``),
so that a consumer judges it by its device as it would CuPy's: NumPy's ``from_dlpack`` refuses it in NumPy's own
words ("Unsupported device in DLTensor."), and the stand-in's ``from_dlpack`` takes it back as a view.

Built with ctypes (DLPack 0.8's unversioned ``DLManagedTensor``, which consumers asking for version 1 accept too).
A capsule never consumed is not freed through a destructor (a ctypes callback cannot run while the consumer has
its refusal pending): its few bytes stay in ``_EXPORTED``, holding the array only by a weak reference.
"""
from __future__ import annotations

import ctypes
import weakref

kDLCPU, kDLCUDA = 1, 2  # DLDeviceType (dlpack.h)
_DTYPE_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}  # DLDataTypeCode: kDLInt, kDLUInt, kDLFloat, kDLComplex, kDLBool
_NAME, _USED = b"dltensor", b"used_dltensor"  # kept alive here: a capsule keeps a pointer to its name
_VERSIONED = b"dltensor_versioned"  # DLPack 1's name (NumPy's when asked for version 1)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _Deleter)]



class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", _Deleter), ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_EXPORTED: dict = {}  # the DLManagedTensor's address -> (it, its shape and strides, a weak reference to the array)


@_Deleter
def _deleter(address):  # a consumer done with the tensor calls it (DLPack's rule)
    _EXPORTED.pop(address, None)


_api = ctypes.pythonapi
_api.PyCapsule_New.restype, _api.PyCapsule_New.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                                              ctypes.c_void_p]
_api.PyCapsule_IsValid.restype, _api.PyCapsule_IsValid.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype, _api.PyCapsule_SetName.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.c_char_p]


def export(array, address, device_id):
    """A ``dltensor`` capsule of ``array`` (a NumPy array in the stand-in's device memory at ``address``) on CUDA
    device ``device_id``."""
    if array.dtype.kind not in _DTYPE_CODES:
        raise BufferError(f"dtype {array.dtype} is not supported by DLPack")
    n = max(array.ndim, 1)
    shape = (ctypes.c_int64 * n)(*array.shape)
    strides = (ctypes.c_int64 * n)(*(s // array.itemsize for s in array.strides))
    dtype = _DLDataType(_DTYPE_CODES[array.dtype.kind], array.dtype.itemsize * 8, 1)
    managed = _DLManagedTensor(_DLTensor(address, _DLDevice(kDLCUDA, device_id), array.ndim, dtype, shape, strides, 0),
                               None, _deleter)
    _EXPORTED[ctypes.addressof(managed)] = (managed, shape, strides, weakref.ref(array))
    return _api.PyCapsule_New(ctypes.addressof(managed), _NAME, None)


def device_of(capsule):
    """(device type, device id) of an unconsumed DLPack capsule (either version), or None for anything else."""
    for name, managed in ((_NAME, _DLManagedTensor), (_VERSIONED, _DLManagedTensorVersioned)):
        if _api.PyCapsule_IsValid(capsule, name):
            tensor = managed.from_address(_api.PyCapsule_GetPointer(capsule, name)).dl_tensor
            return tensor.device.device_type, tensor.device.device_id
    return None


def consume(capsule):
    """The array a capsule of ``export`` holds, the capsule marked used (as a consumer marks it) and its tensor
    released; None where the capsule is not one of this module's (or was consumed)."""
    if not _api.PyCapsule_IsValid(capsule, _NAME):
        return None
    address = _api.PyCapsule_GetPointer(capsule, _NAME)
    kept = _EXPORTED.get(address)
    array = None if kept is None else kept[3]()
    if array is None:
        return None
    _api.PyCapsule_SetName(capsule, _USED)
    _deleter(address)
    return array
