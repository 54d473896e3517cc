"""Kernel signatures parsed from CUDA source, launch checks, and the NumPy reference of each kernel.

How a launch is checked (``launch``): the ``RawKernel``'s name expression, e.g.
``gpunn::bias_act_forward<float, 6>``, is matched to the ``__global__`` function of that name in the
source the module was built from; its template parameters are bound (``typename T`` -> a NumPy dtype,
``int ACT`` -> an int) and each parameter of the signature is checked against the argument passed:

- a pointer parameter (``const T* x``) takes a device array (``fakecupy.ndarray``) on the current
  device, of exactly the pointee's dtype, or the null pointer ``numpy.uintp(0)``; a C-contiguous array
  is what the kernel may touch, a strided view (positive strides) the memory from its first to its last
  element, since such a kernel takes strides of its own;
  anything else (a host array, a Python int, a 0-d array standing in for a scalar) is refused;
- a scalar parameter takes exactly the NumPy scalar type of its C++ type (``long long`` ->
  ``numpy.int64``, ``int`` -> ``numpy.int32``, ``T`` -> ``numpy.float32`` when T is float): a Python
  float or int would be passed to CUDA with another width, which CuPy does not catch;
- grid and block are tuples of 1 to 3 positive ints within CUDA's limits (block <= 1024 threads).

The kernel then runs as its registered reference: a Python function computing what the kernel must
compute, with the NumPy math of ``gpunn.ops.Ops`` / ``gpunn.activations``. It receives a ``Launch``
(grid, block, and ``read``/``write`` to take a flat view of a pointer argument after checking that the
array holds the elements the kernel touches), the bound template arguments, then the kernel's
arguments (None for a null pointer). A reference also asserts the launch-shape rules its kernel
documents (e.g. bias_grad's block of 32 columns, and that its chunks cover every row).

Adding a kernel (a bf16 instantiation, an ensemble kernel with a member axis in kernels/ensemble.cu):
1. nothing to do for the signature: it is parsed from the ``.cu`` source the module compiles, and a
   new C++ type only needs an entry in ``CXX_DTYPES`` (``__nv_bfloat16`` maps to ``ml_dtypes.bfloat16``
   where ml_dtypes is installed);
2. register its reference here (or from your test module) with ``@reference("kernel_name")``, taking
   ``(launch, *template_args, *kernel_args)``; compute in float64 or the kernel's T, and write the
   result through ``launch.write(ptr, n)``;
3. an unregistered kernel fails its first launch with a message naming this file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy

from gpunn.activations import ACTIVATIONS

CXX_DTYPES = {
    "float": numpy.dtype(numpy.float32),
    "double": numpy.dtype(numpy.float64),
    "int": numpy.dtype(numpy.int32),
    "unsigned": numpy.dtype(numpy.uint32),
    "unsigned int": numpy.dtype(numpy.uint32),
    "long long": numpy.dtype(numpy.int64),
    "unsigned long long": numpy.dtype(numpy.uint64),
    "size_t": numpy.dtype(numpy.uint64),
}
try:  # the bfloat16 kernels (precision="bf16", kernels/bfloat16.cuh) take ml_dtypes.bfloat16 arrays
    import ml_dtypes

    BF16 = numpy.dtype(ml_dtypes.bfloat16)
    for _name in ("gpunn::bf16", "bf16", "__nv_bfloat16"):
        CXX_DTYPES[_name] = BF16
except ImportError:
    BF16 = None


def compute_dtype(T):
    """compute_t<T> and master_t<T> of kernels/bfloat16.cuh: float for bf16, T otherwise."""
    return numpy.dtype(numpy.float32) if BF16 is not None and T == BF16 else T


# C++ type templates used in kernel signatures: name -> dtype of the argument's dtype
TYPE_TEMPLATES = {"master_t": compute_dtype, "compute_t": compute_dtype}

NULL_TYPES = (numpy.uintp, numpy.uint64, numpy.intp)
MAX_GRID = (2**31 - 1, 65535, 65535)

REFERENCES: dict = {}


def reference(name):
    """Register ``fn(launch, *template_args, *kernel_args)`` as what kernel ``name`` computes."""
    def register(fn):
        REFERENCES[name] = fn
        return fn
    return register


@dataclass
class Param:
    name: str
    ctype: str  # the C++ type without const / *
    pointer: bool
    const: bool = False  # a pointer to const: the kernel only reads through it


@dataclass
class Signature:
    name: str
    template: list  # [(kind, name)] kind is "typename" or an integral C++ type
    params: list


_KERNEL = re.compile(r"(?:template\s*<(?P<tpl>[^>]*)>\s*)?(?:extern\s+\"C\"\s+)?__global__\s+void\s+"
                     r"(?P<name>\w+)\s*\((?P<params>[^)]*)\)", re.S)


def _strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    return re.sub(r"//[^\n]*", " ", code)


def parse_signatures(code: str) -> dict:
    """{kernel name: Signature} for every __global__ function in ``code``."""
    out = {}
    for m in _KERNEL.finditer(_strip_comments(code or "")):
        template = []
        if m.group("tpl"):
            for part in m.group("tpl").split(","):
                words = part.split()
                template.append(("typename" if words[0] in ("typename", "class") else " ".join(words[:-1]), words[-1]))
        params = []
        for part in m.group("params").split(","):
            part = " ".join(part.replace("*", " * ").split())
            if not part:
                continue
            pointer = "*" in part
            words = [w for w in part.replace("*", " ").split() if w not in ("const", "__restrict__", "volatile")]
            const = pointer and "const" in part.split("*")[0].split()
            params.append(Param(words[-1], " ".join(words[:-1]), pointer, const))
        out[m.group("name")] = Signature(m.group("name"), template, params)
    return out


def resolve(expression: str, signatures: dict):
    """(Signature, bound template {name: dtype or int}) for a name expression like ns::k<float, 3>."""
    m = re.fullmatch(r"\s*(?:[\w:]*::)?(\w+)\s*(?:<(.*)>)?\s*", expression)
    if not m or m.group(1) not in signatures:
        raise KeyError(f"kernel {expression!r} is not defined in the module's source "
                       f"(defined: {', '.join(sorted(signatures))})")
    sig = signatures[m.group(1)]
    args = [a.strip() for a in m.group(2).split(",")] if m.group(2) else []
    if len(args) != len(sig.template):
        raise KeyError(f"{expression}: {len(args)} template arguments for {len(sig.template)} parameters")
    bound = {}
    for (kind, name), arg in zip(sig.template, args):
        if kind == "typename":
            if arg not in CXX_DTYPES:
                raise KeyError(f"{expression}: no NumPy dtype for C++ type {arg!r} (add it to CXX_DTYPES)")
            bound[name] = CXX_DTYPES[arg]
        else:
            bound[name] = int(arg)
    return sig, bound


class LaunchError(AssertionError):
    """A kernel launch that would be wrong on a GPU."""


class Launch:
    def __init__(self, name, grid, block, arrays):
        self.name, self.grid, self.block, self._arrays = name, grid, block, arrays

    @property
    def threads(self) -> int:
        return int(numpy.prod(self.grid)) * int(numpy.prod(self.block))

    def check(self, ok, message):
        if not ok:
            raise LaunchError(f"{self.name} grid={self.grid} block={self.block}: {message}")

    def read(self, name, n):
        """A flat float view of the first ``n`` elements of pointer argument ``name`` (checked to hold them)."""
        arr = self._arrays[name]
        self.check(arr is not None, f"dereferences the null pointer argument {name!r}")
        n = int(n)
        # a negative count (one that wrapped in a narrower integer on the way) makes the kernel's loops do
        # nothing on a GPU, where the slice below would take all but the last elements
        self.check(n >= 0, f"argument {name!r}: the kernel is given a negative count of {n} elements")
        self.check(arr.size >= n, f"argument {name!r} holds {arr.size} elements but the kernel touches {n}")
        return arr.reshape(-1)[:n]

    write = read  # a view: assigning into it writes the device array

    def is_null(self, name) -> bool:
        return self._arrays[name] is None


def _dims(value, what, launch_name):
    dims = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, numpy.integer)) and not isinstance(d, bool) for d in dims):
        raise LaunchError(f"{launch_name}: {what} must be a tuple of 1-3 ints, got {value!r}")
    if any(d < 1 for d in dims):
        raise LaunchError(f"{launch_name}: {what} {dims} has an empty dimension (CUDA: invalid configuration)")
    return dims + (1,) * (3 - len(dims))


def ctype_dtype(ctype: str, bound: dict):
    """The NumPy dtype of a C++ parameter type: T, float, master_t<T>, ..."""
    m = re.fullmatch(r"(\w+)\s*<\s*(.+?)\s*>", ctype)
    if m and m.group(1) in TYPE_TEMPLATES:
        inner = ctype_dtype(m.group(2), bound)
        return None if inner is None else TYPE_TEMPLATES[m.group(1)](inner)
    return bound.get(ctype, CXX_DTYPES.get(ctype))


def _span(a, where, name):
    """A strided view as the kernel sees it: the flat memory from its first to its last element (a
    kernel given such a view indexes it with strides of its own, e.g. member k's bias at b + k * stride)."""
    steps = [st // a.itemsize for st in a.strides]
    if any(st < 0 or st % a.itemsize for st in a.strides) or 0 in a.shape:
        raise LaunchError(f"{where}: {name} has strides {a.strides}: a kernel cannot index that flat")
    span = 1 + sum((n - 1) * st for n, st in zip(a.shape, steps))
    return numpy.lib.stride_tricks.as_strided(a, (span,), (a.itemsize,))


def launch(kernel, grid, block, args, device_array, state):
    """Check a launch (see the module docstring), then compute it with the kernel's reference."""
    prepare(kernel, grid, block, args, device_array, state)()


def prepare(kernel, grid, block, args, device_array, state):
    """Every check of ``launch``; returns the reference's run as a callable (a launch captured into
    a CUDA graph is checked when captured and run when the graph is launched)."""
    sig, bound = kernel._signature, kernel._template
    where = f"{kernel.name}"
    grid, block = _dims(grid, "grid", where), _dims(block, "block", where)
    if int(numpy.prod(block)) > 1024 or block[2] > 64:
        raise LaunchError(f"{where}: block {block} exceeds 1024 threads (or 64 in z)")
    if any(g > lim for g, lim in zip(grid, MAX_GRID)):
        raise LaunchError(f"{where}: grid {grid} exceeds CUDA's limits {MAX_GRID}")
    if not isinstance(args, tuple):
        raise LaunchError(f"{where}: args must be a tuple, got {type(args).__name__}")
    if len(args) != len(sig.params):
        raise LaunchError(f"{where}: {len(args)} arguments for {len(sig.params)} parameters "
                          f"({', '.join(p.name for p in sig.params)})")
    values, arrays = [], {}
    for p, a in zip(sig.params, args):
        want = ctype_dtype(p.ctype, bound)
        if want is None:
            raise LaunchError(f"{where}: parameter {p.name} has C++ type {p.ctype!r}, unknown to fakecupy")
        if p.pointer:
            if isinstance(a, device_array):
                if a._device_id != state.current:
                    raise LaunchError(f"{where}: {p.name} is on device {a._device_id}, the launch on {state.current}")
                bf16_bits = BF16 is not None and want == BF16 and a.dtype == numpy.uint16  # bf16 kept as uint16
                if a.dtype != want and not bf16_bits:
                    raise LaunchError(f"{where}: {p.name} is {p.ctype}* ({want}) but the array is {a.dtype}")
                host = a.view(numpy.ndarray).view(want) if bf16_bits else a.view(numpy.ndarray)
                arrays[p.name] = host if a.flags.c_contiguous else _span(host, where, p.name)
            elif isinstance(a, NULL_TYPES) and int(a) == 0:
                arrays[p.name] = None
            else:
                raise LaunchError(f"{where}: {p.name} is a pointer ({p.ctype}*); got {type(a).__name__} {a!r:.60} "
                                  "(pass a device array or numpy.uintp(0) for null)")
            values.append(arrays[p.name])
        else:
            if isinstance(a, numpy.ndarray) or type(a) is not want.type:
                raise LaunchError(f"{where}: {p.name} is a {p.ctype} scalar and needs exactly numpy.{want.type.__name__}; "
                                  f"got {type(a).__name__} (another width would be passed to CUDA)")
            values.append(a)
    ref = REFERENCES.get(sig.name)
    if ref is None:
        raise LaunchError(f"{where}: no NumPy reference registered for kernel {sig.name!r}; "
                          "add one with @reference in tests/fakecupy/kernels.py")
    run = Launch(where, grid, block, arrays)
    names = [p.name for p in sig.params]

    def compute():
        with numpy.errstate(all="ignore"):
            ref(run, *bound.values(), **dict(zip(names, values)))
    return compute


# ---- the references ------------------------------------------------------------------------

_BY_ID = {a.kernel_id: a for a in ACTIVATIONS.values()}


def _act(launch, act_id):
    launch.check(act_id in _BY_ID, f"unknown activation id {act_id}")
    return _BY_ID[act_id]


@reference("gpunn_probe")
def _probe(launch, x, n):
    v = launch.write("x", n)
    v[...] = 2 * v + 1


@reference("bias_act_forward")
def _bias_act_forward(launch, T, ACT, Z_in, b, Z_keep, A, rows, cols):
    n, C = int(rows) * int(cols), compute_dtype(T)  # read T, compute in compute_t<T>, write T
    z = launch.read("Z_in", n).astype(C).reshape(int(rows), int(cols))
    if b is not None:
        z = (z + launch.read("b", cols).astype(C)).astype(C)
    if Z_keep is not None:
        launch.write("Z_keep", n)[...] = z.reshape(-1)
    out = numpy.empty_like(z)
    _act(launch, ACT).forward(numpy, z, out)
    launch.write("A", n)[...] = out.reshape(-1)


def _act_backward(launch, T, ACT, n, source_name, from_output):
    act = _act(launch, ACT)
    fn = act.grad_from_output if from_output else act.grad_from_input
    launch.check(fn is not None, f"{act.name} has no g' from the output")
    C = compute_dtype(T)
    dA, src = launch.read("dA", n).astype(C), launch.read(source_name, n).astype(C)
    grad = numpy.empty_like(src)
    fn(numpy, src, grad)
    launch.write("dZ", n)[...] = dA * grad


@reference("act_backward_from_input")
def _act_backward_from_input(launch, T, ACT, dA, Z, dZ, n):
    _act_backward(launch, T, ACT, n, "Z", False)


@reference("act_backward_from_output")
def _act_backward_from_output(launch, T, ACT, dA, A, dZ, n):
    _act_backward(launch, T, ACT, n, "A", True)


@reference("mse_grad")
def _mse_grad(launch, T, A, Y, dA, scale, n, sum_sq):
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "mse_grad's block_sum needs a one-dimensional block, a multiple of 32 threads")
    d = launch.read("A", n).astype(T) - launch.read("Y", n)
    if dA is not None:
        launch.write("dA", n)[...] = scale * d
    total = launch.write("sum_sq", 1)
    total += numpy.dot(d.astype(numpy.float64), d.astype(numpy.float64))


@reference("weighted_mse_grad")
def _weighted_mse_grad(launch, T, A, Y, y_stride, w, w_stride, dA, scale, rows, cols, sum_sq):
    """Ops.loss_gradient(weights=)'s roundings: (scale * d) * w in T, the sum of (d * w) * d in float64."""
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "weighted_mse_grad's block_sum needs a one-dimensional block, a multiple of 32 threads")
    rows, cols, ys, ws = int(rows), int(cols), int(y_stride), int(w_stride)
    launch.check(ys >= cols or rows <= 1, f"Y's rows, {ys} elements apart, overlap its {cols} columns")
    targets = launch.read("Y", (rows - 1) * ys + cols)
    Yv = numpy.lib.stride_tricks.as_strided(targets, (rows, cols), (ys * targets.itemsize, targets.itemsize))
    weights = launch.read("w", (rows - 1) * ws + 1)[::ws] if ws else launch.read("w", 1).repeat(rows)
    d = launch.read("A", rows * cols).reshape(rows, cols).astype(T) - Yv
    launch.write("dA", rows * cols)[...] = ((scale * d) * weights[:, None]).reshape(-1)
    D = d.astype(numpy.float64)
    total = launch.write("sum_sq", 1)
    total += numpy.dot((D * weights.astype(numpy.float64)[:, None]).reshape(-1), D.reshape(-1))


@reference("bias_grad")
def _bias_grad(launch, T, dZ, db, partial, rows, cols, rows_per_chunk):
    rows, cols, per = int(rows), int(cols), int(rows_per_chunk)
    bx, by, bz = launch.block
    launch.check(bx == 32 and bz == 1 and by & (by - 1) == 0 and by <= 32, "block must be (32, Y), Y a power of two <= 32")
    gx, chunks, gz = launch.grid
    launch.check(gz == 1 and gx * 32 >= cols, f"grid.x = {gx} blocks of 32 columns do not cover {cols} columns")
    launch.check(per >= 1 and chunks * per >= rows, f"{chunks} chunks of {per} rows do not cover {rows} rows")
    launch.check((chunks - 1) * per < rows or rows == 0, "a chunk starts past the last row")
    Z = launch.read("dZ", rows * cols).reshape(rows, cols).astype(numpy.float64)
    if chunks == 1:
        launch.write("db", cols)[...] = Z.sum(axis=0)
        return
    part = launch.write("partial", chunks * cols).reshape(chunks, cols)
    for k in range(chunks):
        part[k] = Z[k * per:(k + 1) * per].sum(axis=0)


@reference("bias_grad_finish")
def _bias_grad_finish(launch, T, partial, db, chunks, cols):
    part = launch.read("partial", int(chunks) * int(cols)).reshape(int(chunks), int(cols))
    launch.write("db", cols)[...] = part.sum(axis=0)


@reference("to_storage")
def _to_storage(launch, T, src, dst, n):
    launch.write("dst", n)[...] = launch.read("src", n)  # numpy's cast to bfloat16 rounds to nearest even


def device_pow(beta, t):
    """CUDA's double pow(beta, t) in kernels/optimizers.cuh's adam_bias_correction, emulated by the C library's (the
    pow of Python floats). Every kernel that forms Adam's bias corrections calls this one: a test that replaces it
    (tests/test_graph_gpu.py) tells the device's pow from a host's pow in the launch arguments."""
    return float(beta) ** float(t)


def _bias_correction(beta, t):
    return 1.0 - device_pow(beta, t)


@reference("optimizer_tick")
def _optimizer_tick(launch, T, state, beta1, beta2):
    s = launch.write("state", 4)
    s[0] += 1.0
    s[2], s[3] = _bias_correction(beta1, s[0]), _bias_correction(beta2, s[0])


@reference("sgd_step_dev")
def _sgd_step_dev(launch, T, w, g, vel, state, momentum, weight_decay, nesterov, n):
    _sgd_step(launch, T, w, g, vel, T.type(launch.read("state", 2)[1]), momentum, weight_decay, nesterov, n)


@reference("adam_step_dev")
def _adam_step_dev(launch, T, w, g, m, v, state, one_minus_beta1, one_minus_beta2, eps, weight_decay, decoupled, n):
    s = launch.read("state", 4)
    _adam_flat(launch, T, T.type(s[1]), one_minus_beta1, one_minus_beta2, eps, T.type(s[2]), T.type(s[3]), weight_decay,
               decoupled, n)


@reference("sgd_step")
def _sgd_step(launch, T, w, g, vel, lr, momentum, weight_decay, nesterov, n):
    from gpunn.ops import Ops

    launch.check(vel is not None or momentum == 0, "a null velocity with momentum != 0")
    velocity = launch.write("vel", n) if vel is not None else None
    Ops(numpy).sgd_step(launch.write("w", n), launch.read("g", n).copy(), velocity, lr, momentum, bool(nesterov),
                        weight_decay)


@reference("adam_step")
def _adam_step(launch, T, w, g, m, v, lr, one_minus_beta1, one_minus_beta2, eps, beta1, beta2, step, weight_decay,
               decoupled, n):
    _adam_flat(launch, T, lr, one_minus_beta1, one_minus_beta2, eps, T.type(_bias_correction(beta1, step)),
               T.type(_bias_correction(beta2, step)), weight_decay, decoupled, n)


@reference("clip_sum_sq")
def _clip_sum_sq(launch, T, g, n, partial):
    """Each block's sum of the squares of its grid-stride elements, in float64."""
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1) and launch.grid[1:] == (1, 1),
                 "clip_sum_sq's block_sum needs a one-dimensional block, a multiple of 32 threads")
    G = launch.read("g", n).astype(numpy.float64)
    blocks, threads = launch.grid[0], launch.block[0]
    block_of = (numpy.arange(int(n)) // threads) % blocks
    launch.write("partial", blocks)[...] = numpy.bincount(block_of, weights=G * G, minlength=blocks)


@reference("clip_factor")
def _clip_factor(launch, T, partial, parts, max_norm, factor):
    launch.check(launch.grid == (1, 1, 1) and launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "clip_factor sums the partial sums in one block, a multiple of 32 threads")
    total = numpy.float64(launch.read("partial", parts).sum())
    coef = max_norm / (numpy.sqrt(total) + 1e-6)
    launch.write("factor", 1)[0] = 1.0 if coef > 1.0 else coef  # (a NaN kept)


@reference("clip_scale")
def _clip_scale(launch, T, g, factor, n):
    G = launch.write("g", n)
    G *= T.type(launch.read("factor", 1)[0])


@reference("clip_by_value")
def _clip_by_value(launch, T, g, clip_value, n):
    G = launch.write("g", n)
    G[...] = numpy.where(G < -clip_value, -clip_value, numpy.where(G > clip_value, clip_value, G))


def _adam_flat(launch, T, lr, one_minus_beta1, one_minus_beta2, eps, bias_c1, bias_c2, weight_decay, decoupled, n):
    """adam_loop (optimizers.cu) over the launch's n parameters w, g, m, v."""
    W, G, M, V = (launch.write(k, n) for k in ("w", "g", "m", "v"))
    _adam_math(T, W, G, M, V, lr, one_minus_beta1, one_minus_beta2, eps, bias_c1, bias_c2, weight_decay, decoupled)


def _adam_math(T, W, G, M, V, lr, one_minus_beta1, one_minus_beta2, eps, bias_c1, bias_c2, weight_decay, decoupled):
    """optimizers.cuh's adam_update over arrays (W, M, V updated in place; G read)."""
    G = G.copy()
    if weight_decay and decoupled:
        W *= T.type(1) - lr * weight_decay
    elif weight_decay:
        G = G + weight_decay * W
    M += one_minus_beta1 * (G - M)
    V += one_minus_beta2 * (G * G - V)
    denom = numpy.sqrt(V) / numpy.sqrt(bias_c2) + eps
    W -= (lr / bias_c1) * M / denom


# ---- gpunn.Ensemble's kernels (kernels/ensemble.cu): a member axis k = 0..members-1 ------------------
# Member k's activations are the k-th [rows x cols] block; its parameters the k-th run of per_member
# values; its bias/targets at k * stride; its optimizer settings row k of `hyper` (ensemble.cuh).
HYPER_FIELDS = 8  # lr, weight decay, momentum, beta1, beta2, active, clip_norm, clip_value


def _members(launch, members):
    launch.check(int(members) >= 0, f"negative member count {members}")
    return range(int(members))


@reference("member_bias_act_forward")
def _member_bias_act_forward(launch, T, ACT, Z_in, b, b_stride, Z_keep, A, members, rows, cols):
    n, C, K = int(rows) * int(cols), compute_dtype(T), int(members)
    z_all, a_all = launch.read("Z_in", K * n), launch.write("A", K * n)
    keep = launch.write("Z_keep", K * n) if Z_keep is not None else None
    bias = launch.read("b", (K - 1) * int(b_stride) + int(cols)) if b is not None and K else None
    for k in _members(launch, members):
        z = z_all[k * n:(k + 1) * n].astype(C).reshape(int(rows), int(cols))
        if bias is not None:
            z = (z + bias[k * int(b_stride):k * int(b_stride) + int(cols)].astype(C)).astype(C)
        if keep is not None:
            keep[k * n:(k + 1) * n] = z.reshape(-1)
        out = numpy.empty_like(z)
        _act(launch, ACT).forward(numpy, z, out)
        a_all[k * n:(k + 1) * n] = out.reshape(-1)


@reference("member_bias_grad")
def _member_bias_grad(launch, T, dZ, db, db_stride, members, rows, cols):
    rows, cols, K = int(rows), int(cols), int(members)
    bx, by, bz = launch.block
    launch.check(bx == 32 and bz == 1 and by & (by - 1) == 0 and by <= 32, "block must be (32, Y), Y a power of two <= 32")
    launch.check(launch.grid[0] * 32 >= cols and launch.grid[2] == 1, f"grid {launch.grid} does not cover {cols} columns")
    Z = launch.read("dZ", K * rows * cols).reshape(K, rows, cols).astype(numpy.float64)
    out = launch.write("db", (K - 1) * int(db_stride) + cols) if K else None
    for k in _members(launch, members):
        out[k * int(db_stride):k * int(db_stride) + cols] = Z[k].sum(axis=0)


@reference("member_mse_grad")
def _member_mse_grad(launch, T, A, Y, y_stride, dA, scale, members, n, sum_sq):
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "block_sum needs a one-dimensional block, a multiple of 32 threads")
    n, K = int(n), int(members)
    a_all, y_all = launch.read("A", K * n), launch.read("Y", (K - 1) * int(y_stride) + n if K else 0)
    grad = launch.write("dA", K * n) if dA is not None else None
    sums = launch.write("sum_sq", K)
    for k in _members(launch, members):
        d = a_all[k * n:(k + 1) * n].astype(T) - y_all[k * int(y_stride):k * int(y_stride) + n]
        if grad is not None:
            grad[k * n:(k + 1) * n] = scale * d
        sums[k] += numpy.dot(d.astype(numpy.float64), d.astype(numpy.float64))


@reference("member_weighted_mse_grad")
def _member_weighted_mse_grad(launch, T, A, Y, y_member, y_row, w, w_member, w_row, dA, scale, members, rows, cols,
                              sum_sq):
    """EnsembleOps.loss_gradient(weights=)'s roundings, member by member: weighted_mse_grad's."""
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "block_sum needs a one-dimensional block, a multiple of 32 threads")
    K, rows, cols = int(members), int(rows), int(cols)
    ym, yr, wm, wr = int(y_member), int(y_row), int(w_member), int(w_row)
    launch.check(yr >= cols or rows <= 1, f"Y's rows, {yr} elements apart, overlap its {cols} columns")
    launch.check(ym == 0 or ym >= (rows - 1) * yr + cols, f"Y's members, {ym} elements apart, overlap its rows")
    n = rows * cols
    targets = launch.read("Y", (K - 1) * ym + (rows - 1) * yr + cols if K else 0)
    weights = launch.read("w", (K - 1) * wm + (rows - 1) * wr + 1 if K else 0)
    a_all, grad, sums = launch.read("A", K * n), launch.write("dA", K * n), launch.write("sum_sq", K)
    for k in _members(launch, members):
        Yk = numpy.lib.stride_tricks.as_strided(targets[k * ym:], (rows, cols), (yr * targets.itemsize,
                                                                                  targets.itemsize))
        wk = numpy.lib.stride_tricks.as_strided(weights[k * wm:], (rows,), (wr * weights.itemsize,))
        d = a_all[k * n:(k + 1) * n].reshape(rows, cols).astype(T) - Yk
        grad[k * n:(k + 1) * n] = ((scale * d) * wk[:, None]).reshape(-1)
        D = d.astype(numpy.float64)
        sums[k] += numpy.dot((D * wk.astype(numpy.float64)[:, None]).reshape(-1), D.reshape(-1))


@reference("member_grad_sum_sq")
def _member_grad_sum_sq(launch, T, g, hyper, members, per_member, partial):
    """Each active member's that clips by norm: partial[k, b] = block b's sum of its gradient row's float64 squares
    (its grid-stride elements); the other members' slots left as they are."""
    launch.check(launch.block[0] % 32 == 0 and launch.block[1:] == (1, 1),
                 "block_sum needs a one-dimensional block, a multiple of 32 threads")
    p, K = int(per_member), int(members)
    blocks, threads = launch.grid[0], launch.block[0]
    G, H = launch.read("g", K * p), launch.read("hyper", K * HYPER_FIELDS).reshape(K, HYPER_FIELDS)
    parts = launch.write("partial", K * blocks).reshape(K, blocks)
    block_of = (numpy.arange(p) // threads) % blocks
    for k in _members(launch, members):
        if H[k, 5] and H[k, 6] > 0:
            row = G[k * p:(k + 1) * p].astype(numpy.float64)
            parts[k] = numpy.bincount(block_of, weights=row * row, minlength=blocks)


@reference("member_grad_sum_total")
def _member_grad_sum_total(launch, T, partial, parts, hyper, members, sum_sq):
    """Each active member's that clips by norm: sum_sq[k] = the sum of its blocks' sums (one block per member)."""
    launch.check(launch.grid[0] == 1 and launch.grid[2] == 1 and launch.block[0] % 32 == 0
                 and launch.block[1:] == (1, 1), "member_grad_sum_total adds a member's sums in one block of x")
    K, n = int(members), int(parts)
    P, H = launch.read("partial", K * n).reshape(K, n), launch.read("hyper", K * HYPER_FIELDS).reshape(K, HYPER_FIELDS)
    sums = launch.write("sum_sq", K)
    for k in _members(launch, members):
        if H[k, 5] and H[k, 6] > 0:
            sums[k] = P[k].sum()


@reference("member_clip_grad")
def _member_clip_grad(launch, T, g, hyper, sum_sq, members, per_member):
    """EnsembleOps.clip_gradients' arithmetic per active member: g *= T(c / (sqrt(sum_sq[k]) + 1e-6)) where under 1;
    g into [-T(v), T(v)]."""
    p, K = int(per_member), int(members)
    G, H = launch.write("g", K * p), launch.read("hyper", K * HYPER_FIELDS).reshape(K, HYPER_FIELDS)
    launch.check(sum_sq is not None or not (H[:, 5].astype(bool) & (H[:, 6] > 0)).any(),
                 "a member clips by norm but sum_sq is null")
    sums = launch.read("sum_sq", K) if sum_sq is not None else None
    for k in _members(launch, members):
        *_, active, clip_norm, clip_value = H[k]
        row = G[k * p:(k + 1) * p]
        if not active:
            continue
        if clip_norm > 0:
            coef = clip_norm / (numpy.sqrt(sums[k]) + 1e-6)
            if not coef >= 1:  # (NaN too)
                row *= T.type(coef)
        if clip_value > 0:
            numpy.clip(row, -T.type(clip_value), T.type(clip_value), out=row)


@reference("member_sgd_step")
def _member_sgd_step(launch, T, w, g, vel, hyper, nesterov, members, per_member):
    from gpunn.ops import Ops

    p, K = int(per_member), int(members)
    W, G = launch.write("w", K * p), launch.read("g", K * p)
    V = launch.write("vel", K * p) if vel is not None else None
    H = launch.read("hyper", K * HYPER_FIELDS).reshape(K, HYPER_FIELDS)
    for k in _members(launch, members):
        lr, wd, mu, _, _, active, _, _ = H[k]
        if not active:
            continue
        launch.check(V is not None or mu == 0, f"member {k} has momentum {mu} but the velocity is null")
        Ops(numpy).sgd_step(W[k * p:(k + 1) * p], G[k * p:(k + 1) * p].copy(),
                            V[k * p:(k + 1) * p] if V is not None else None, T.type(lr), T.type(mu), bool(nesterov),
                            T.type(wd))


@reference("member_adam_step")
def _member_adam_step(launch, T, w, g, m, v, hyper, eps, step, decoupled, members, per_member):
    p, K = int(per_member), int(members)
    W, G, M, V = (launch.write(name, K * p) for name in ("w", "g", "m", "v"))
    H = launch.read("hyper", K * HYPER_FIELDS).reshape(K, HYPER_FIELDS)
    for k in _members(launch, members):
        lr, wd, _, beta1, beta2, active, _, _ = H[k]
        if not active:
            continue
        part = slice(k * p, (k + 1) * p)
        _adam_math(T, W[part], G[part], M[part], V[part], T.type(lr), T.type(1.0 - beta1), T.type(1.0 - beta2), eps,
                   T.type(_bias_correction(beta1, step)), T.type(_bias_correction(beta2, step)), T.type(wd), decoupled)


@reference("member_adam_step_dev")
def _member_adam_step_dev(launch, T, w, g, m, v, hyper, eps, state, decoupled, members, per_member):
    _member_adam_step(launch, T, w, g, m, v, hyper, eps, float(launch.read("state", 1)[0]), decoupled, members,
                      per_member)


# ---- gpunn.rng's Philox draws (kernels/random.cu): streams laid out by a table of (key, draw, start) --------------

def _philox_fill(launch, T, kind, n_streams, n, low=0.0, scale=1.0):
    import philox_reference

    S, n = int(n_streams), int(n)
    launch.check(S >= 1, f"{S} streams")
    table = launch.read("streams", 3 * S).reshape(S, 3)
    starts = [int(s) for s in table[:, 2]] + [n]
    launch.check(starts[0] == 0 and all(a <= b for a, b in zip(starts, starts[1:])),
                 f"the streams' starts {starts[:-1]} are not in order within the {n} values")
    out = launch.write("out", n)
    for (key, draw, _), start, end in zip(table, starts, starts[1:]):
        out[start:end] = philox_reference.draw(kind, int(key), int(draw), end - start, T, low, scale)


@reference("philox_normal")
def _philox_normal(launch, T, streams, n_streams, n, out):
    _philox_fill(launch, T, "normal", n_streams, n)


@reference("philox_uniform")
def _philox_uniform(launch, T, streams, n_streams, n, low, scale, out):
    _philox_fill(launch, T, "uniform", n_streams, n, low, scale)
