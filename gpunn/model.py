"""The MLP: layer sizes, initialisation, flat parameters, forward and backward.

Rows are examples. For layers l = 1..L (A[0] = X):
    Z[l] = A[l-1] @ W[l] (+ b[l]),    A[l] = g[l](Z[l])
    f    = (1/m) * ||A[L] - Y||_F^2
    dA[L] = (2/m)(A[L] - Y);  dZ[l] = dA[l] * g'(Z[l]);  dW[l] = A[l-1]^T @ dZ[l]
    db[l] = column sums of dZ[l];  dA[l-1] = dZ[l] @ W[l]^T
W[l] and b[l] are views into one flat parameter buffer, their gradients views
into one flat gradient buffer, so an optimizer step is one pass over each.

Precision (GPU only): "float32"; "tf32" (the same, with the matrix products on TF32 tensor
cores); "bf16", in which these tensors are bfloat16 -- the hidden layers' Z[l], A[l], dA[l] and
dZ[l] (l < L), a bf16 copy of X and of the parameters (made from the float32 ones at each
forward pass) and a bf16 copy of dZ[L] -- and everything else is float32: the parameters,
gradients and optimizer state (master copies), the output layer's Z[L], A[L], dA[L], dZ[L], the
targets, the loss, and the predictions. Products take bf16 operands and accumulate in float32;
dW[l] is written in float32, db[l] summed in double. bf16 arrays are ml_dtypes.bfloat16 where
ml_dtypes is installed, else uint16 holding the same 16 bits.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os

import numpy

from . import backend as _backend, sample_weights
from .activations import Activation, get_activation
from .checks import (DTYPES, NotFinite, as_array, as_matrix, by_feature_names, canonical_dtype, check_rows_match, flag,
                     held_warnings, picked_names, positive_int, seed_int, warn_read_by_position)
from .hints import (OTHER_MODEL_ATTRIBUTES, bracketed_hint, keywords_checked, keywords_hinted, missing_attribute,
                    targets_refused, value_repr)
from .ops import ops_for
from .ops.base import bf16_dtype
from .ops.fit_threads import inference_threads
from .ops.mlp_step import one_call_gradients, one_call_step
from .training.ensemble import fit_ensemble
from .training.fit import as_function, as_method, fit as _fit, refuse_weights_where_unweighted, weighted_rows
from .training.graph import graph_mode

PRECISIONS = ("float32", "tf32", "bf16")
PREDICT_CHUNK_ROWS = 65536  # bounds predict's workspace on very large inputs
STANDARDIZE_CHUNK_ROWS = 65536  # rows standardized in float64 at a time (RawUnits._standardized)
# Tests only: run tf32/bf16 on the CPU through the NumPy emulation in gpunn.ops.Ops (the reference
# the GPU path is compared with). The public API refuses them on the CPU.
_EMULATE_PRECISION_ON_CPU = False


def check_precision(precision, dtype, backend, fused=None) -> str:
    """The precision, or a ValueError saying why it cannot run here."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {value_repr(precision)}"
                         f"{bracketed_hint(precision, PRECISIONS, 'precision')}")
    if precision == "float32":
        return precision
    if numpy.dtype(dtype) != numpy.float32:
        raise ValueError(f"precision={precision!r} needs dtype='float32' (its master weights are float32), "
                         f"got dtype={numpy.dtype(dtype).name!r}")
    if runnable_precision(precision, backend) != precision:  # the one rule of where tf32/bf16 run
        raise ValueError(f"precision={precision!r} runs the matrix products on NVIDIA tensor cores and needs a "
                         f"CUDA GPU; this model is on {backend.device!r}. Use precision='float32' on the CPU.")
    return precision


def runnable_precision(precision, backend) -> str:
    """``precision`` where ``backend`` can run it, else "float32" (the CPU has no tensor cores): how a saved
    model's precision is restored (gpunn.load, checkpoints) on whatever device it is loaded on."""
    return precision if backend.is_gpu or _EMULATE_PRECISION_ON_CPU else "float32"


def _read_by_chunk(X, chunk_rows) -> bool:
    """Whether ``_predicted`` converts X a chunk at a time: a NumPy array (an np.memmap among them) of more rows than a
    chunk that the whole read would copy (another dtype than the model's, not C-contiguous, a memmap: as_matrix copies
    all but a plain array it takes as it is). Read whole, a float64 memmap of 1M x 16 for a float32 model took its
    whole size in host memory at once (122 MiB, tracemalloc's peak); a chunk's conversion is elementwise, so the
    predictions are the same to the bit."""
    return (isinstance(X, numpy.ndarray) and not isinstance(X, numpy.ma.MaskedArray) and X.ndim == 2
            and X.shape[0] > chunk_rows and X.dtype.kind in "biuf")


def _pieces(X, chunk_rows):
    return (X[first:first + chunk_rows] for first in range(0, X.shape[0], chunk_rows))


def _counted(exc, count, start=0):
    """NotFinite ``exc`` saying ``count`` values, its rows counted from ``start``."""
    name = str(exc).split(" contains ", 1)[0]
    return NotFinite(name, count, start + exc.row, exc.column, exc.dtype, exc.scaled, exc.label)


class ParamList(list):
    """A list of views into a flat buffer; assigning an item copies into the buffer. ``model_attribute``: the
    model's attribute it is, "weights" or "biases", as refusals name it (``gpunn.SGD(model.weights)``)."""

    def __init__(self, backend, model_attribute):
        super().__init__()
        self.backend = backend
        self.xp = backend.xp
        self.model_attribute = model_attribute

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            raise TypeError("assign parameters one at a time, e.g. model.weights[0][...] = W")
        target = list.__getitem__(self, index)
        with self.backend.use():  # on cuda:N the copy happens on device N
            value = self.xp.asarray(value, dtype=target.dtype)  # host data is copied to the device here
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"shape {tuple(value.shape)} does not match the parameter's {tuple(target.shape)}")
            target[...] = value


class _Parameters:
    """A model's parameter buffer (``params``) or its views (``weights``, ``biases``): set once, as the model builds
    them, then changed in place. Replacing one (``model.params = other.params.copy()``) left the buffer that the
    forward pass reads and the optimizer steps: predict went on with the old weights, and a fit stepped an array no
    forward pass read, its loss unmoved, without a word; so it is refused, saying to copy into it."""

    _COPY = {"params": "model.params[...] = P", "weights": "model.weights[l - 1][...] = W",
             "biases": "model.biases[l - 1][...] = b"}

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, model, owner=None):
        if model is None:
            return self
        try:
            return model.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{type(model).__name__!r} object has no attribute {self.name!r}") from None

    def __set__(self, model, value):
        if self.name in model.__dict__:
            what = "is the buffer" if self.name == "params" else "are views into model.params, the buffer"
            raise AttributeError(f"model.{self.name} {what} that the forward pass reads and fit updates: replacing "
                                 f"{self.name} would leave the model computing and training with the old one; copy "
                                 f"into it: {self._COPY[self.name]}")
        model.__dict__[self.name] = value


class _Workspace:
    """Preallocated per-layer buffers for one batch size.

    ``storage`` (bf16) is the dtype of the hidden layers' buffers, of ``X16`` (the input) and of
    ``dZ16`` (the output layer's dZ for the products); the output layer's are ``dtype``."""

    def __init__(self, xp, rows, sizes, acts, dtype, storage=None):
        self.Z, self.A, self.dA = [], [], []
        storage = dtype if storage is None else storage
        for l, (n, act) in enumerate(zip(sizes[1:], acts)):
            dt = storage if l < len(acts) - 1 else dtype
            Z = xp.empty((rows, n), dt)
            self.Z.append(Z)
            # Z is kept beside A only for activations whose g' needs it; identity shares the buffer.
            self.A.append(xp.empty((rows, n), dt) if act.needs_input_for_grad else Z)
            self.dA.append(xp.empty((rows, n), dt))
        if storage != dtype:
            self.X16 = xp.empty((rows, sizes[0]), storage)
            self.dZ16 = xp.empty((rows, sizes[-1]), storage)
        self.one_call_net = self.one_call_plan = None  # the one-call step's arguments (gpunn.ops.mlp_step)


def _may_share_memory(A, data) -> bool:
    """Whether a checked array A may be (part of) the memory of the caller's ``data``, so that scaling A
    in place would change the caller's array: A is data, a view of it, or a view of what data views
    (``y = z[:100]``, a DataFrame column's values: their reshape's base is z, not y)."""
    if A is data:
        return True
    on_host = not (_backend.is_device_array(A) or _backend.is_device_array(data))  # CuPy arrays: the owner rule
    if on_host and isinstance(A, numpy.ndarray) and isinstance(data, numpy.ndarray):
        return bool(numpy.may_share_memory(A, data))

    def owner(a):
        base = getattr(a, "base", None)
        return a if base is None else base

    return owner(A) is owner(data)


def _rows_of(X):
    """X's row count before X is read: a 2-D shape's (an array, a DataFrame), a list's or tuple's length (of rows: a
    1-row list's predict set the BLAS count for nothing, 180 us for 83); None where X says none."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) == 2 else None
    return len(X) if isinstance(X, (list, tuple)) else None


def _in_fit_threads(method):
    """``method(self, X, ...)``, a pass of the model over X, run in the BLAS count its fit runs with
    (gpunn.ops.fit_threads.inference_threads): its validation's bits, and a small net's one thread's."""
    @functools.wraps(method)
    def run(self, X, *args, **kwargs):
        with inference_threads(self, _rows_of(X)):
            return method(self, X, *args, **kwargs)
    return run


class RawUnits:
    """What a model with a ``standardizer`` (training on a source made with standardize=True) needs to
    take data in raw units: MLP and Ensemble (``backend``, ``dtype``, ``xp``, ``layer_sizes``, and for
    ``_predicted`` their ``_as_input``, ``_forward`` and ``_workspace``)."""

    standardizer = None

    def _raw_input(self, data, name="X", target=False):
        """Raw-unit inputs (targets) for a model with a ``standardizer``, checked: in the model's dtype
        on its device, or, when that dtype would not hold them exactly (float64 or int64 values for a
        float32 model: gpunn.data.stats.standardizing_dtype), in float64 where they are (a float64
        array is not copied), for ``_scaled_rows`` to standardize a chunk at a time before the cast,
        as the data sources do. No whole float64 copy is made, on the host or the device."""
        from .data.stats import dtype_of, standardizing_dtype

        data = by_feature_names(data, self.data_columns, name, "targets" if target else "features")
        data = as_array(data, name)  # a DataFrame is read once
        wide = standardizing_dtype(dtype_of(data), self.dtype)
        backend = self.backend if wide == self.dtype else _backend.backend_of(data)
        return as_matrix(data, name, backend, wide, allow_1d=target, n_columns=self.layer_sizes[-1 if target else 0])

    def _scaled_rows(self, A, start, stop, target=False, name="X", names=None):
        """Rows start:stop of a ``_raw_input`` array, standardized (in A's dtype: float64 for wide
        values), then cast to the model's dtype on its device: a new array. A value standardized past the
        model's dtype (1e39 for a float32 model whose statistics are of values near 1) raises NotFinite
        naming its row in A (and its column's name, of ``names``): it was checked finite raw, and a model fed inf
        would predict NaN without a word."""
        chunk = self.xp.array(A[start:stop], copy=True)  # on the model's device, still in A's dtype: scaled in place
        with numpy.errstate(over="ignore"):  # the overflow is refused below, with its place
            out = self._scale_(chunk, target).astype(self.dtype, copy=False)
        return self._refuse_overflow(out, lambda: A, name, target, start, names)

    def _refuse_overflow(self, out, raw, name, target, start=0, names=None):
        """``out`` (rows from row ``start`` of the raw input ``raw()``, named ``name``, standardized in the model's
        dtype), or NotFinite for its first value that is not finite: the input was checked finite, so standardizing
        took it past the dtype. The message gives that value standardized in float64 (its row read again from
        ``raw()``, and copied: the caller's own float64 array, where no conversion copied it, was standardized in
        place; on the error's path only), and its column's name where ``names`` (a DataFrame's: picked_names) has
        one."""
        finite = self.xp.isfinite(out)
        if not bool(finite.all()):
            row, col = (int(i) for i in self.xp.argwhere(~finite)[0])
            wide = self.xp.array(raw()[start + row:start + row + 1], numpy.float64, copy=True)
            raise NotFinite(name, int(out.size - int(finite.sum())), start + row, col, numpy.dtype(self.dtype).name,
                            scaled=float(self._scale_(wide, target)[0, col]), label=names[col] if names else None)
        return out

    def _scale_(self, A, target=False):
        """A standardized in place by the ``standardizer``'s statistics of the targets (``target``) or of the
        inputs; returns A."""
        scaler = self.standardizer
        return (scaler.transform_y_ if target else scaler.transform_x_)(self.xp, A)

    def _standardized(self, X, Y, x_name="X", y_name="Y"):
        """Raw-unit (X, Y) as a model with a ``standardizer`` trains on them: checked, standardized
        (see ``_raw_input``), in the model's dtype; new arrays, the caller's are left as they are.
        Values in the model's dtype are scaled in one copy; wider ones a chunk of rows at a time. A value scaled
        past the model's dtype raises NotFinite (_refuse_overflow)."""
        def load(data, name, target):
            A = self._raw_input(data, name, target)
            names = picked_names(data, self.data_columns, name, "targets" if target else "features")
            if A.dtype == self.dtype:  # one copy (none more when checking converted it), scaled in place
                A = A.copy() if _may_share_memory(A, data) else A
                with numpy.errstate(over="ignore"):  # a value scaled past the dtype: refused just below
                    A = self._scale_(A, target)
                return self._refuse_overflow(A, lambda: self._raw_input(data, name, target), name, target, 0, names)
            out = self.xp.empty(A.shape, self.dtype)
            for start in range(0, A.shape[0], STANDARDIZE_CHUNK_ROWS):
                out[start:start + STANDARDIZE_CHUNK_ROWS] = self._scaled_rows(A, start, start + STANDARDIZE_CHUNK_ROWS,
                                                                              target, name, names)
            return out

        return load(X, x_name, False), load(Y, y_name, True)

    def _prediction_dtype(self):
        """The dtype ``predict`` returns: the model's, or float64 for a float32 model whose standardized
        targets were float64 or int64 (``Standardizer.prediction_dtype``): un-standardized in float64."""
        scaler = self.standardizer
        return self.dtype if scaler is None else scaler.prediction_dtype(self.dtype)

    @_in_fit_threads
    def _predicted(self, X, chunk_rows, members=()):
        """A[L] for the rows of X, ``chunk_rows`` at a time, in ``_prediction_dtype``: (rows, outputs), or
        (K, rows, outputs) with ``members=(K,)``. With a ``standardizer``, X in raw units, each chunk
        standardized before its forward pass, and the predictions returned in the targets' units.
        Call inside ``backend.use()``."""
        scaler = self.standardizer
        if _read_by_chunk(X, chunk_rows):
            out = self.xp.empty((*members, X.shape[0], self.layer_sizes[-1]), self._prediction_dtype())
            for start in range(0, X.shape[0], chunk_rows):
                try:
                    A, names = self._input_named(X[start:start + chunk_rows])
                    (_, P), = self._forward_chunks(A, chunk_rows, names)
                except NotFinite as exc:
                    raise self._as_read_whole(exc, start, X, chunk_rows) from None
                out[..., start:start + P.shape[-2], :] = P
        else:
            X, names = self._input_named(X)
            out = self.xp.empty((*members, X.shape[0], self.layer_sizes[-1]), self._prediction_dtype())
            try:
                for start, P in self._forward_chunks(X, chunk_rows, names):
                    out[..., start:start + P.shape[-2], :] = P
            except NotFinite as exc:  # a value standardized past the dtype: counted in its chunk alone
                raise _counted(exc, self._overflow_count(_pieces(X, chunk_rows))) from None
        if scaler is not None:
            scaler.inverse_y_(self.xp, out)
        return out

    def _as_read_whole(self, exc, start, X, chunk_rows):
        """NotFinite ``exc`` of X's chunk from row ``start`` (read by ``_predicted`` a chunk at a time) as the whole
        read says it: NaN or inf in any chunk as read (in the dtype it is checked in) first, counted over all of X
        with the first one's place, as the whole read's check of every value before any standardizing; else the
        values standardizing takes past the model's dtype, counted over all of X. On the error's path only: X is
        read again, a chunk at a time."""
        refused = []
        for first, piece in zip(range(0, X.shape[0], chunk_rows), _pieces(X, chunk_rows)):
            try:
                self._input_named(piece)
            except NotFinite as raw:
                refused.append((first, raw))
        if refused:
            (start, exc), count = refused[0], sum(raw.count for _, raw in refused)
        else:
            count = self._overflow_count(self._input_named(piece)[0] for piece in _pieces(X, chunk_rows))
        return _counted(exc, count, start)

    def _overflow_count(self, chunks) -> int:
        """How many values of the raw-input ``chunks`` (``_input_named``'s, checked finite) standardizing takes past
        the model's dtype."""
        count = 0
        for A in chunks:
            with numpy.errstate(over="ignore"):
                out = self._scale_(self.xp.array(A, copy=True)).astype(self.dtype, copy=False)
            count += int(out.size - int(self.xp.isfinite(out).sum()))
        return count

    def _input_named(self, X):
        """(X as ``_predicted`` reads it: ``_as_input``, or ``_raw_input`` for a model with a ``standardizer``, and its
        column names in that order where X is a DataFrame of named columns, for a refusal: picked_names)."""
        A = self._as_input(X) if self.standardizer is None else self._raw_input(X)
        return A, picked_names(X, self.data_columns)

    def _forward_chunks(self, X, chunk_rows, names=None):
        """(start, the forward pass's output on X's rows from ``start``), ``chunk_rows`` at a time; X as
        ``_input_named`` gives it, each chunk standardized first for a model with a ``standardizer`` (a value taken
        past the dtype is refused naming its row in X, and its column by ``names``). The output is in the workspace:
        read it before the next. Call inside ``backend.use()``."""
        for start in range(0, X.shape[0], chunk_rows):
            stop = start + chunk_rows
            chunk = X[start:stop] if self.standardizer is None else self._scaled_rows(X, start, stop, names=names)
            yield start, self._forward(chunk, self._workspace(chunk.shape[0]))

    def _raw_target(self, Y, name="Y"):
        """Targets as ``loss`` compares them with ``predict``: on the device in the predictions' dtype."""
        Y = by_feature_names(Y, self.data_columns, name, "targets")
        return as_matrix(Y, name, self.backend, self._prediction_dtype(), allow_1d=True,
                         n_columns=self.layer_sizes[-1])

    @_in_fit_threads
    def _evaluated(self, X, Y, chunk_rows, sample_weight=None) -> dict:
        """``evaluate``'s logs (validation_logs' names): the error of ``predict`` on X against Y, ``chunk_rows``
        at a time, in the targets' units as ``loss`` takes it (with a ``standardizer``: raw X, predictions
        un-standardized, Y in the predictions' dtype); each row's errors weighed by ``sample_weight`` where given
        (gpunn.sample_weights). Without a standardizer, the very sums validation adds. Call inside
        ``backend.use()``."""
        from .metrics import evaluate_pieces, total_squares

        Y = self._raw_target(Y)
        X, names = self._input_named(X)
        check_rows_match(X, Y)
        weights = sample_weights.checked_weights(sample_weight, Y.shape[0], counted="the metrics")
        weights = sample_weights.evaluation_weights(self.xp, weights, "these rows")
        scaler = self.standardizer

        def predicted():  # (predict's output on each chunk, and its targets: a refusal names its row in the whole X)
            for start, P in self._forward_chunks(X, chunk_rows, names):
                P = P.astype(self._prediction_dtype(), copy=True)
                if scaler is not None:
                    scaler.inverse_y_(self.xp, P)
                rows = slice(start, start + chunk_rows)
                yield (P, Y[rows]) if weights is None else (P, Y[rows], weights[rows])

        return evaluate_pieces(self, predicted(), total_squares(Y, weights), lambda P: P)

    def _evaluate_logs(self, X, Y, sample_weight, chunk_rows, members=()):
        """(logs, whether X is a data source) of ``evaluate``, MLP's and Ensemble's: ``_evaluated_source`` of a source
        (refusing ``sample_weight``: a source made with weights is weighed by its own, gpunn.data.row_weights),
        else ``_evaluated`` of (X, Y)
        weighed by ``sample_weight``, a DataFrame's columns read by position warned of. Call inside
        ``backend.use()``."""
        if source_given(X, Y, "evaluate"):
            if sample_weight is not None:
                raise ValueError("sample_weight weighs the rows of in-memory arrays; a data source carries its own "
                                 "(gpunn.data.npy(..., weights='w.npy'), a table's weight='w' column), which evaluate "
                                 "weighs its rows by: make the source with them, or evaluate its rows loaded as (X, Y) "
                                 "with sample_weight")
            return self._evaluated_source(X, chunk_rows, members), True
        with held_warnings():
            warn_read_by_position(X, self.data_columns, "X", self)
            return self._evaluated(X, Y, chunk_rows, sample_weight), False

    def _evaluated_source(self, source, chunk_rows, members=(), each=None) -> dict:
        """``_evaluated`` over every row of a data source, streamed a window at a time (gpunn.data.rawpass: raw
        rows, the model's standardizer applied as ``predict`` applies it); R²'s denominator from the targets'
        moments, merged window by window (gpunn.data.stats.Moments). ``each(P)``, when given, is called with each
        piece's predictions in row order (gpunn predict --score writes them: one pass over the source). A source made
        with weights (gpunn.data.row_weights) weighs each row's errors by them, scaled to mean 1 over its rows, and
        R²'s denominator by their moments, as a fit's validation weighs them. Call inside ``backend.use()``."""
        from .data.rawpass import overflow_named, raw_windows, weight_scale_of
        from .data.row_weights import WeightedMoments
        from .data.stats import Moments
        from .metrics import evaluate_pieces, window_pieces

        scale = weight_scale_of(source)
        moments = (Moments if scale is None else WeightedMoments)(self.layer_sizes[-1])
        place = [0, 0]  # (the window and row the piece predicted starts at)

        def predicted(Xc):
            with overflow_named(source, *place):
                P = self._predicted(Xc, chunk_rows, members)
            if each is not None:
                each(P)
            return P

        with raw_windows(source, self, scale) as windows:
            pieces = ((Xc, self._raw_target(Yc), *weights) for Xc, Yc, *weights in
                      window_pieces(windows, chunk_rows, moments, place, weighted=scale is not None))
            return evaluate_pieces(self, pieces, lambda: self.xp.asarray(moments.m2), predicted)

    def _predicted_source(self, source, chunk_rows, members=()):
        """``_predicted`` over every row of a data source, in file order, a window at a time; the predictions
        (rows x outputs: small beside the inputs) concatenated. Call inside ``backend.use()``."""
        from .data.rawpass import overflow_named, raw_windows

        parts = []
        with raw_windows(source, self) as windows:
            for w, (Xc, _) in enumerate(windows):
                with overflow_named(source, w):
                    parts.append(self._predicted(Xc, chunk_rows, members))
        if not parts:
            return self.xp.empty((*members, 0, self.layer_sizes[-1]), self._prediction_dtype())
        return self.xp.concatenate(parts, axis=-2)

    def _checked(self, X, Y, x_name="X", y_name="Y"):
        """(X, Y) checked on the device as training takes them: standardized copies for a model with a
        ``standardizer``, else the arrays converted (no copy when they already are)."""
        if self.standardizer is not None:
            return self._standardized(X, Y, x_name, y_name)
        return self._as_input(X, x_name), self._as_target(Y, y_name)


def source_given(X, Y, call) -> bool:
    """Whether ``call`` (``evaluate``, ``score``, ``predict``) got a data source as X: it holds its targets, so Y
    must then be omitted; with arrays, ``evaluate`` and ``score`` need Y (``call`` None: predict, which takes none)."""
    from .data import is_source

    if is_source(X):
        if Y is not None:
            raise TypeError(f"got a data source ({type(X).__name__}) and Y: a source holds its targets; pass it "
                            f"without Y, e.g. {call}(source)")
        return True
    if Y is None and call is not None:
        if isinstance(X, (str, bytes, os.PathLike)):  # evaluate("h.parquet") was told of Y, not how a file is read
            as_array(X)  # (raises, naming the readers of the file: a table's, or numpy.load)
        raise TypeError(f"Y is None: {call}(X, Y) needs the targets Y with arrays X (Y is omitted only for a data "
                        "source from gpunn.data, which holds its targets)")
    return False


class DeviceModel(RawUnits):
    """What MLP and Ensemble share besides raw units: reading X and Y (``_as_input``, ``_as_target``), ``copy.deepcopy`` and ``copy.copy`` (an independent model
    on the same device: ``_twin()``, the parameters, and the ``_COPIED`` attributes, deep-copied; not the
    optimizer of the last fit: a fit of the copy starts a fresh one, as a fit with an optimizer's name does),
    the refusal to pickle, and the repr (``_REPR_HEAD`` its first fields)."""

    params, weights, biases = _Parameters(), _Parameters(), _Parameters()  # set by _build_buffers, then copied into
    _COPIED = ("saved_precision", "standardizer", "data_columns")
    _REPR_NAME, _PICKLE_NAMES = "", ("a model", "model")  # the class, as the refusal calls it and its example
    _REPR_HEAD = ""
    # True while a fit with sample_weight trains it: its batches' Y carry each row's weight as one more column
    # (gpunn.sample_weights; set and cleared by gpunn.training.fit.weighted_rows)
    _sample_weighted = False

    def _weighted_batch(self, Y) -> bool:
        """Whether the batch's ``Y`` carries each row's weight as its last column: a batch of a fit with sample_weight
        (``_sample_weighted``), one column more than the outputs (an Ensemble's bootstrap batch: (K, rows, columns));
        not the Y of a call made during that fit (a callback's ``loss_and_gradients(X, Y)``), the outputs alone."""
        return self._sample_weighted and Y.shape[-1] == self.layer_sizes[-1] + 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keywords_hinted(cls)  # MLP(layer_size=...): did you mean layer_sizes?
        for name in ("predict", "evaluate", "score", "loss"):  # predict(X, verbose=0), Keras's: it takes X alone
            if name in cls.__dict__:
                setattr(cls, name, keywords_checked(cls.__dict__[name], f"{cls.__name__}.{name}"))
        if "predict" in cls.__dict__:  # predict(X, Y), as score takes them: evaluate and score do
            cls.predict = targets_refused(cls.__dict__["predict"], f"{cls.__name__}.predict")

    def __getattr__(self, name):  # (an attribute not found): another library's name is shown gpunn's way
        # Python comes here too where a property's getter raised AttributeError (a bug in it, or one of a subclass's):
        # that error is the one to show, raised again by its getter, not "no attribute" of the property's own name
        found = inspect.getattr_static(type(self), name, None)
        if hasattr(found, "__get__"):
            return found.__get__(self, type(self))
        hint = OTHER_MODEL_ATTRIBUTES.get(name)
        raise missing_attribute(self, name, f" ({hint})" if hint else "")

    def __call__(self, *args, **kwargs):
        """Not a forward pass: a model is not callable (a TypeError); ``model.predict(X)`` gives the outputs."""
        # PyTorch's and Keras's forward pass, model(X): Python's own "'MLP' object is not callable" said not what to call
        raise TypeError(f"{type(self).__name__!r} object is not callable (model(X), PyTorch's and Keras's forward "
                        "pass): model.predict(X) gives the outputs")

    def _as_input(self, X, name="X"):
        """X as the model's input matrix: a DataFrame's columns picked by ``data_columns``, on the device."""
        X = by_feature_names(X, self.data_columns, name)
        return as_matrix(X, name, self.backend, self.dtype, n_columns=self.layer_sizes[0])

    def _as_target(self, Y, name="Y"):
        Y = by_feature_names(Y, self.data_columns, name, "targets")
        return as_matrix(Y, name, self.backend, self.dtype, allow_1d=True, n_columns=self.layer_sizes[-1])

    def __deepcopy__(self, memo):
        """An independent model on the same device: the architecture, seed(s), parameters, precision, graph
        mode, standardization statistics and column names, and an Ensemble's last fit's history and diverged
        members (not the optimizer of the last fit: a fit of the copy starts a fresh one, as a fit with an
        optimizer's name does). ``copy.copy`` gives the same."""
        twin = self._twin()
        with self.backend.use():
            twin.params[...] = self.params
        for name in self._COPIED:
            setattr(twin, name, copy.deepcopy(getattr(self, name), memo))
        return twin

    def __copy__(self):
        return self.__deepcopy__({})

    def __getstate__(self):
        # pickling reached the backend's module and failed with "cannot pickle 'module' object"
        called, name = self._PICKLE_NAMES
        raise TypeError(f"{called} does not pickle (it holds device buffers and kernels): write it with "
                        f"gpunn.save(path, {name}) and read it with gpunn.load(path), or copy it in memory with "
                        f"copy.deepcopy({name}); gpunn.MLPRegressor pickles")

    def __repr__(self):
        acts = [a.name for a in self.activations]
        precision = "" if self.precision == "float32" else f", precision={self.precision!r}"
        return (f"{self._REPR_NAME}({self._REPR_HEAD}layer_sizes={self.layer_sizes}, activations={acts}, "
                f"bias={self.bias}, dtype={self.dtype.name}, device={self.device!r}{precision})")


class MLP(DeviceModel):
    """A fully connected regression network trained on the squared error, f = (1/m)||A - Y||_F^2: the mean squared
    error with one output, the sum of the outputs' with several (k x PyTorch's nn.MSELoss, with k outputs).

    ``layer_sizes`` runs from inputs to outputs, e.g. ``[16, 64, 64, 1]``. Weights start He-normal in a layer whose
    own activation is of the ReLU family, Glorot-normal in the others (the output layer of an identity output too),
    biases at zero, drawn on the host from ``seed``; PyTorch's nn.Linear draws weights and biases uniform in
    +-1/sqrt(n_in), so to start from its weights copy them in (README, "Coming from PyTorch").
    ``activation`` applies to hidden layers (one name, or a list with one per hidden
    layer; a name in any letter case, "ReLU" is relu); ``output_activation`` to the last. With ``bias=False`` and
    ``optimizer="sgd"`` training is exactly W <- W - lr * dW (README, "The math").
    ``fused=False`` runs the GPU's elementwise stages as plain CuPy expressions instead of
    the fused kernels (default: on, or the GPUNN_FUSED_KERNELS environment variable). On the CPU
    the kernels are Numba's: ``fused=True`` (or GPUNN_FUSED_KERNELS on) asks for them, refusing a
    Numba that is not installed, or does not import, where the default runs the NumPy reference (with a warning
    for the latter).
    ``precision`` (GPU only, dtype float32): "float32" (default), "tf32" (matrix products on
    TF32 tensor cores) or "bf16" (bfloat16 activations and products, float32 master weights,
    optimizer state, output layer and loss; see the module docstring for every tensor).
    ``saved_precision``: for a tf32/bf16 model loaded on the CPU (``gpunn.load``), which runs it in
    float32, the precision its file recorded; ``gpunn.save`` writes it back, so a file's round trip
    through a CPU machine keeps it (a GPU loads it in that precision). None otherwise, and after
    ``set_precision``.
    ``graph``: on a CUDA GPU ``fit`` captures each training step -- forward, backward and
    optimizer -- as a CUDA graph and replays it per batch (gpunn.training.graph; one launch instead of
    about two dozen; on an H200, 4.8-11.5x the eager step on deep to small nets, a tie on large). ``None`` (the
    default, "auto"): on where it can capture; elsewhere (the CPU, ``fused=False``, data-parallel
    training, an optimizer without a device-side update) the ordinary step runs, and
    ``model.graph_trainer.reason`` says why. ``True`` forces it (a GraphWarning where it cannot
    capture), ``False`` turns it off.
    """

    def __init__(self, layer_sizes, activation="relu", output_activation="identity", bias=True,
                 dtype="float32", device="auto", seed=None, fused=None, precision="float32", graph=None):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__") or len(layer_sizes) < 2:
            # MLP(6, 16, 1) took 16 for the activation and said only "got 6"; MLP("6,16,1") "got '6,16,1'"
            raise ValueError(f"layer_sizes must list at least an input and an output size, got {layer_sizes!r}: give "
                             "the sizes as one list, input first, e.g. MLP([10, 64, 64, 1])")
        self.layer_sizes = [positive_int(n, f"layer_sizes[{i}]") for i, n in enumerate(layer_sizes)]
        n_hidden = len(self.layer_sizes) - 2
        if isinstance(activation, (list, tuple)):
            if len(activation) != n_hidden:
                raise ValueError(f"activation lists {len(activation)} name{'s' * (len(activation) != 1)} but the net "
                                 f"has {n_hidden} hidden layer{'s' * (n_hidden != 1)}")
            hidden = [get_activation(a) for a in activation]
        else:
            hidden = [get_activation(activation)] * n_hidden
        self.activations: list[Activation] = hidden + [get_activation(output_activation)]
        self.dtype = numpy.dtype(canonical_dtype(dtype))
        self.bias = flag(bias, "bias")
        self.backend = _backend.resolve(device)
        self.xp = self.backend.xp
        self._fused = flag(fused, "fused", allow_none=True)
        self.graph = graph_mode(graph)  # None (auto), True or False
        self.graph_trainer = None  # the last fit's GraphTrainer (.captured, .reason), where one was considered
        self.seed = int(numpy.random.SeedSequence().entropy % 2**63) if seed is None else seed_int(seed)
        self._build_buffers()
        self.set_precision(precision)
        self.init_parameters()
        # Set by training with standardize=True (a gpunn.data.Standardizer): predict() and score()
        # then take raw inputs and predict() returns targets in their original units.
        self.standardizer = None
        self.data_columns = None  # {"features": [...], "targets": [...]} when trained on a named table or DataFrame

    # ---- structure -------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def n_parameters(self) -> int:
        return int(self.params.size)

    @property
    def n_weights(self) -> int:
        return sum(a * b for a, b in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))

    def _views(self, flat):
        weights, biases, offset = ParamList(self.backend, "weights"), ParamList(self.backend, "biases"), 0
        for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            weights.append(flat[offset:offset + n_in * n_out].reshape(n_in, n_out))
            offset += n_in * n_out
            if self.bias:
                biases.append(flat[offset:offset + n_out])
                offset += n_out
        return weights, (biases if self.bias else None)

    def _build_buffers(self):
        total = sum(a * b + (b if self.bias else 0) for a, b in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        with self.backend.use():
            self.params = self.xp.zeros(total, self.dtype)
            self.grads = self.xp.zeros(total, self.dtype)
        self.weights, self.biases = self._views(self.params)
        self._dW, self._db = self._views(self.grads)

    def set_precision(self, precision):
        """Switch how the products and activations compute ("float32", "tf32", "bf16"; see the
        class docstring). The float32 parameters are kept; an optimizer bound earlier must be bound
        again (``fit`` does that)."""
        self.precision = check_precision(precision, self.dtype, self.backend, self._fused)
        self.saved_precision = None  # (a precision chosen here replaces the one a loaded file recorded)
        self.storage_dtype = bf16_dtype() if self.precision == "bf16" else self.dtype
        self.ops = ops_for(self.backend, self._fused, self.precision)
        with self.backend.use():
            # bf16: the parameters rounded for the products, refreshed at each forward pass
            self.params16 = self.xp.empty(self.params.size, self.storage_dtype) if self._bf16 else None
        self._W16, self._b16 = self._views(self.params16) if self._bf16 else (None, None)
        self._workspaces = {}
        # the last fit's graphs baked in the old precision's launches and buffers (params16, freed above): the
        # next fit must capture anew, even with the same optimizer
        self.graph_trainer = None

    @property
    def _bf16(self) -> bool:
        return self.storage_dtype != self.dtype

    def init_parameters(self, seed=None):
        """He-normal weights for the ReLU family, Glorot-normal otherwise; zero biases.

        Drawn on the host from the seed, so the same seed gives the same start on every device.
        """
        rng = numpy.random.default_rng(self.seed if seed is None else seed_int(seed))
        with self.backend.use():  # on cuda:N the weights are drawn into device N's buffer
            for W, act in zip(self.weights, self.activations):
                n_in, n_out = W.shape
                std = numpy.sqrt(2.0 / n_in) if act.init == "he" else numpy.sqrt(2.0 / (n_in + n_out))
                W[...] = self.xp.asarray(rng.standard_normal((n_in, n_out)) * std, dtype=self.dtype)
            if self.bias:
                for b in self.biases:
                    b.fill(0)

    def _workspace(self, rows):
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= 4:  # batch size, last partial batch, a validation size...
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = self._workspaces[rows] = _Workspace(self.xp, rows, self.layer_sizes, self.activations, self.dtype,
                                                     self.storage_dtype)
        return ws

    # ---- the math --------------------------------------------------------------------
    def _forward(self, X, ws):
        A_prev, ops, bf16, last = X, self.ops, self._bf16, len(self.activations) - 1
        if bf16:
            ops.to_storage(self.params, self.params16)
            A_prev = ops.to_storage(X, ws.X16)
        weights, biases = (self._W16, self._b16) if bf16 else (self.weights, self.biases)
        for l, (act, Z, A) in enumerate(zip(self.activations, ws.Z, ws.A)):
            ops.matmul(A_prev, weights[l], out=Z)
            b = (biases[l] if l < last else self.biases[l]) if self.bias else None  # a float32 output layer
            if b is not None or A is not Z or act.name != "identity":
                ops.bias_activation(Z, b, act, A, keep_z=A is not Z)
            A_prev = A
        return A_prev

    def _backward(self, X, Y, ws, sum_sq=None):
        """Fill the flat gradient buffer; return sum((A[L] - Y)^2) as a device scalar (``sum_sq``,
        a preallocated 0-d float64 array, when given). In a fit with sample_weight, Y's last column is each row's
        weight (gpunn.sample_weights), and the sum is of the weighted squares."""
        ops, bf16, activations, Zs, As, dAs = self.ops, self._bf16, self.activations, ws.Z, ws.A, ws.dA
        dW, dbs, weights = self._dW, self._db if self.bias else None, self._W16 if bf16 else self.weights
        if self._weighted_batch(Y):
            Y, row_weights = sample_weights.split(Y, self.layer_sizes[-1])
            sum_sq = ops.loss_gradient(As[-1], Y, dAs[-1], sum_sq, row_weights)
        else:
            sum_sq = ops.loss_gradient(As[-1], Y, dAs[-1], sum_sq)
        L = len(activations)
        for l in range(L - 1, -1, -1):
            act, dZ = activations[l], dAs[l]
            db = None if dbs is None else dbs[l]
            if act.name != "identity":  # dZ = dA * g'(.) and db = colsum(dZ), in one pass where fused
                from_output = not act.needs_input_for_grad
                ops.activation_bias_backward(dZ, act, As[l] if from_output else Zs[l], from_output, dZ, db)
            elif db is not None:
                ops.bias_gradient(dZ, db)
            if bf16 and l == L - 1:  # the output layer's dZ is float32: a bf16 copy for the products
                dZ = ops.to_storage(dZ, ws.dZ16)
            A_prev = As[l - 1] if l else (ws.X16 if bf16 else X)
            ops.matmul(A_prev.T, dZ, out=dW[l])
            if l:
                ops.matmul(dZ, weights[l].T, out=dAs[l - 1])
        return sum_sq

    def train_step(self, X, Y):
        """Forward and backward on a device batch (the Trainable protocol, gpunn.training.protocols):
        gradients land in ``self.grads``; returns sum((A[L] - Y)^2) as a 0-d device array. A small net on the CPU
        runs it as one Numba call with the same bits (gpunn.ops.mlp_step.one_call_gradients)."""
        if self.xp is numpy:
            sum_sq = one_call_gradients(self, X, Y)
            if sum_sq is not None:
                return sum_sq
        ws = self._workspace(X.shape[0])
        self._forward(X, ws)
        return self._backward(X, Y, ws)

    _train_step_gradients = train_step  # the name before the Trainable protocol

    def steps_as_mlp(self) -> bool:
        """Whether this model's class steps as MLP does: its train_step, _forward and _backward are MLP's (not a
        subclass's), what gpunn.ops.mlp_step's one call stands in for."""
        return (type(self).train_step is MLP.train_step and type(self)._forward is MLP._forward
                and type(self)._backward is MLP._backward)

    def train_step_and_update(self, X, Y, optimizer, lr):
        """train_step, then ``optimizer.step(params, grads, lr)``: what the training loop does with no gradient
        hook between the two. A small net with Adam or AdamW on the CPU runs both as one Numba call with the same
        bits (gpunn.ops.mlp_step.one_call_step: ~64 Python calls a step fewer)."""
        if self.xp is numpy:
            sum_sq = one_call_step(self, X, Y, optimizer, lr)
            if sum_sq is not None:
                return sum_sq
        sum_sq = self.train_step(X, Y)
        optimizer.step(self.params, self.grads, lr)
        return sum_sq

    # ---- public API ------------------------------------------------------------------
    def predict(self, X):
        """A[L] for the rows of X, on the model's device (a NumPy array on CPU), in the model's dtype.

        X may be a data source (``gpunn.data``): every row of it (training and held-out chunks), in file order,
        is predicted a window at a time and the predictions returned in one array (rows x outputs: a source of
        40M rows and one float32 output gives 160 MB), equal to ``predict`` of the rows loaded whole. A NumPy
        array of more rows than a chunk (65,536), an ``np.memmap`` among them, is converted to the model's dtype a
        chunk at a time as it is predicted, so memory holds one chunk's conversion, not the whole input's.

        A DataFrame's (pandas' or polars') columns are picked by the model's column names where it has them
        (``data_columns``: a fit on a DataFrame's or a table's named columns), else read in order. Where they are
        read by position though one side has names (a DataFrame of names, or a CSV or Parquet source, to a model
        fitted without them, arrays to one fitted with them) a UserWarning says so, as scikit-learn's does; so do ``score``, ``evaluate``,
        ``loss``, ``loss_and_gradients`` and a fit.

        With a ``standardizer`` (training with standardize=True), X is taken in raw units and the
        predictions are returned in the targets' units: in float64 when those targets were float64
        or int64 for a float32 model, un-standardized in float64 (float32 would hold a prediction
        near 1e9 only to a multiple of 64)."""
        with self.backend.use():
            if source_given(X, None, None):
                return self._predicted_source(X, PREDICT_CHUNK_ROWS)
            with held_warnings():  # (given once X is read: a refused X is not warned of first)
                warn_read_by_position(X, self.data_columns, "X", self)
                return self._predicted(X, PREDICT_CHUNK_ROWS)

    def loss(self, X, Y, sample_weight=None) -> float:
        """f = (1/m) ||A[L] - Y||_F^2 as a Python float. With a ``standardizer``, X and Y are in raw units
        and so is the error (that of ``predict``, in the targets' units, as ``evaluate``'s; training's loss is
        in standardized units: see :meth:`loss_and_gradients`). ``sample_weight``: the weighted loss a fit with
        those weights minimizes, f = sum_i w_i ||a_i - y_i||^2 / sum_i w_i (``evaluate``'s weighted loss)."""
        with self.backend.use(), held_warnings():
            Y = self._raw_target(Y)
            A = self.predict(X)
            check_rows_match(A, Y)
            if sample_weight is not None:
                return float(weighted_row_errors(self.xp, A, Y, sample_weight)) / A.shape[0]
            return float(self.ops.squared_error(A, Y)) / A.shape[0]

    def loss_and_gradients(self, X, Y, sample_weight=None):
        """(loss, dW, db) by the backward equations of README's "The math" over all rows of X; db is None without bias.

        With a ``standardizer``, X and Y are taken in raw units and standardized first: the loss and
        gradients are those training follows (standardized units), while ``loss`` is the mean squared
        error of ``predict`` in the targets' units. ``sample_weight``: the weighted loss's and its gradients, those
        a full-batch fit with these weights steps by (dA[L] = (2/m) w'_i (a_i - y_i), w' the weights scaled to mean
        1: README's "The math")."""
        with self.backend.use():
            sum_sq, rows, dW, db = gradients_over(self, X, Y, sample_weight)
            return float(sum_sq) / rows, dW, db

    def score(self, X, Y=None, sample_weight=None) -> float:
        """R² of the predictions on (X, Y), averaged over outputs (scikit-learn's definition); raises as
        ``evaluate`` does where the predictions are NaN or infinite. ``score(source)``: on every row of a data
        source, streamed (see ``evaluate``).

        An output whose targets are all the same value has no R² (its variance, the denominator, is 0): it counts
        as 0, or 1 where predicted exactly, scikit-learn's r2_score convention (``force_finite=True``), so the
        score of constant targets is 0 however close the predictions; judge those by ``evaluate``'s mse. Under 2
        rows R² is NaN, with an UndefinedMetricWarning, as scikit-learn's. ``sample_weight``: see ``evaluate``."""
        source_given(X, Y, "score")  # (its own name in the error)
        return self.evaluate(X, Y, sample_weight=sample_weight)["r2"]

    def evaluate(self, X, Y=None, sample_weight=None) -> dict:
        """{"loss", "mse", "mae", "r2"} of ``predict(X)`` against Y, in one pass and one host read: the metrics
        validation logs each epoch. ``loss`` is the training loss's f = (1/m)||A - Y||_F^2 (with k outputs, k x
        ``mse``); ``mse`` and ``mae`` are means over every value; ``r2`` is averaged over outputs.

        They are in Y's units, as ``predict`` and ``loss`` are: ``evaluate(X, Y)["loss"]`` is ``loss(X, Y)``.
        For a model with a ``standardizer`` (fit on a source made with standardize=True) that is not the
        units its history's ``loss`` and ``val_*`` are in: training's, the standardized targets' (the
        ``val_r2`` of the same rows agrees). Without one, on the validation rows, these are the ``val_loss``,
        ``val_mse``, ``val_mae`` and ``val_r2`` its history logged for the weights it holds (the last epoch's, or the
        best epoch's where EarlyStopping(restore_best_weights=True) restored them): exactly where validation predicted
        the rows in the pieces evaluate predicts them in (validation_data or validation_fraction of arrays: both in
        pieces of up to 65,536 rows); a source's held-out chunks are predicted a window at a time, so where they
        span more than one window, evaluate's products are of other shapes, blocked otherwise by the BLAS: a float32
        model's values then differ by its rounding (~1e-9 relative, 2,400 rows in 200-row chunks on a CPU), a
        float64 model's by float64's.

        Where they are not finite (``predict(X)`` NaN or infinite on some rows), there is no score, as for
        scikit-learn's metrics ("Input contains NaN"), and the error says where, as a fit's validation does:
        TrainingDiverged where the weights are NaN or infinite, else ValidationNotFinite naming the count and the
        first row and column of ``predict(X)`` that are not finite (``loss`` returns the NaN or infinity).

        ``evaluate(source)`` (Y omitted: a data source from ``gpunn.data`` holds its targets) gives the same
        metrics over EVERY row of the source, its training and held-out chunks alike (a test set is a source of
        its own; the held-out split is the training's: fit's validation scores those), streamed a window at a
        time, so memory stays bounded by one window whatever the rows. The rows are read raw and the model's
        ``standardizer``, if any, applied as ``predict`` applies it: the source's own ``standardize`` is left off
        for the pass (its statistics are not the ones the model learned with). The result is
        ``evaluate(X, Y)`` of the same rows loaded whole (float64 to rounding; R²'s denominator is merged window by
        window). Where it is not finite, the error says no row (the source is not read again). A ``data.iterable``
        source is read in one more pass over its pieces (a one-shot iterator's only one: refused once read); a
        ShardedSource owning every shard is the source it wraps, and a rank's share of one is refused
        (gpunn.data.rawpass).

        ``sample_weight`` (arrays: one weight a row, 0 or more) weighs each row's errors: the loss, mse and mae are
        weighted means, and r2 is scikit-learn's r2_score(sample_weight=...), the fit's validation metrics with the
        same weights (gpunn.sample_weights)."""
        with self.backend.use():
            logs, on_source = self._evaluate_logs(X, Y, sample_weight, PREDICT_CHUNK_ROWS)
        return self._scored(logs, None if on_source else X)

    def _scored(self, logs, X) -> dict:
        """``evaluate``'s metrics of its ``logs`` over X (None: a data source's), or its error where they are not
        finite (``unscored``)."""
        from .metrics import unscored

        on_source = X is None
        with self.backend.use():
            bad = unscored(self, logs, X, PREDICT_CHUNK_ROWS)
        if bad:
            from .training.loop import TrainingDiverged, ValidationNotFinite

            (finite, why), = bad.values()
            said = ", ".join(f"{name.removeprefix('val_')} {value}" for name, value in logs.items())
            on = "the source" if on_source else "(X, Y)"
            if not finite:
                raise TrainingDiverged(f"the model has no score on {on} ({said}): {why} (it diverged in training); "
                                       "fit it again with a lower learning rate, or standardize the targets and inputs")
            raise ValidationNotFinite(f"the model has no score on {on} ({said}): {why}")
        return {name.removeprefix("val_"): value for name, value in logs.items()}

    fit = as_method(_fit, "MLP.fit", "model.fit(X, Y, ...) trains on (X, Y), or on a data source (``gpunn.data``) "
                                     "passed alone as X, and returns the history. It is gpunn.fit(model, X, Y, ...), "
                                     "told below, ``model`` being this MLP.",
                    other_fits={"Ensemble": fit_ensemble}, made_with=__init__)

    _REPR_NAME, _PICKLE_NAMES = "MLP", ("an MLP", "model")

    def _twin(self):
        """A new MLP like this one (see DeviceModel.__deepcopy__); its parameters are copied after."""
        return MLP(self.layer_sizes, [a.name for a in self.activations[:-1]], self.activations[-1].name, self.bias,
                   self.dtype, self.backend, self.seed, self._fused, self.precision, self.graph)


# gpunn.fit: the function MLP.fit calls, refusing an Ensemble's fit option as MLP.fit does (bootstrap)
fit = as_function(_fit, other_fits={"Ensemble": fit_ensemble})


def weighted_row_errors(xp, A, Y, sample_weight):
    """sum_i w'_i ||a_i - y_i||^2 on the device, w' the checked ``sample_weight`` scaled to mean 1 over A's rows
    (gpunn.sample_weights): (K,) for an Ensemble's predictions A (K, m, n)."""
    weights = sample_weights.checked_weights(sample_weight, A.shape[-2])
    scaled = xp.asarray(sample_weights.mean_one(weights, "these rows"))
    return ((A - Y) ** 2).sum(axis=-1) @ scaled


def gradients_over(model, X, Y, sample_weight=None):
    """(device sum of squared errors, rows, copies of dW, copies of db or None) of one backward pass over
    all rows of X: what MLP.loss_and_gradients and Ensemble.loss_and_gradients share (they differ in
    how the sum becomes a loss); with ``sample_weight``, the weighted sum and its gradients, as a weighted fit's
    batch of every row (Y carrying the scaled weights: gpunn.sample_weights). Call inside ``model.backend.use()``."""
    given = X
    X, Y = model._checked(X, Y)  # raw units in, as for fit and predict
    check_rows_match(X, Y)
    warn_read_by_position(given, model.data_columns, "X", model)
    rows = X.shape[0]
    weights = sample_weights.checked_weights(sample_weight, rows)
    if weights is not None:
        refuse_weights_where_unweighted(model, X, Y)  # (a subclass's own step)
        Y = sample_weights.with_weights(model.xp, Y, sample_weights.mean_one(weights, "these rows"))
    kept = rows in model._workspaces  # (a training batch's size)
    with inference_threads(model, rows), weighted_rows(model, weights is not None):  # (a fit's gradients' bits)
        sum_sq = model.train_step(X, Y)
    dW = [g.copy() for g in model._dW]
    db = [g.copy() for g in model._db] if model.bias else None
    if not kept:  # a workspace for every row at once is not kept in the model's cache after the call
        del model._workspaces[rows]
    return sum_sq, rows, dW, db
