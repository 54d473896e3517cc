"""``gpunn.MLPRegressor``: a scikit-learn estimator around :class:`gpunn.MLP`.

It follows scikit-learn's conventions: the constructor only stores its arguments;
``fit``/``partial_fit`` set the learned attributes, all ending in ``_``; ``predict`` returns
host NumPy float64 arrays, 1-D for one output (a ``y`` of shape (n,) or (n, 1), which warns with scikit-learn's
DataConversionWarning, as scikit-learn's does). It works in Pipeline,
GridSearchCV and cross_val_score. scikit-learn is optional: without it the class still
works as a plain estimator (get_params/set_params/fit/predict/score are provided here).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings

import numpy

from .backend import DeviceError, resolve, user_stacklevel
from .checks import feature_names, flag, got, seed_int, validation_share, verbosity
from .hints import bracketed_hint, keyword_hint, keywords_checked, keywords_hinted, unexpected_estimator_keyword
from .optim import MOMENTUM_OF_ONE, make_optimizer, make_schedule
from .training.callbacks import Callback, EarlyStopping, History
from .sample_weights import checked_weights, training_targets
from .training.fit import held_out_count, held_out_rows, is_weighted, scikit_learn_split, weighted_rows
from .training.loop import train
from .training.sources import ArraySource
from .training.state import FitSettings, TrainState

try:  # optional dependency
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.validation import check_is_fitted, check_random_state, column_or_1d, validate_data

    HAVE_SKLEARN = True
except ImportError:  # a minimal stand-in with the same conventions
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """scikit-learn's: training reached max_iter before its stopping rule stopped it."""

    class DataConversionWarning(UserWarning):
        """scikit-learn's: y was given as a column (n, 1) where a 1-D array was expected."""

    def column_or_1d(y, *, warn=False):  # scikit-learn's, for the one (n, 1) y its MLPRegressor ravels
        if warn:
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                          "to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=2)
        return numpy.ravel(y)

    class BaseEstimator:
        @classmethod
        def _get_param_names(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            return sorted(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid: {valid}")
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class RegressorMixin:
        def score(self, X, y, sample_weight=None):
            from .metrics import r2
            from .sample_weights import checked_weights, mean_one

            y = numpy.asarray(y, dtype=numpy.float64)
            P = self.predict(X).reshape(y.shape[0], -1)
            for values in (y, P):  # scikit-learn's r2_score refuses them, in these words (a diverged model's NaN)
                if numpy.isnan(values).any():
                    raise ValueError("Input contains NaN.")
                if not numpy.isfinite(values).all():
                    raise ValueError("Input contains infinity or a value too large for dtype('float64').")
            weights = checked_weights(sample_weight, y.shape[0], counted="the score")
            if weights is not None:  # R² is the same for weights times any factor: mean 1 cannot overflow its sums
                weights = mean_one(weights, "the rows scored")
            return r2(numpy, P, y.reshape(y.shape[0], -1), weights)

    class NotFittedError(ValueError, AttributeError):
        pass

    def check_is_fitted(estimator):
        if not hasattr(estimator, "model_"):
            raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet; call fit first.")

    def check_random_state(seed):
        if seed is None:
            return numpy.random.mtrand._rand
        if isinstance(seed, numbers.Integral):
            return numpy.random.RandomState(seed)
        if isinstance(seed, numpy.random.RandomState):
            return seed
        raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")  # scikit-learn's words

    def _check_feature_names(estimator, X, reset):
        """scikit-learn's (sklearn.utils.validation), its words: a fit on a DataFrame of string column names keeps
        them in ``feature_names_in_`` (a fit on arrays drops them); predict warns where X has names and the fit had
        none, or the reverse (its columns are then read in order), and refuses other names, or the same in another
        order."""
        names = feature_names(X)
        if reset:
            if names is not None:
                estimator.feature_names_in_ = numpy.asarray(names, dtype=object)
            elif hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
            return
        fitted = getattr(estimator, "feature_names_in_", None)
        cls = type(estimator).__name__
        if names is not None and fitted is None:
            warnings.warn(f"X has feature names, but {cls} was fitted without feature names",
                          stacklevel=user_stacklevel())
        elif names is None and fitted is not None:
            warnings.warn(f"X does not have valid feature names, but {cls} was fitted with feature names",
                          stacklevel=user_stacklevel())
        elif names is not None and names != list(fitted):
            raise ValueError(f"The feature names should match those that were passed during fit: "
                             f"{', '.join(fitted)}; X has {', '.join(names)}")

    def validate_data(estimator, X, y="no_validation", reset=True, **_):
        _check_feature_names(estimator, X, reset)
        X = numpy.asarray(X, dtype=numpy.float64)
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got shape {X.shape}")
        if not numpy.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity")
        if reset:
            estimator.n_features_in_ = X.shape[1]
        elif X.shape[1] != estimator.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                             f"{estimator.n_features_in_} features as input")
        if isinstance(y, str) and y == "no_validation":
            return X
        if y is None:
            raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None")
        y = numpy.asarray(y, dtype=numpy.float64)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        return X, y


SOLVERS = ("adam", "sgd", "adamw")  # scikit-learn's mini-batch solvers, and AdamW
LEARNING_RATES = ("constant", "invscaling", "adaptive")
SKLEARN_ACTIVATIONS = {"logistic": "sigmoid"}  # scikit-learn's name -> gpunn's
SEED_MAX = 2**32 - 1  # the largest random_state


# scikit-learn's ranges of the real-valued parameters (its _parameter_constraints): (low, high, "[)": the ends
# that are in the range)
REAL_RANGES = {"alpha": (0, math.inf, "[)"), "tol": (0, math.inf, "[)"), "power_t": (0, math.inf, "[)"),
               "learning_rate_init": (0, math.inf, "()"), "epsilon": (0, math.inf, "()"), "momentum": (0, 1, "[]"),
               "beta_1": (0, 1, "[)"), "beta_2": (0, 1, "[)"), "validation_fraction": (0, 1, "[)")}


def _check_real(name, value, low, high, ends) -> None:
    inside = ((value >= low if ends[0] == "[" else value > low) and (value <= high if ends[1] == "]" else value < high)
              if isinstance(value, numbers.Real) and not isinstance(value, bool) else False)
    if not inside:  # (NaN is in no range)
        what = (("a non-negative number" if ends[0] == "[" else "a positive number") if high == math.inf
                else f"a number in {ends[0]}{low}, {high}{ends[1]}")
        raise ValueError(f"{name} must be {what}, {got(value)}")


def sklearn_loss(loss, n_outputs):
    """scikit-learn's squared-error loss, half the mean squared error over every value, from gpunn's
    (1/m)||A - Y||², which sums the k outputs' squared errors per row: loss / (2k)."""
    return loss / (2 * n_outputs)


@contextlib.contextmanager
def _put_back_on_failure(model):
    """A KeyboardInterrupt, or any other failure (TrainingDiverged), in a fit that trains the fitted network ``model``
    in place (a warm start; partial_fit after the first; None: a fresh network, dropped) puts back its weights, its
    optimizer and that optimizer's moments and step count, in place (a captured CUDA graph keeps its buffers),
    before it goes on up. ``model_`` was left part-trained (a diverged one with inf weights) beside the earlier
    fit's ``coefs_``, ``n_iter_`` and ``loss_curve_``, and predict used it."""
    if model is None:
        yield
        return
    params, optimizer = model.params.copy(), getattr(model, "optimizer", None)
    moments = {} if optimizer is None else {key: value.copy() for key, value in optimizer.state.items()}
    steps = getattr(optimizer, "steps", 0)
    try:
        yield
    except BaseException:  # a Ctrl-C, a divergence (inf weights), any failure: the call leaves what it found
        model.params[...] = params
        model.optimizer = optimizer
        if optimizer is not None:
            for key in list(optimizer.state):
                if key in moments and optimizer.state[key].shape == moments[key].shape:
                    optimizer.state[key][...] = moments[key]
                else:  # made by this call: the optimizer had none
                    del optimizer.state[key]
            optimizer.state.update({key: value for key, value in moments.items() if key not in optimizer.state})
            optimizer.steps = steps
        raise


class _NoImprovement(Callback):
    """scikit-learn's rule for ``tol`` and ``n_iter_no_change`` (its MLP's _update_no_improvement_count), on
    its scale: the validation R² (``validation``, for early_stopping), else the epoch's training loss as
    scikit-learn computes it (``sklearn_loss``; without its L2 term, alpha/2 ||W||² / batch rows). An epoch
    that does not beat the best value by more than ``tol`` counts, one that does resets the count, and the
    best value follows every improvement however small (EarlyStopping's best moves only by min_delta).
    When the count exceeds ``n_iter_no_change`` training stops, or, with ``adaptive_rate`` (sgd with
    learning_rate="adaptive": the initial rate), the rate is divided by 5 and the count restarts, unless
    scikit-learn's rate (the initial one times the reductions so far) is already at most 1e-6.

    ``carried``: the (count, best, lr_scale) an earlier fit of the same estimator left (``state()``), for
    a warm start or partial_fit: scikit-learn's _no_improvement_count, best_loss_ and
    best_validation_score_ go on across its fits until a fit without warm_start starts anew, so a warm
    start after a fit that stopped stops after one epoch unless that epoch beats the best by more than
    ``tol``. ``partial`` (partial_fit's one epoch): the count and the adaptive rate go on as in a fit (a
    rate divided by 5 stays so for the next partial_fit calls, whose optimizer scikit-learn keeps; a fit
    starts from learning_rate_init), but nothing stops.

    ``verbose``: print scikit-learn's lines as its MLP does, on stdout ("Iteration 3, loss = 0.01234567" on
    ``loss_curve_``'s scale, numbered from 1 in each call as ``n_iter_`` counts them, partial_fit's and a warm start's
    too, as scikit-learn 1.9 numbers them; "Validation score: 0.912345"; the stop or
    the rate divided by 5), in place of gpunn's progress bar."""

    def __init__(self, validation, n_outputs, tol, n_iter_no_change, adaptive_rate=None, carried=None,
                 partial=False, verbose=False, in_place=False):
        self.validation, self.n_outputs, self.tol = validation, n_outputs, tol
        self.n_iter_no_change, self.adaptive_rate, self.partial = n_iter_no_change, adaptive_rate, partial
        self.in_place = in_place  # the fitted network trains on (a warm start, partial_fit after the first)
        self.count, self.best, self.lr_scale = carried or (0, -math.inf if validation else math.inf, 1.0)
        self.verbose, self.iterations = verbose, 0  # (this call's epochs)

    def state(self):
        """What a later warm start or partial_fit carries on from: (validation, count, best, lr_scale)."""
        return self.validation, self.count, self.best, self.lr_scale

    def on_epoch_end(self, trainer, epoch, logs):
        loss = sklearn_loss(float(logs["loss"]), self.n_outputs)
        self.iterations += 1
        self._say(f"Iteration {self.iterations}, loss = {loss:.8f}")
        if self.validation:
            value = float(logs["val_r2"])
            self._say(f"Validation score: {value:f}")
            stalled, better = value < self.best + self.tol, value > self.best
        else:
            value = loss
            stalled, better = value > self.best - self.tol, value < self.best
        self.count = self.count + 1 if stalled else 0
        if better:
            self.best = value
        if self.count > self.n_iter_no_change:
            said = (f"{'Validation score' if self.validation else 'Training loss'} did not improve more than "
                    f"tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs.")
            if self.adaptive_rate is not None and self.adaptive_rate * trainer.lr_scale > 1e-6:
                trainer.lr_scale *= 0.2
                self.count = 0
                self._say(f"{said} Setting learning rate to {self.adaptive_rate * trainer.lr_scale:f}")
            elif not self.partial:  # partial_fit trains its one epoch whatever the count, as scikit-learn's
                trainer.stop = True
                trainer.history.stopped_early = True
                self._say(f"{said}{' Learning rate too small.' if self.adaptive_rate is not None else ''} Stopping.")
        self.lr_scale = trainer.lr_scale

    def on_train_end(self, trainer):
        """With verbose, a KeyboardInterrupt (Ctrl-C: the estimator's fits do not catch it) says where it landed
        and what the estimator holds, before it goes on up."""
        if not isinstance(trainer.failure, KeyboardInterrupt):
            return
        where = f"Training interrupted by KeyboardInterrupt in iteration {self.iterations + 1}"
        if self.in_place:  # a warm start's or partial_fit's: the fitted network trained in place, put back
            self._say(f"{where}: the estimator is as before this call (its network's weights and optimizer are put "
                      "back)")
        else:
            self._say(f"{where}: this fit's network is dropped; the estimator holds its earlier fit, if any")

    def _say(self, line):
        if self.verbose:
            print(line, flush=True)


@keywords_hinted  # MLPRegressor(lr=1e-3), gpunn's and Keras's name: did you mean learning_rate_init?
class MLPRegressor(RegressorMixin, BaseEstimator):
    """A multilayer-perceptron regressor trained with gpunn on the GPU (CuPy) or the CPU.

    A drop-in for ``sklearn.neural_network.MLPRegressor``: the same parameter names and defaults,
    mapped onto gpunn where they have a meaning, refused by name where they do not.

    - ``hidden_layer_sizes``, ``activation`` ("identity", "logistic" (= sigmoid), "tanh", "relu",
      and gpunn's others: gelu, silu, elu, softplus, leaky_relu; in any letter case, as MLP's), ``max_iter`` (epochs),
      ``batch_size`` ("auto" = min(200, rows)), ``shuffle``, ``random_state``, ``validation_fraction``: as in
      scikit-learn; ``verbose``: scikit-learn's lines on stdout ("Iteration 1, loss = 0.12345678", on
      ``loss_curve_``'s scale; "Validation score: ..." with early stopping; the stop), not gpunn's progress bar.
    - ``solver``: "adam" (``beta_1``, ``beta_2``, ``epsilon``) or "sgd" (``momentum``,
      ``nesterovs_momentum``); gpunn adds "adamw". "lbfgs" is refused. Every parameter is checked at fit
      against scikit-learn's range whatever the solver, as scikit-learn checks them (``beta_1`` under sgd,
      ``momentum`` in [0, 1] under adam, ``power_t`` and ``max_fun``, which gpunn does not use); sgd's
      ``momentum=1``, which scikit-learn takes, is refused at fit (it must be < 1: at 1 the velocity never decays,
      and the weights never settle).
    - ``learning_rate_init``: the step size on scikit-learn's loss, half the mean squared error
      (so gpunn's sgd gets half of it: its loss is the full MSE; Adam does not depend on the scale).
    - ``alpha``: the L2 penalty, as scikit-learn adds it to the gradient (alpha·W / batch rows):
      gpunn's coupled weight decay of 2·alpha / batch_size. Unlike scikit-learn it also decays biases.
    - ``tol``, ``n_iter_no_change``, ``early_stopping``: training stops once the training loss
      (scikit-learn's: half the mean squared error) or, with early_stopping, the validation R² on
      ``validation_fraction`` of the rows (ceil(validation_fraction x rows), as scikit-learn's train_test_split
      holds out; gpunn.fit rounds) has not beaten its best by more than ``tol`` for more than
      ``n_iter_no_change`` epochs (``numpy.inf``: never), by scikit-learn's rule (so after the same epochs for the same values);
      with early_stopping the best epoch's weights are kept (a warm fit in which no epoch beats an earlier
      early-stopping fit's best keeps that fit's weights, ``history_.best`` and ``history_.best_epoch``, which
      counts in the fit that found it; scikit-learn ends that warm fit on its last epoch). ``learning_rate="adaptive"`` (sgd) divides
      the rate by 5 on that plateau instead, and stops there once the rate is at most 1e-6, as
      scikit-learn does; "invscaling" is refused (gpunn has no lr / t ** power_t);
      for adam, learning_rate and power_t are ignored, as in scikit-learn. As scikit-learn's, the count
      and the best value go on across a warm start and ``partial_fit`` calls (a warm start after a fit
      that stopped trains one epoch unless it beats the best by more than ``tol``), and partial_fit
      counts too: its adaptive rate is divided by 5 for the calls after a plateau (a fit starts again
      from ``learning_rate_init``); a fit without warm_start starts the count anew.
    - ``warm_start``: fit continues from the fitted weights (with a fresh optimizer, as scikit-learn). It
      and ``partial_fit`` refuse parameters or data that describe another network (hidden_layer_sizes,
      activation, output_activation, dtype, the feature or output count), with what to do instead.
    - ``sample_weight`` (fit, partial_fit, score; scikit-learn's since 1.7): each batch's gradient is divided by
      its rows with the weights scaled to mean 1 over the training rows, where scikit-learn divides it by the
      batch's weights' sum (the same full-batch; see ``fit``). fit and partial_fit take the data and the weights
      alone, as scikit-learn's, and a parameter given to them (Keras's ``fit(X, y, epochs=10)``) is refused
      naming the estimator's (``est.set_params(max_iter=...)``).
    - ``loss``: "squared_error" only; ``max_fun``: only used by lbfgs (ignored).
    - gpunn's own: ``output_activation``, ``dtype`` (any spelling of float32/float64), ``device``
      ("auto", "cpu", "cuda", "cuda:N").
    - The weights start as gpunn.MLP's (He-normal for the ReLU family, Glorot-normal otherwise), not as
      scikit-learn's (uniform Glorot), so the same settings can end at another score, either side of it
      (make_friedman1, 1,000 rows, a 750/250 split, 64 units, 200 epochs, seeds 0 and 1: test R² 0.77 and
      0.77 against 0.74 and 0.78). From scikit-learn's initial weights, gpunn's Adam ends at its training
      loss (0.1%).

    Fitted attributes: ``model_`` (the gpunn.MLP), ``history_`` (gpunn's history: its ``loss`` is
    gpunn's, 2 x outputs x ``loss_curve_``), ``loss_curve_`` (each epoch's training loss on
    scikit-learn's scale, half the mean squared error over every value, averaged over the epoch's
    batches before each step, without scikit-learn's L2 term), ``loss_`` (its last value),
    ``best_loss_`` (its least, without early stopping), ``validation_scores_`` and
    ``best_validation_score_`` (validation R², with early stopping; None without it, as scikit-learn's),
    ``n_iter_`` (the epochs of the last call, as scikit-learn's: 1 after ``partial_fit``; ``loss_curve_`` holds
    every epoch, warm starts and ``partial_fit`` calls included), ``t_`` (the training samples seen by every call,
    as scikit-learn's: the rows early stopping holds out not counted), ``coefs_``, ``intercepts_`` (host copies of
    the network's weights; edited, in place or replaced, they are copied into it when predict, a warm fit,
    partial_fit or pickling next uses it, as scikit-learn's are its weights; the other way, the network's weights
    edited through ``model_`` are what predict uses, and show in ``coefs_`` only after the next fit, as the copies
    are made by a fit, not read from the device at each access), ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, ``n_features_in_``. A fit that trains ``max_iter`` epochs without stopping
    warns with scikit-learn's ConvergenceWarning, as scikit-learn does.

    Pickling (joblib) carries host arrays. One made with ``device="cuda"`` unpickles where no GPU is
    usable without its network (``coefs_`` and the rest are there); using it raises DeviceError until a
    device that is usable here is chosen: ``est.set_params(device="cpu")``, as ``gpunn.load(path,
    device=...)`` chooses a saved model's. A device set after a fit (with ``device="auto"``, also a GPUNN_DEVICE
    changed since: "auto" is read anew at each call) is where predict, a warm start and partial_fit go on: the
    network moves there, with its optimizer's state.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error", solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, output_activation="identity",
                 dtype="float32", device="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.output_activation = output_activation
        self.dtype = dtype
        self.device = device

    # ---- scikit-learn plumbing -------------------------------------------------------
    def set_params(self, **params):
        """scikit-learn's, whose refusal of a parameter the estimator does not take now names the one meant: a
        Pipeline's or a grid's ``mlpregressor__lr`` (gpunn.MLP's name) listed the valid names alone."""
        try:
            return super().set_params(**params)
        except ValueError as exc:
            names = self._get_param_names()
            refused = next((key.partition("__")[0] for key in params if key.partition("__")[0] not in names), None)
            hint = keyword_hint(refused, names) if refused else ""  # (the first, which scikit-learn's names)
            if not hint:
                raise
            raise ValueError(f"{exc}{hint}") from None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _validate(self, X, y=None, reset=True):
        kwargs = dict(reset=reset, dtype=[numpy.float64, numpy.float32])
        try:
            if y is None and not reset:
                return validate_data(self, X, **kwargs), None
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, **kwargs)
        except TypeError as exc:  # scikit-learn's "Sparse data was passed for X ... Use '.toarray()'", which a
            # Pipeline's user cannot call: the step before gives sparse output
            if not hasattr(X, "toarray"):
                raise
            raise TypeError(f"{exc} In a Pipeline, make the step before it give dense output: "
                            "OneHotEncoder(sparse_output=False), or ColumnTransformer(..., sparse_threshold=0); "
                            "gpunn trains on dense arrays.") from None
        except ValueError as exc:  # scikit-learn's "X has 200 features, but ... is expecting 10": rows of the fitted
            # width are X's rows and columns swapped, which gpunn.MLP's refusal says and scikit-learn's did not
            shape = getattr(X, "shape", ())
            if reset or len(shape) != 2 or shape[0] != getattr(self, "n_features_in_", None) or shape[1] == shape[0]:
                raise
            raise ValueError(f"{str(exc).rstrip('.')}; its shape {tuple(shape)} looks transposed (rows are examples): "
                             "pass X.T") from None
        if y.ndim == 2 and y.shape[1] == 1:  # scikit-learn's MLPRegressor warns so for a column, and ravels it
            y = column_or_1d(y, warn=True)
        return X, y

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if not numpy.iterable(sizes):  # one layer's size (4, numpy.int64(4)), or something refused below
            sizes = (sizes,)
        sizes = list(sizes)
        # True is an int to Python: refused as everywhere else (scikit-learn raises "an integer is required")
        if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _seed(self):
        if isinstance(self.random_state, (bool, numpy.bool_)):  # scikit-learn seeds with it (an int to Python), a
            # slip most often (True for "random"); gpunn's seeds refuse a bool everywhere
            value = bool(self.random_state)
            raise ValueError(f"random_state={value} is a bool, not a seed (scikit-learn takes it for {int(value)}): "
                             f"give an int, random_state={int(value)}, or None for a seed drawn at each fit")
        if isinstance(self.random_state, numbers.Integral):
            seed = seed_int(self.random_state, "random_state")
            if seed > SEED_MAX:  # scikit-learn's range (a RandomState's seeds); gpunn.MLP's seed takes larger ones
                raise ValueError(f"random_state must be an int in [0, 2**32 - 1] (at most {SEED_MAX}, as "
                                 f"scikit-learn's), a numpy.random.RandomState or None, got {seed}")
            return seed
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _check_params(self):
        """Refuse, by name, what gpunn cannot do; return the gpunn activation name."""
        if self.loss != "squared_error":
            raise ValueError(f"loss={self.loss!r} is not available in gpunn: it trains on the squared error only "
                             "(loss='squared_error')")
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not available in gpunn (a full-batch quasi-Newton method); "
                             f"use one of {SOLVERS}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}"
                             f"{bracketed_hint(self.solver, SOLVERS, 'solver')}")
        if isinstance(self.learning_rate, numbers.Real) and not isinstance(self.learning_rate, (bool, numpy.bool_)):
            # Keras's learning_rate=1e-3 is the rate; scikit-learn's names how the rate changes
            raise ValueError(f"learning_rate must be one of {LEARNING_RATES}, got {self.learning_rate!r}: it names how "
                             "the rate changes; the rate itself is learning_rate_init "
                             f"(learning_rate_init={self.learning_rate}), as in scikit-learn")
        if self.learning_rate not in LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {LEARNING_RATES}, got {self.learning_rate!r}"
                             f"{bracketed_hint(self.learning_rate, LEARNING_RATES, 'learning_rate')}")
        if self.learning_rate == "invscaling" and self.solver == "sgd":
            raise ValueError("learning_rate='invscaling' is not available in gpunn (none of its schedules divides the "
                             "rate by t ** power_t: gpunn.MLP's fit takes schedule= step, exponential, cosine or "
                             "onecycle, and warmup_steps); use 'constant' or 'adaptive'")
        # every one whatever the solver, as scikit-learn checks them at fit: sgd's momentum was read by its truth
        # first (momentum="" or None trained plain SGD without a word), and sgd took any beta_1 or beta_2
        for name, (low, high, ends) in REAL_RANGES.items():
            _check_real(name, getattr(self, name), low, high, ends)
        if self.solver == "sgd" and self.momentum == 1:  # (scikit-learn's range takes 1; gpunn's SGD does not)
            raise ValueError(f"momentum must be in [0, 1) for solver='sgd' in gpunn, got {self.momentum!r}: "
                             f"{MOMENTUM_OF_ONE} (scikit-learn takes 1); give 0.9, the default, or another value "
                             "below 1")
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            value = getattr(self, name)
            if name == "n_iter_no_change" and value == math.inf:  # scikit-learn's "never stop on it"
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                endless = " or numpy.inf" if name == "n_iter_no_change" else ""
                raise ValueError(f"{name} must be a positive integer{endless}, {got(value, 'an integer')}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):  # bool("no") is True
            flag(getattr(self, name), name)
        verbosity(self.verbose)
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("early_stopping needs a validation_fraction in (0, 1) to hold out, got 0")
        # in any letter case, as every activation name ("ReLU" is relu): scikit-learn's "Logistic" too
        name = self.activation.lower() if isinstance(self.activation, str) else self.activation
        return SKLEARN_ACTIVATIONS.get(name, self.activation)

    def _batch_size(self, rows):
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            return min(200, rows)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        return min(int(self.batch_size), rows)

    def _optimizer(self, batch_size, weights=None):
        """(gpunn optimizer name, make_optimizer keyword arguments) for the scikit-learn settings. ``weights`` (host
        float64, one a training row: ``_training_weights``): alpha is divided by the batch's weight sum, as
        scikit-learn's, where the training rows' mean weight stands for each row's (a full batch: its sum exactly, so
        weights w and the rows repeated w times train alike)."""
        per_row = 1.0 if weights is None else float(weights.mean())
        decay = 2.0 * self.alpha / (batch_size * per_row) or None  # scikit-learn's alpha·W/n on the half-MSE gradient
        if self.solver == "sgd":
            name = ("nesterov" if self.nesterovs_momentum else "momentum") if self.momentum else "sgd"
            return name, dict(lr=self.learning_rate_init / 2, momentum=self.momentum or None, weight_decay=decay)
        return self.solver, dict(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                                 weight_decay=decay)

    def _new_model(self, n_features, n_outputs, seed, activation):
        from .model import MLP

        return MLP([n_features, *self._hidden(), n_outputs], activation=activation,
                   output_activation=self.output_activation, dtype=self.dtype, device=self.device, seed=seed)

    def _training_weights(self, sample_weight, rows):
        """fit's ``sample_weight`` (checked) of the rows it trains on: with early_stopping, not those its split
        holds out (by model.fit's seed, as scikit-learn's train_test_split splits the weights with the rows)."""
        weights = checked_weights(sample_weight, rows)
        if weights is None or not self.early_stopping:
            return weights
        with scikit_learn_split():
            _, kept = held_out_rows(rows, validation_share(self.validation_fraction), self._seed_)
        return weights[kept]

    # ---- estimator API ----------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) (a fresh network, or the fitted one with warm_start); returns self.

        ``sample_weight`` (one weight a row, 0 or more; scikit-learn's since 1.7) weighs each row's squared error:
        the loss is sum_i w_i ||a_i - y_i||^2 / sum_i w_i over the training rows, and with early_stopping the
        held-out rows' R² is weighted by theirs (gpunn.MLP.fit's sample_weight). scikit-learn divides each batch's
        gradient by that batch's weights' sum; gpunn scales the weights to mean 1 over the training rows and
        divides by the batch's rows, so a batch's gradient is an unbiased estimate of the whole loss's (the same
        full-batch; weights that are all equal train as none)."""
        activation = self._check_params()
        warm = self.warm_start and hasattr(self, "model_")
        X, y = self._validate(X, y, reset=not warm)  # as scikit-learn: a warm start keeps n_features_in_
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if warm:
            self._check_same_network(Y.shape[1], activation, "warm_start=True")
            model, previous = self._network(), self.history_
        else:
            self._seed_ = self._seed()
            model, previous = self._new_model(X.shape[1], Y.shape[1], self._seed_, activation), None
        # ceil(validation_fraction x rows) held out, as scikit-learn's train_test_split (gpunn.fit rounds)
        rows = X.shape[0] - (held_out_count(X.shape[0], validation_share(self.validation_fraction), scikit_learn=True)
                             if self.early_stopping else 0)
        if rows < 1:  # as gpunn.fit's split says it, before the batch size and alpha are computed from the rows
            raise ValueError(f"validation_fraction={self.validation_fraction} of {X.shape[0]} "
                             f"row{'s' * (X.shape[0] != 1)} leaves no rows to train on")
        batch = self._batch_size(rows)
        name, opt = self._optimizer(batch, self._training_weights(sample_weight, X.shape[0]))
        rule = self._no_improvement(Y.shape[1], warm)
        kept = self._kept_best(model, previous)
        callbacks = [rule]
        if self.early_stopping:  # the best validation epoch's weights, any improvement counting (not only by
            # tol), as scikit-learn keeps its _best_coefs; this one never stops training
            callbacks.append(EarlyStopping("val_r2", patience=self.max_iter, restore_best_weights=True))
        # handle_interrupt=False: Ctrl-C aborts (KeyboardInterrupt) as with any estimator, rather than
        # quietly handing a half-trained model to a grid search.
        with _put_back_on_failure(model if warm else None), scikit_learn_split():
            history = model.fit(X, Y, epochs=self.max_iter, batch_size=batch, optimizer=make_optimizer(name, **opt),
                                shuffle=bool(self.shuffle), seed=self._seed_, verbose=False, callbacks=callbacks,
                                validation_fraction=self.validation_fraction if self.early_stopping else None,
                                handle_interrupt=False, distributed=False,  # (one process's, under mpiexec too)
                                sample_weight=sample_weight)
        self._no_improvement_state = rule.state()
        if kept is not None and not max(history.get("val_r2", ()), default=-math.inf) > kept[0]:
            model.params[...] = kept[1]  # no epoch of this warm fit beat the earlier best: its weights stay
            history.best_epoch, history.best = kept[2], kept[3]
        if not history.stopped_early and len(history.get("epoch", ())) == self.max_iter:  # as scikit-learn warns
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                          "hasn't converged yet.", ConvergenceWarning, stacklevel=user_stacklevel())
        if previous is not None:  # warm start: the curves go on
            for key, values in history.items():
                previous.setdefault(key, []).extend(values)
            previous.stopped_early, previous.best_epoch, previous.best = (history.stopped_early, history.best_epoch,
                                                                          history.best)
            history = previous
        self._set_fitted(model, history, Y.shape[1], rows, warm)  # (t_ counts the rows trained on, as scikit-learn's)
        return self

    # Keras's fit(X, y, epochs=10) says what to do instead
    fit = keywords_checked(fit, "MLPRegressor.fit", lambda est: list(est.get_params(deep=False)),
                           refusal=unexpected_estimator_keyword)

    def partial_fit(self, X, y, sample_weight=None):
        """One more epoch over (X, y), continuing the optimizer (a fresh network on first call). As in
        scikit-learn, there is no early stopping in it (``early_stopping=True`` is refused). ``sample_weight``: as
        ``fit``'s, scaled to mean 1 over this call's rows."""
        activation = self._check_params()
        if self.early_stopping:  # it held nothing out and was silently ignored
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_")
        X, y = self._validate(X, y, reset=first)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        weights = checked_weights(sample_weight, X.shape[0])
        batch = self._batch_size(X.shape[0])
        if first:
            self._seed_ = self._seed()
            model = self._new_model(X.shape[1], Y.shape[1], self._seed_, activation)
            name, opt = self._optimizer(batch, weights)  # (its decay is the first call's, as its batch size)
            model.optimizer = make_optimizer(name, **opt)
            history, n_iter = History(), 0
        else:
            self._check_same_network(Y.shape[1], activation, "partial_fit")
            model, history, n_iter = self._network(), self.history_, len(self.loss_curve_)  # every epoch so far
        rule = self._no_improvement(Y.shape[1], not first, partial=True)
        with model.backend.use(), _put_back_on_failure(None if first else model):
            Xd = model._as_input(X)
            Yd = training_targets(model.xp, model._as_target(Y), weights)
            settings = FitSettings(epochs=n_iter + 1, batch_size=batch, train_rows=int(Xd.shape[0]), seed=self._seed_,
                                   shuffle=bool(self.shuffle), schedule=make_schedule("constant"))
            weighted = is_weighted(model, Yd)
            source = ArraySource(Xd, Yd, model.backend, seed=self._seed_, shuffle=bool(self.shuffle), weighted=weighted)
            with weighted_rows(model, weighted):
                train(model, source, model.optimizer, settings,
                      TrainState(epoch=n_iter, history=history, lr_scale=rule.lr_scale), callbacks=[rule],
                      handle_interrupt=False)
        self._no_improvement_state = rule.state()
        self._set_fitted(model, history, Y.shape[1], X.shape[0], not first)
        return self

    partial_fit = keywords_checked(partial_fit, "MLPRegressor.partial_fit", lambda est: list(est.get_params(deep=False)),
                                   refusal=unexpected_estimator_keyword)

    def _kept_best(self, model, previous):
        """(best validation R², a copy of the weights, their epoch and the history's best) for a warm fit with early stopping after one
        with it, whose weights are the best epoch's so far: a warm fit in which no epoch beats that R² keeps
        them, so that ``coefs_`` are the weights ``best_validation_score_`` describes. scikit-learn means to
        (it restores its ``_best_coefs``), but they are the arrays its warm fit goes on training in place, so
        it ends with that fit's last epoch; gpunn ended with that fit's best, below the earlier best."""
        state = getattr(self, "_no_improvement_state", None) if previous is not None else None
        if not (self.early_stopping and state is not None and state[0]):
            return None
        return state[2], model.params.copy(), previous.best_epoch, previous.best

    def _no_improvement(self, n_outputs, continued, partial=False):
        """The callback for tol and n_iter_no_change: carrying on from the earlier fits' count, best value
        and adaptive rate when ``continued`` (a warm start, partial_fit after a first call), as
        scikit-learn's attributes do; a warm fit keeps the count and best but starts from
        learning_rate_init, as scikit-learn's new optimizer does. A state of the other kind (early_stopping
        switched between fits: R² against loss) is not carried."""
        state = getattr(self, "_no_improvement_state", None) if continued else None
        carried = None
        if state is not None and state[0] == self.early_stopping:
            carried = state[1:] if partial else (*state[1:3], 1.0)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        return _NoImprovement(self.early_stopping, n_outputs, self.tol, self.n_iter_no_change,
                              self.learning_rate_init if adaptive else None, carried, partial,
                              verbose=bool(self.verbose), in_place=continued)

    def _check_same_network(self, n_outputs, activation, how):
        """A warm start or partial_fit continues the fitted network: refuse parameters that now describe
        another one (scikit-learn silently kept the old weights for a new width, and failed inside its
        forward pass for a new depth or output count)."""
        from .activations import get_activation
        from .model import canonical_dtype

        model = self.model_
        instead = "set warm_start=False" if how.startswith("warm") else "start from a new estimator (sklearn's clone)"
        if n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs but the fitted network has {self.n_outputs_}; {how} "
                             f"continues that network: {instead} to train a new one")
        fitted = {"hidden_layer_sizes": tuple(model.layer_sizes[1:-1]),
                  "activation": model.activations[0].name if len(model.activations) > 1 else None,
                  "output_activation": model.activations[-1].name, "dtype": model.dtype.name}
        wanted = {"hidden_layer_sizes": tuple(self._hidden()),
                  "activation": get_activation(activation).name if len(model.activations) > 1 else None,
                  "output_activation": get_activation(self.output_activation).name,
                  "dtype": canonical_dtype(self.dtype)}
        changed = [name for name in fitted if fitted[name] != wanted[name]]
        if changed:
            now = ", ".join(f"{name}={getattr(self, name)!r}" for name in changed)
            was = ", ".join(f"{fitted[name]!r}" for name in changed)
            raise ValueError(f"{how} continues the fitted network, but {now} now describes another one (it was "
                             f"{was}): {instead} to train a new network")

    def _set_fitted(self, model, history, n_outputs, rows, continued):
        self.model_, self.history_ = model, history
        self.n_outputs_ = n_outputs
        losses = history.get("loss", [])
        # A continued fit converts only its own epochs' losses, and its best goes on from the earlier one
        # (Python's min over the whole curve, continued): a loop of partial_fit calls otherwise converted
        # and scanned the whole curve on every call (2.3x slower per call after 6,000 calls).
        curve = getattr(self, "loss_curve_", None) if continued else None
        if curve is None or len(curve) > len(losses):
            curve, before_best = [], None
        else:
            before_best = getattr(self, "best_loss_", None) if curve else None
        before = len(curve)
        new = [sklearn_loss(loss, n_outputs) for loss in losses[len(curve):]]
        self.loss_curve_ = curve + new
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self.t_ = (getattr(self, "t_", 0) if continued else 0) + rows * (len(self.loss_curve_) - before)
        self.n_iter_ = len(self.loss_curve_) - before  # this call's epochs, as scikit-learn's (t_ counts on)
        if not self.loss_curve_ or self.early_stopping:
            self.best_loss_ = None
        elif before_best is None:
            self.best_loss_ = min(self.loss_curve_)
        else:
            self.best_loss_ = min(before_best, *new) if new else before_best
        if self.early_stopping and history.get("val_r2"):
            self.validation_scores_ = list(history["val_r2"])
            self.best_validation_score_ = max(self.validation_scores_)
        else:  # None without early stopping, as scikit-learn's (an earlier fit's scores stayed, as if this fit's)
            self.validation_scores_ = self.best_validation_score_ = None
        host = model.backend.to_host
        self.coefs_ = [numpy.array(host(W)) for W in model.weights]
        self.intercepts_ = [numpy.array(host(b)) for b in model.biases] if model.bias else None
        self._parameters_as_set = [numpy.array(a) for a in self._parameters()]
        self.n_layers_ = len(model.layer_sizes)
        self.out_activation_ = model.activations[-1].name

    def _parameters(self) -> list:
        return [*self.coefs_, *(self.intercepts_ or ())]

    def _network(self, on_device=True):
        """``model_`` with any edit of ``coefs_`` and ``intercepts_`` copied into it, and (``on_device``) on the device
        the ``device`` parameter names now: one set since the fit (``est.set_params(device="cuda")``) gets the network
        moved there, with its optimizer's moments and step count, as pickling carries them, where predict, a warm
        start and partial_fit went on on the fitted network's device without a word. Pickling moves nothing."""
        model = self._edits_copied()
        if on_device and resolve(self.device) != model.backend:
            self.model_ = model = self._built(self._saved(model))
        return model

    def _edits_copied(self):
        """``model_`` with any edit of ``coefs_`` and ``intercepts_`` since they were set copied into it. In
        scikit-learn they are the estimator's weights, which predict and a warm fit use; here they are host copies
        of the network's (which may be on a GPU), and an edit (``est.coefs_[1][...] = 0``, an item or the list
        replaced) was ignored without a word. Compared on the host with the arrays as set: O(parameters), no
        device transfer unless they were edited. Only the arrays edited are copied, so an edit of ``model_``'s own
        weights (``est.model_.weights[0][...] = W``) stays where another layer's ``coefs_`` was edited."""
        model = self.model_
        now, as_set = self._parameters(), self.__dict__.get("_parameters_as_set")
        if as_set is None or (len(now) == len(as_set) and all(numpy.array_equal(a, b) for a, b in zip(now, as_set))):
            return model
        views = [*model.weights, *(model.biases or ())]
        names = [f"coefs_[{i}]" for i in range(len(model.weights))] + \
                [f"intercepts_[{i}]" for i in range(len(model.biases or ()))]
        held = (len(self.coefs_), len(self.intercepts_ or ()))
        if held != (len(model.weights), len(model.biases or ())):
            raise ValueError(f"coefs_ holds {held[0]} arrays and intercepts_ {held[1]}; the fitted network has "
                             f"{len(model.weights)} of each: coefs_ and intercepts_ are its layers' weights and biases")
        arrays = [numpy.asarray(a, dtype=numpy.float64) for a in now]
        for name, view, array in zip(names, views, arrays):
            if array.shape != tuple(view.shape):
                raise ValueError(f"{name} has shape {array.shape}; the fitted network's is {tuple(view.shape)}: "
                                 "coefs_ and intercepts_ are its weights, edited in its shapes")
        with model.backend.use():
            for view, array, before in zip(views, arrays, as_set):
                if not numpy.array_equal(array, before):  # (the others: model_'s, which may have been edited there)
                    view[...] = model.xp.asarray(array, dtype=model.dtype)
        self._parameters_as_set = [array.copy() for array in arrays]
        return model

    def predict(self, X):
        """Predictions as a host float64 array: (n,) for one output (a y of shape (n,) or (n, 1), as
        scikit-learn's MLPRegressor), else (n, outputs)."""
        check_is_fitted(self)
        X, _ = self._validate(X, reset=False)
        model = self._network()
        P = numpy.asarray(model.backend.to_host(model.predict(X)), dtype=numpy.float64)
        return P.ravel() if P.shape[1] == 1 else P

    # ---- pickling (joblib workers, sklearn's checks): arrays and settings, never device objects
    def __getstate__(self):
        if "model_" in self.__dict__:
            self._network(on_device=False)  # (coefs_ edited: pickled as the weights they are)
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        if model is not None:
            state["_model_state"] = self._saved(model)
        elif "_unbuilt" in state:  # unpickled where its device is not usable, and pickled again as it came
            state["_model_state"] = state.pop("_unbuilt")
        return state

    def __setstate__(self, state):
        saved = state.pop("_model_state", None)
        self.__dict__.update(state)
        if saved is not None:
            try:
                self.model_ = self._built(saved)
            except DeviceError:
                # pickled with device="cuda" and unpickled on a machine without a usable GPU: the device is
                # not changed behind the user's back; the network is built when first used (__getattr__),
                # on the device set by then (set_params(device="cpu")). coefs_ and the rest are host arrays.
                self._unbuilt = saved

    def __getattr__(self, name):  # only for attributes not found: model_ of an estimator unpickled as above
        unbuilt = self.__dict__.get("_unbuilt")
        if name != "model_" or unbuilt is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            model = self._built(unbuilt)
        except DeviceError as exc:
            raise DeviceError(f"this MLPRegressor was unpickled without its network, as its device={self.device!r} "
                              f"is not usable here ({exc}); it keeps the device it was given: to use it on this "
                              "machine, choose one with est.set_params(device='cpu') (or 'auto'; in a Pipeline, "
                              "its step's: pipe.set_params(mlpregressor__device='cpu'), by the step's name), as "
                              "gpunn.load(path, device=...) chooses a saved model's. Its coefs_ and intercepts_ "
                              "are readable as they are") from None
        del self.__dict__["_unbuilt"]
        self.model_ = model
        return model

    @staticmethod
    def _saved(model):
        """The network ``model`` and its optimizer as host arrays and settings, which ``_built`` makes again."""
        from .checkpoint import model_config

        host = model.backend.to_host
        opt = getattr(model, "optimizer", None)
        return {"config": model_config(model), "params": numpy.array(host(model.params)),
                "optimizer": None if opt is None else {
                    "config": opt.config(), "steps": opt.steps,
                    "state": {k: numpy.array(host(v)) for k, v in opt.state.items()}}}

    def _built(self, saved):
        """The pickled network (``__getstate__``'s ``_model_state``) on ``self.device``, with its optimizer."""
        from .checkpoint import optimizer_from_config
        from .model import MLP

        cfg = saved["config"]
        model = MLP(cfg["layer_sizes"], activation=list(cfg["activations"]),
                    output_activation=cfg["output_activation"], bias=cfg["bias"], dtype=cfg["dtype"],
                    device=self.device, seed=cfg["seed"])
        with model.backend.use():
            model.params[...] = model.xp.asarray(saved["params"])
            if saved["optimizer"] is not None:
                opt = optimizer_from_config(saved["optimizer"]["config"])
                opt.steps = saved["optimizer"]["steps"]
                # copies: joblib.load(path, mmap_mode="r") gives read-only arrays, which asarray kept on the CPU
                opt.state = {k: model.xp.array(v) for k, v in saved["optimizer"]["state"].items()}
                opt.bind(model.params, model.ops)
                model.optimizer = opt
        return model
