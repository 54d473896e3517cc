"""``gpunn.MLPRegressor``: a scikit-learn estimator around :class:`gpunn.MLP`.

It follows scikit-learn's conventions: the constructor only stores its arguments;
``fit``/``partial_fit`` set the learned attributes, all ending in ``_``; ``predict`` returns
host NumPy float64 arrays, 1-D when fitted on a 1-D ``y``. It works in Pipeline,
GridSearchCV and cross_val_score. scikit-learn is optional: without it the class still
works as a plain estimator (get_params/set_params/fit/predict/score are provided here).
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers

import numpy

from .optim import make_optimizer, make_schedule
from .training.callbacks import EarlyStopping, History
from .training.loop import train
from .training.sources import ArraySource
from .training.state import FitSettings, TrainState

try:  # optional dependency
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

    HAVE_SKLEARN = True
except ImportError:  # a minimal stand-in with the same conventions
    HAVE_SKLEARN = False

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
            if sample_weight is not None:
                raise TypeError("sample_weight needs scikit-learn installed")
            from .metrics import r2

            y = numpy.asarray(y, dtype=numpy.float64)
            P = self.predict(X).reshape(y.shape[0], -1)
            return r2(numpy, P, y.reshape(y.shape[0], -1))

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
        return seed

    def validate_data(estimator, X, y="no_validation", reset=True, **_):
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


class MLPRegressor(RegressorMixin, BaseEstimator):
    """A multilayer-perceptron regressor trained with gpunn on the GPU (CuPy) or the CPU.

    Parameters mirror :func:`gpunn.fit`: ``hidden_layer_sizes`` (as scikit-learn's
    MLPRegressor), ``activation`` (hidden) and ``output_activation``, ``optimizer`` ("adam",
    "adamw", "sgd", "momentum", "nesterov"), ``lr``, ``weight_decay``, ``batch_size`` (capped
    at the number of rows; None for full batch), ``epochs`` (scikit-learn's max_iter),
    ``schedule``; ``early_stopping`` holds out ``validation_fraction`` of the rows and stops
    after ``patience`` epochs without an improvement of ``min_delta`` in validation loss,
    keeping the best weights; ``dtype``, ``device`` ("auto", "cpu", "cuda", "cuda:N");
    ``random_state`` (int, RandomState or None) seeds initialisation, shuffles and the split.

    Fitted attributes: ``model_`` (the gpunn.MLP), ``history_``, ``loss_curve_``,
    ``validation_scores_`` (validation R² per epoch, with early stopping), ``n_iter_``,
    ``n_features_in_``, ``n_outputs_``.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", output_activation="identity", optimizer="adam",
                 lr=1e-3, weight_decay=0.0, batch_size=200, epochs=200, schedule="constant", early_stopping=False,
                 validation_fraction=0.1, patience=10, min_delta=1e-4, dtype="float32", device="auto",
                 random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.schedule = schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ---- scikit-learn plumbing -------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _validate(self, X, y=None, reset=True):
        kwargs = dict(reset=reset, dtype=[numpy.float64, numpy.float32])
        if y is None and not reset:
            return validate_data(self, X, **kwargs), None
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, **kwargs)
        return X, y

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = list(sizes)
        if any(not isinstance(n, numbers.Integral) or n < 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _seed(self):
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _new_model(self, n_features, n_outputs, seed):
        from .model import MLP

        return MLP([n_features, *self._hidden(), n_outputs], activation=self.activation,
                   output_activation=self.output_activation, dtype=self.dtype, device=self.device, seed=seed)

    # ---- estimator API ----------------------------------------------------------------
    def fit(self, X, y):
        """Train a fresh network on (X, y); returns self."""
        X, y = self._validate(X, y)
        self._y_1d = y.ndim == 1
        Y = y.reshape(-1, 1) if self._y_1d else y
        self._seed_ = self._seed()
        model = self._new_model(X.shape[1], Y.shape[1], self._seed_)
        # handle_interrupt=False: Ctrl-C aborts (KeyboardInterrupt) as with any estimator, rather than
        # quietly handing a half-trained model to a grid search.
        callbacks = [EarlyStopping(patience=self.patience, min_delta=self.min_delta)] if self.early_stopping else []
        optimizer = make_optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        history = model.fit(X, Y, epochs=self.epochs, batch_size=self.batch_size, optimizer=optimizer,
                            schedule=self.schedule, seed=self._seed_, verbose=self.verbose,
                            validation_fraction=self.validation_fraction if self.early_stopping else None,
                            callbacks=callbacks, handle_interrupt=False)
        self._set_fitted(model, history, Y.shape[1])
        return self

    def partial_fit(self, X, y):
        """One more epoch over (X, y), continuing the optimizer (a fresh network on first call)."""
        first = not hasattr(self, "model_")
        X, y = self._validate(X, y, reset=first)
        y_1d = y.ndim == 1
        Y = y.reshape(-1, 1) if y_1d else y
        if first:
            self._y_1d, self._seed_ = y_1d, self._seed()
            model = self._new_model(X.shape[1], Y.shape[1], self._seed_)
            model.optimizer = make_optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay or None)
            history, n_iter = History(), 0
        else:
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y has {Y.shape[1]} outputs but the model was fitted with {self.n_outputs_}")
            model, history, n_iter = self.model_, self.history_, self.n_iter_
        schedule = make_schedule(self.schedule)
        if schedule.name == "cosine" and not schedule.total_epochs:
            schedule = dataclasses.replace(schedule, total_epochs=self.epochs)
        with model.backend.use():
            Xd, Yd = model._as_input(X), model._as_target(Y)
            batch = Xd.shape[0] if self.batch_size is None else min(int(self.batch_size), Xd.shape[0])
            settings = FitSettings(epochs=n_iter + 1, batch_size=batch, train_rows=int(Xd.shape[0]), seed=self._seed_,
                                   shuffle=True, schedule=schedule)
            source = ArraySource(Xd, Yd, model.backend, seed=self._seed_, shuffle=True)
            train(model, source, model.optimizer, settings, TrainState(epoch=n_iter, history=history),
                  handle_interrupt=False)
        self._set_fitted(model, history, Y.shape[1])
        return self

    def _set_fitted(self, model, history, n_outputs):
        self.model_, self.history_ = model, history
        self.n_outputs_ = n_outputs
        self.loss_curve_ = list(history.get("loss", []))
        self.n_iter_ = len(self.loss_curve_)
        if "val_r2" in history:
            self.validation_scores_ = list(history["val_r2"])
            self.best_validation_score_ = max(self.validation_scores_)

    def predict(self, X):
        """Predictions as a host float64 array: (n,) when fitted on 1-D y, else (n, outputs)."""
        check_is_fitted(self)
        X, _ = self._validate(X, reset=False)
        P = numpy.asarray(self.model_.backend.to_host(self.model_.predict(X)), dtype=numpy.float64)
        return P.ravel() if self._y_1d else P

    # ---- pickling (joblib workers, sklearn's checks): arrays and settings, never device objects
    def __getstate__(self):
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        if model is not None:
            from .checkpoint import model_config

            host = model.backend.to_host
            opt = getattr(model, "optimizer", None)
            state["_model_state"] = {
                "config": model_config(model), "params": numpy.array(host(model.params)),
                "optimizer": None if opt is None else {
                    "config": opt.config(), "steps": opt.steps,
                    "state": {k: numpy.array(host(v)) for k, v in opt.state.items()}},
            }
        return state

    def __setstate__(self, state):
        saved = state.pop("_model_state", None)
        self.__dict__.update(state)
        if saved is not None:
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
                    opt.state = {k: model.xp.asarray(v) for k, v in saved["optimizer"]["state"].items()}
                    opt.bind(model.params, model.ops)
                    model.optimizer = opt
            self.model_ = model
