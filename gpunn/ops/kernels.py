"""The CUDA kernel sources: where they are, every name to instantiate, and compiled modules.

The sources live in the checkout's top-level ``kernels/`` (an installed wheel carries them
as ``gpunn/kernels/``). Each ``.cu`` file becomes one ``cupy.RawModule``, built on first use
and cached for the process; its kernels are templates picked by name expression, e.g.
``gpunn::bias_act_forward<float, 6>`` (activation ids are ``Activation.kernel_id``).

CuPy is imported only when a module is built, so importing this file needs only NumPy.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy

from ..activations import ACTIVATIONS
from .base import is_bf16 as dtype_is_bf16

# NVRTC options; CuPy adds -arch for the current device. No fast math (--use_fast_math) of our own:
# the kernels must agree with the NumPy reference (tests/test_kernel_math_host.py,
# tests/test_cupy_ops_gpu.py). But CuPy always appends -ftz=true to every NVRTC compile
# (cupy/cuda/compiler.py, _compile_with_cache_cuda), so float32 denormals (|x| < 1.2e-38) are
# flushed to zero on the GPU: a float32 kernel never produces or keeps a subnormal, where NumPy
# would. float64 is not affected. CuPy 14 also adds --device-as-default-execution-space (functions and
# namespace-scope variables without an execution space are __device__; compiler.py,
# _compile_using_nvrtc_no_warning), -arch=sm_XX of the device, --pch with NVRTC >= 12.8, and -I paths
# (CuPy's headers, CCCL, the CUDA headers: the kernels include nothing under NVRTC).
# tests/test_kernel_compile.py compiles with CUPY_ADDED_OPTIONS too (and --pch where NVRTC has it).
COMPILE_OPTIONS = ("-std=c++17",)
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

# numpy dtype -> C++ type of the kernels' T
CXX_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
# bfloat16 storage (kernels/bfloat16.cuh): math in float, float32 master gradients. Its numpy dtype
# is ml_dtypes.bfloat16, needed only to run the kernels, not to list or compile them.
BF16 = "bfloat16"
BF16_CXX = "gpunn::bf16"
# the kernels with a bf16 instance; to_storage exists for bf16 only
BF16_KERNELS = ("bias_act_forward", "act_backward_from_input", "act_backward_from_output", "bias_grad",
                "bias_grad_finish", "to_storage", "member_bias_act_forward", "member_bias_grad")
BF16_ONLY = ("to_storage",)

# source file -> kernels it defines, and what each is templated on besides T
SOURCES = {
    "elementwise.cu": {
        "bias_act_forward": "act",
        "act_backward_from_input": "act",
        "act_backward_from_output": "act_from_output",
        "to_storage": None,
    },
    "reductions.cu": {"mse_grad": None, "weighted_mse_grad": None, "bias_grad": None, "bias_grad_finish": None},
    "optimizers.cu": {"sgd_step": None, "adam_step": None, "optimizer_tick": None, "sgd_step_dev": None,
                      "adam_step_dev": None, "clip_sum_sq": None, "clip_factor": None, "clip_scale": None,
                      "clip_by_value": None},
    # the member-axis kernels of gpunn.Ensemble
    "ensemble.cu": {"member_bias_act_forward": "act", "member_bias_grad": None, "member_mse_grad": None,
                    "member_weighted_mse_grad": None, "member_sgd_step": None, "member_adam_step": None,
                    "member_adam_step_dev": None, "member_grad_sum_sq": None, "member_grad_sum_total": None,
                    "member_clip_grad": None},
    # gpunn.rng's draws on a GPU: several Philox streams per launch
    "random.cu": {"philox_normal": None, "philox_uniform": None},
}
KERNEL_SOURCE = {kernel: source for source, kernels in SOURCES.items() for kernel in kernels}

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*(?://.*)?$', re.MULTILINE)


class KernelError(RuntimeError):
    """The kernel sources are missing, or did not compile (the message carries the log)."""


def kernel_dir() -> Path:
    """The folder holding the kernel sources: an installed wheel's, else the checkout's."""
    package = Path(__file__).resolve().parent.parent  # gpunn/
    for candidate in (package / "kernels", package.parent / "kernels"):
        if (candidate / "activations.cuh").is_file():
            return candidate
    raise KernelError(
        f"gpunn's CUDA kernel sources were not found (looked in {package / 'kernels'} and "
        f"{package.parent / 'kernels'}); reinstall gpunn"
    )


def load_source(filename: str) -> str:
    """The text of a kernel source with its local ``#include "..."`` files inlined.

    Inlining (rather than ``-I``) makes the code CuPy hashes for its on-disk kernel cache
    cover the headers too, so an edited header is never served from a stale cache.
    """
    folder = kernel_dir()
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        path = folder / name
        if not path.is_file():
            raise KernelError(f"kernel source {path} not found")
        text = path.read_text()
        text = _INCLUDE.sub(lambda m: expand(m.group(1)) + f'\n#line {_line_after(text, m)} "{name}"', text)
        return f'#line 1 "{name}"\n{text}'

    return expand(filename)


def _line_after(text: str, match) -> int:
    return text.count("\n", 0, match.end()) + 2  # the include sits on line count+1


def is_bf16(dtype) -> bool:
    """Whether ``dtype`` is bfloat16: the name "bfloat16", ml_dtypes.bfloat16 (the type or its dtype),
    or uint16 (bf16 bits without ml_dtypes).

    It runs at every kernel launch (get_kernel), so a dtype goes to gpunn.ops.base.is_bf16 (itemsize
    and kind): comparing a dtype with the string "bfloat16" makes NumPy try to parse the string as a
    dtype, and ``dtype.name`` is computed in Python -- about 4 us per call together, 10 launches per
    small-net step."""
    if isinstance(dtype, numpy.dtype):
        return dtype_is_bf16(dtype)
    if isinstance(dtype, str):
        return dtype in (BF16, "uint16")
    return getattr(dtype, "__name__", None) in (BF16, "uint16")  # the scalar types ml_dtypes.bfloat16, numpy.uint16


def _cxx_type(kernel: str, dtype) -> str:
    if is_bf16(dtype):
        if kernel in BF16_KERNELS:
            return BF16_CXX
    elif kernel not in BF16_ONLY:
        cxx = CXX_TYPES.get(numpy.dtype(dtype))
        if cxx is not None:
            return cxx
    raise KernelError(f"no {kernel} kernel for dtype {dtype}")


def kernel_dtypes(kernel: str) -> list:
    """The dtypes ``kernel`` is instantiated for (bfloat16 as the name ``BF16``)."""
    plain = [] if kernel in BF16_ONLY else list(CXX_TYPES)
    return plain + ([BF16] if kernel in BF16_KERNELS else [])


def name_expression(kernel: str, dtype, act=None) -> str:
    """The template instance of ``kernel`` for ``dtype`` (and activation, for the activation kernels)."""
    cxx = _cxx_type(kernel, dtype)
    if SOURCES[KERNEL_SOURCE[kernel]][kernel] is None:
        return f"gpunn::{kernel}<{cxx}>"
    kernel_id = act if isinstance(act, int) else act.kernel_id
    return f"gpunn::{kernel}<{cxx}, {kernel_id}>"


def name_expressions(source: str, bf16: bool | None = None) -> list[str]:
    """Every template instance in ``source``: each kernel x dtype (x activation); ``bf16`` True or
    False: only the bfloat16 instances, or only the others (the two modules built at run time)."""
    names = []
    for kernel, over in SOURCES[source].items():
        for dtype in kernel_dtypes(kernel):
            if bf16 is not None and (dtype == BF16) != bf16:
                continue
            if over is None:
                names.append(name_expression(kernel, dtype))
                continue
            for act in ACTIVATIONS.values():
                if over == "act_from_output" and act.grad_from_output is None:
                    continue
                names.append(name_expression(kernel, dtype, act))
    return names


def all_name_expressions() -> dict[str, list[str]]:
    return {source: name_expressions(source) for source in SOURCES}


@functools.lru_cache(maxsize=None)
def module(source: str, bf16: bool | None = None):
    """The compiled ``cupy.RawModule`` for a source file (built once per process). The run time
    builds the bfloat16 instances as a module of their own (``bf16=True``), so float32 training
    never waits for their compilation; ``bf16=None`` compiles all."""
    import cupy

    mod = cupy.RawModule(
        code=load_source(source), options=COMPILE_OPTIONS, name_expressions=name_expressions(source, bf16)
    )
    try:
        mod.compile()  # compile now, so a failure surfaces here with its log
    except cupy.cuda.compiler.CompileException as exc:
        log = exc.get_message() if hasattr(exc, "get_message") else str(exc)
        raise KernelError(f"compiling gpunn kernels/{source} failed:\n{log}") from exc
    return mod


def get_kernel(kernel: str, dtype, act=None):
    """The ``cupy.RawKernel`` for one template instance (``act``: Activation or kernel id)."""
    key_act = act if act is None or isinstance(act, int) else act.kernel_id
    return _get(kernel, BF16 if is_bf16(dtype) else numpy.dtype(dtype).str, key_act)


@functools.lru_cache(maxsize=None)
def _get(kernel: str, dtype_str: str, act):
    mod = module(KERNEL_SOURCE[kernel], dtype_str == BF16)
    return mod.get_function(name_expression(kernel, dtype_str if dtype_str == BF16 else numpy.dtype(dtype_str), act))
