"""``fit``: train a model on in-memory arrays or a gpunn.data source, and the validation split it (and
resumption) use."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import math
import sys

import numpy

from .. import _startup, sample_weights
from ..checks import (check_rows_match, fit_columns, flag, held_warnings, positive_int, refuse_a_file_to_fit,
                      refuse_torch_validation, seed_int, validation_share, warn_read_by_position)
from ..hints import OPTIMIZER_OPTIONS, a_type, keywords_checked, unexpected_keyword
from ..metrics import RegressionEvaluator, check_validation_rows, validation_arrays
from ..optim import make_optimizer, make_schedule
from ..rng import host_rng
from .callbacks import order_callbacks
from .graph import graph_mode
from .loop import train
from .protocols import is_source
from .sources import ArraySource
from .state import FitSettings


def fit_options(function) -> list:
    """The options of a fit function (``fit``, ``fit_ensemble``): its keyword-only parameters, not the model, X or Y."""
    return [name for name, spec in inspect.signature(function).parameters.items() if spec.kind == spec.KEYWORD_ONLY]


def as_method(function, qualname, summary, other_fits=None, made_with=None):
    """``function(model, ...)`` as the method ``qualname`` (``"MLP.fit"``, ``"Ensemble.fit"``) of a class of the
    calling module, with the function's parameters, ``self`` for ``model``, and ``summary`` above its docstring, so
    that ``help(model.fit)`` and an editor list every option with its default, as ``help(gpunn.fit)`` does
    (``**kwargs`` showed none), under the name the user calls (``fit_ensemble`` showed for ``Ensemble.fit``).
    ``other_fits``, ``{"Ensemble": fit_ensemble}``: the other kinds of model's fits, whose own options this one
    refuses saying whose they are (``MLP.fit(X, Y, bootstrap=True)``: an Ensemble's), or shown in the class's
    constructor, ``made_with`` (its ``__init__``), where that takes them (``Ensemble.fit(X, Y, graph=True)``)."""
    call = refusing_other_kinds(function, qualname, other_fits, made_with)

    def method(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
        return call(self, *args, **kwargs)

    signature = inspect.signature(function)
    model, *rest = signature.parameters.values()
    method.__signature__ = signature.replace(parameters=[model.replace(name="self"), *rest])
    method.__qualname__ = qualname
    method.__name__ = qualname.rsplit(".", 1)[-1]
    method.__module__ = sys._getframe(1).f_globals["__name__"]  # where the class is, as collections.namedtuple does
    method.__doc__ = f"{summary}\n\n{inspect.getdoc(function)}"
    return method


def as_function(function, other_fits):
    """``function`` (``fit``) as the public function of the calling module (gpunn.fit, found there by pickle), refusing
    an option only ``other_fits`` take saying whose it is, as :func:`as_method`'s method does: ``gpunn.fit(model, X,
    Y, bootstrap=True)`` is told bootstrap is an Ensemble's. (Made where both kinds' fits are known: this module cannot
    import training.ensemble, which imports it.)"""
    checked = refusing_other_kinds(function, function.__name__, other_fits)
    checked.__module__ = sys._getframe(1).f_globals["__name__"]
    return checked


def refusing_other_kinds(function, qualname, other_fits=None, made_with=None):
    """``function``, a fit, refusing a keyword it does not take as :func:`gpunn.hints.keywords_checked` does, in the
    name ``qualname``, and an option of ``other_fits`` (``{"Ensemble": fit_ensemble}``) that it does not take saying
    whose it is, or shown in the constructor ``made_with`` where that takes it (:func:`as_method`)."""
    made_with = list(inspect.signature(made_with).parameters) if made_with else []
    own = fit_options(function)  # (not an optimizer's option: a model's fit refusal shows it in its optimizer)
    others = {kind: [option for option in fit_options(other) if option not in own + list(OPTIMIZER_OPTIONS)]
              for kind, other in (other_fits or {}).items()}
    return keywords_checked(function, qualname,
                            refusal=functools.partial(unexpected_keyword, other_fits=others, made_with=made_with))


def checked_arrays(model, X, Y, standardize=False, training_rows=None):
    """(X, Y) of a fit on arrays, checked as training takes them (``model._checked``: standardized copies for a model
    with statistics), rows matched; the model's ``data_columns`` then those the fit leaves (checks.fit_columns: a
    DataFrame's names, read before the conversion drops them, else the model's own). MLP's and Ensemble's fit alike.
    ``standardize`` (True, or "inputs": X only): a model without statistics first takes those of the raw training
    rows (``training_rows(rows)``: a sorted host index array of them, or None for all; see ``rows_trained_on``)."""
    columns = fit_columns(X, Y, model.data_columns)
    warn_read_by_position(X, columns, "X", model)  # (the names this fit leaves: a DataFrame's own are no warning)
    from ..data.binding import array_statistics, warn_statistics_kept

    if standardize and model.standardizer is None:  # (a model with statistics keeps them, as a source's fit does)
        model.standardizer = array_statistics(model, X, Y, standardize, columns, training_rows)
    warn_statistics_kept(model, standardize, f"standardize={standardize!r}")
    X, Y = model._checked(X, Y)
    check_rows_match(X, Y)
    model.data_columns = columns  # (validation_data is picked by them)
    return X, Y


def split_validation(model, X, Y, validation_data=None, validation_fraction=None, seed=0, weights=None):
    """(X_train, Y_train, evaluator or None). X, Y are checked device matrices; ``weights``, a host float64 vector
    of one weight a row (gpunn.sample_weights.checked_weights) or None.

    A fraction holds out that share of rows, chosen by the stream (seed, "validation"), so a
    resumed run with the same data and seed gets the same split. With ``weights``, each part's rows are weighed by
    theirs, scaled to mean 1 over the part: Y_train then carries them as one more column (``sample_weights.training_targets``), and the
    evaluator weighs the held-out rows' metrics. validation_data may be (X_val, Y_val, weights_val), as Keras's.
    """
    fraction = validation_share(validation_fraction)
    if validation_data is not None and fraction:
        raise ValueError("pass validation_data or validation_fraction, not both")
    if validation_data is not None:
        refuse_torch_validation(validation_data)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a pair (X_val, Y_val), or (X_val, Y_val, sample_weight_val)")
        return X, sample_weights.training_targets(model.xp, Y, weights), validation_arrays(model, *validation_data)
    if not fraction:
        return X, sample_weights.training_targets(model.xp, Y, weights), None
    held, kept = held_out_rows(X.shape[0], fraction, seed)
    xp = model.xp
    val_idx, train_idx = xp.asarray(held), xp.asarray(kept)
    Xv, Yv = xp.take(X, val_idx, axis=0), xp.take(Y, val_idx, axis=0)
    Y_train = sample_weights.training_targets(xp, xp.take(Y, train_idx, axis=0),
                                              None if weights is None else weights[kept])
    val_weights = sample_weights.evaluation_weights(xp, None if weights is None else weights[held],
                                                    "the validation rows")
    return (xp.take(X, train_idx, axis=0), Y_train,
            RegressionEvaluator(model, Xv, Yv, rows_in=("X", held), weights=val_weights))


def refuse_weights_where_unweighted(model, X, Y):
    """What fit's ``sample_weight`` does not reach, refused before anything runs: a data source (its rows are
    read a window at a time: it is made with its weights instead, gpunn.data.row_weights) and a model whose training
    step is not MLP's or Ensemble's own (a subclass's train_step, _forward or _backward would be given Y with the
    weights' column: ``own_step_of``). A data-parallel fit takes them, one MLP's and an Ensemble's: every
    rank's piece of each global batch carries its rows' weights (gpunn.distributed.shard.ShardedArraySource; a
    bootstrap's, PieceOfEachBatch's cut of each member's resample, weighed over the whole resample)."""
    if is_source(X, Y):
        raise ValueError(f"sample_weight weighs the rows of in-memory arrays; a data source ({type(X).__name__}) "
                         "carries its weights itself: make it with them, gpunn.data.npy(x_path, y_path, "
                         "weights='w.npy') or a table's column, gpunn.data.parquet(path, target=[...], weight='w') "
                         "(csv alike), and fit it without sample_weight")
    refuse_an_own_step(model, "sample_weight")


def refuse_an_own_step(model, weighing):
    """Refused where ``model`` steps otherwise than its gpunn class (``own_step_of``): ``weighing`` names the weights
    ("sample_weight", or a source's "... has a weight for each row, which")."""
    own = own_step_of(model)
    if own:
        raise TypeError(f"{weighing} needs {own}'s own training step; {type(model).__name__} defines its own "
                        "train_step, _forward or _backward, which would be given Y with the weights as one more column")


def own_step_of(model):
    """"MLP" or "Ensemble" where ``model`` is a subclass of it with its own train_step, _forward or _backward, which a
    weighted fit would give Y with the weights' column as targets; None where it steps as its gpunn class does."""
    for name, steps_as in (("MLP", "steps_as_mlp"), ("Ensemble", "steps_as_ensemble")):
        if hasattr(model, steps_as) and not getattr(model, steps_as)():
            return name
    return None


def refuse_a_weighted_source(model, sources):
    """What a source's weights (gpunn.data.row_weights: made with ``weights=`` or ``weight=``) do not reach,
    refused before anything runs, as ``refuse_weights_where_unweighted`` refuses arrays' ``sample_weight``: a model
    with its own training step (``own_step_of``).
    ``sources``: the training source and validation_data (anything; only a source with weights counts)."""
    weighted = [source for source in sources if getattr(source, "has_weights", False)]
    if not weighted:
        return
    refuse_an_own_step(model, f"{type(weighted[0]).__name__} {weighted[0]._name()} has a weight for each row, which")


def is_weighted(model, Y) -> bool:
    """Whether training's Y (``split_validation``'s) carries weights: one column more than the model's outputs."""
    return Y.shape[1] == model.layer_sizes[-1] + 1


@contextlib.contextmanager
def weighted_rows(model, weighted: bool):
    """While training: the model's batches' Y carry each row's weight as their last column (MLP._sample_weighted)."""
    if not weighted:
        yield
        return
    outer = model.__dict__.get("_sample_weighted")  # (a fit run from a callback of another fit of the model)
    model._sample_weighted = True
    try:
        yield
    finally:
        if outer is None:
            del model._sample_weighted  # (back to the class's False)
        else:
            model._sample_weighted = outer


def not_data_parallel(distributed, call):
    """``distributed`` as a fit takes it, None (not given) as False; under an MPI launcher, None is warned of where
    each of several processes then trains the whole run (gpunn.distributed.comm.warn_each_rank_trains_it_all,
    imported only there). ``distributed=False`` trains on each rank on purpose, unwarned."""
    if distributed is not None:
        return distributed
    if _startup.launched() or _startup.srun_tasks_without_mpi():
        from ..distributed.comm import warn_each_rank_trains_it_all

        warn_each_rank_trains_it_all(call)
    return False


# True while scikit_learn_split holds in this context: a validation_fraction holds out scikit-learn's count of rows
_scikit_learn_count = contextvars.ContextVar("gpunn_scikit_learn_count", default=False)


@contextlib.contextmanager
def scikit_learn_split():
    """While it holds, a fit in this thread holds out ceil(fraction x rows) rows for a ``validation_fraction``, as
    scikit-learn's train_test_split does (so its MLPRegressor), where gpunn.fit holds out round(fraction x rows):
    gpunn.MLPRegressor's fit, which checkpoints nothing (a checkpoint's resume splits again by gpunn.fit's rule)."""
    token = _scikit_learn_count.set(True)
    try:
        yield
    finally:
        _scikit_learn_count.reset(token)


def held_out_count(m, fraction, scikit_learn=False):
    """How many of ``m`` rows ``validation_fraction`` holds out: round(fraction x m), at least 1 (gpunn.fit's
    rule, which its checkpoints' resumes split by again), or with ``scikit_learn`` (as in scikit_learn_split)
    scikit-learn's ceil(fraction x m): 205 rows at 0.1 hold out 20, and 21; 12 rows, 1 (too few to score), and 2."""
    return math.ceil(fraction * m) if scikit_learn else max(1, int(round(fraction * m)))


def held_out_rows(m, fraction, seed):
    """(held, kept): the rows of ``m`` that ``validation_fraction`` holds out (``held_out_count``), drawn by the
    stream (seed, "validation"), and the others, as sorted host index arrays."""
    n_val = held_out_count(m, fraction, _scikit_learn_count.get())
    if n_val >= m:
        raise ValueError(f"validation_fraction={fraction} of {m} row{'s' * (m != 1)} leaves no rows to train on")
    check_validation_rows(n_val, f"validation_fraction={fraction} of {m} rows")
    order = host_rng(seed, "validation").permutation(m)
    return numpy.sort(order[:n_val]), numpy.sort(order[n_val:])


def rows_trained_on(validation_data, validation_fraction, seed):
    """The training rows of a fit on arrays of ``m`` rows, as ``split_validation`` keeps them: a function of ``m``,
    giving a sorted host index array, or None for every row (``checked_arrays``' ``training_rows``)."""
    fraction = validation_share(validation_fraction)
    if validation_data is not None or not fraction:
        return lambda m: None
    return lambda m: held_out_rows(m, fraction, seed)[1]


def weights_trained_on(weights, validation_data, validation_fraction, seed):
    """The training rows' ``weights`` (host float64, one a row of X; or None) of a fit on arrays, as
    ``split_validation`` keeps its rows: what an Ensemble's bootstrap resamples draw theirs from."""
    if weights is None:
        return None
    rows = rows_trained_on(validation_data, validation_fraction, seed)(weights.shape[0])
    return weights if rows is None else weights[rows]


def refuse_standardize_with_a_source(standardize, source):
    """``standardize`` is a fit's option on arrays: a source standardizes itself (made with standardize=True)."""
    if standardize:
        raise ValueError(f"standardize={standardize!r} is fit's option on arrays; a data source standardizes its "
                         f"rows itself: make it with standardize={standardize!r} (gpunn.data.npy(..., "
                         f"standardize={standardize!r}), as its other makers take it) and fit on it without "
                         f"standardize (given {type(source).__name__})")


@contextlib.contextmanager
def statistics_kept_on_refusal(model):
    """A fit's set-up that raises leaves the model's statistics as they were (``standardize`` set them first)."""
    given = model.standardizer
    try:
        yield
    except BaseException:
        model.standardizer = given
        raise


@contextlib.contextmanager
def statistics_kept_before_a_step(model, optimizer, given):
    """Training that raises before its first step (a callback's refusal in on_train_begin: a monitor the logs lack,
    a ModelCheckpoint's missing folder) leaves the statistics as the fit found them (``given``), as a refusal in the
    set-up does: the weights are untouched. After a step the weights are in the statistics' units and keep them."""
    steps = optimizer.steps
    try:
        yield
    except BaseException:
        if optimizer.steps == steps:
            model.standardizer = given
        raise


@keywords_checked
def fit(model, X, Y=None, *, epochs=10, batch_size=256, optimizer="adam", lr=None, schedule="constant", shuffle=True,
        seed=None, verbose=True, callbacks=(), validation_data=None, validation_fraction=None, standardize=False,
        handle_interrupt=True, distributed=None, graph=None, sample_weight=None):
    """Train ``model`` on (X, Y) with mini-batch gradient descent; returns a :class:`History`.

    epochs: passes over the training rows (default 10). batch_size: rows per step (default 256, at most
    the row count; None trains full-batch). shuffle: reorder the rows each epoch, by (seed, epoch).
    verbose: show progress on stderr (True, or a verbosity level above 0): a bar on a terminal, a line per epoch
    in a file or pipe (a log); verbose=2 (Keras') a line per epoch wherever stderr goes. callbacks: a list of
    :class:`gpunn.Callback` (below). Returns the history: per epoch ``epoch``, ``loss`` (the mean of each
    batch's loss before its step, over the epoch's rows), ``lr``, ``time_s``, ``samples_per_s``, and the
    validation metrics; ``best_epoch`` and ``best`` (EarlyStopping's best epoch and value, else the least val_loss
    and its epoch where validated), ``stopped_early``, ``interrupted``.

    X may instead be a data source (``gpunn.data.synthetic/npy/parquet/csv/iterable``) with Y
    omitted: the source then owns batching, shuffling (its own seed and shuffle: fit's ``seed``, or
    ``shuffle=False``, other than the source's is refused, not dropped) and the
    validation split (``validation_fraction`` holds out whole chunks; ``validation_data`` may be
    another source), and a source made with ``standardize=True`` leaves its statistics in
    ``model.standardizer``: from then on the model takes raw data everywhere (``predict``, ``score``,
    ``loss``, ``loss_and_gradients``, arrays passed to a later ``fit``, which trains on a
    standardized copy of them, and a source passed to a later ``fit``, which is scaled by the
    model's statistics, whether it was made with standardize or not). The source stays yours: fit reads it and
    never closes it (train on it again, then ``source.close()``, or make it in a ``with`` block).

    optimizer: an Optimizer (``gpunn.Adam(lr=3e-3, weight_decay=1e-4)``, ``gpunn.SGD(momentum=0.9)``, ...)
    or a name: "sgd" (plain W <- W - lr dW), "momentum", "nesterov", "adam" (also None), "adamw" (names in any
    letter case, as Keras takes them: "Adam" is adam, and so for schedules); ``lr``, when
    given, sets the rate of either (an object's ``lr`` is changed). A name makes a fresh optimizer each fit;
    an object keeps its moments and step count, so a second fit of the same model with it continues them
    (its epochs count from 1 again, with a new run's shuffles and schedule: a checkpoint's ``resume``
    continues a run exactly), and another model given it starts afresh. schedule: a ``gpunn.Schedule`` (``Schedule("step", step_size=5,
    gamma=0.5)``) or a name: "constant", "step" (x0.1 every 10 epochs), "cosine" (to zero over the run);
    "exponential" (x gamma per epoch) has no default gamma: ``Schedule("exponential", gamma=0.95)``; each takes a
    linear warm-up over the run's first optimizer steps, ``Schedule("cosine", warmup_steps=500)``; "onecycle" is
    PyTorch's OneCycleLR stepped every batch, with ``lr`` its peak (momentum not cycled). batch_size=None trains full-batch. seed (default: the model's) fixes the shuffles.

    Validation: ``validation_data=(X_val, Y_val)`` or ``validation_fraction`` (round(fraction x rows) rows held out
    by the seed; at least 2, as R² needs) adds val_loss, val_mse, val_mae and val_r2 to each epoch's logs, at one extra host
    synchronisation per epoch. val_loss is the training loss's formula on the validation rows, so the two
    compare: with one output it is the MSE (= val_mse); with k outputs the loss sums the outputs' squared
    errors, and val_loss = k x val_mse (val_mse and val_mae are means over every value, as scikit-learn's).
    standardize=True (arrays; a source is made with its own): the model first takes the mean and spread of each
    column of X and Y over the training rows (the held-out rows left out), trains on standardized copies, and keeps
    the statistics (``model.standardizer``, saved with it), so that predict, score and evaluate take raw inputs and
    give targets in their units, as after a source made with standardize=True; val_* metrics are then in
    standardized units. "inputs" scales X only. A model that has statistics already (a second fit) keeps its own,
    warning where ``standardize`` asks for the other kind (True of X's alone, "inputs" of X's and Y's).
    Columns far from unit scale (prices, years) train poorly as they are: held-out R² far below 0.
    Callbacks: ``gpunn.EarlyStopping(patience=8)`` (monitors val_loss with validation, else loss, and
    restores the best weights, also when the run then raises TrainingDiverged; a monitor no epoch's logs can
    hold is refused before the first epoch), ``gpunn.ReduceLROnPlateau(...)``, ``gpunn.ModelCheckpoint("run.npz")``
    (a resumable checkpoint written atomically every epoch, at the end and on Ctrl-C; continue with
    ``gpunn.load_checkpoint(path).resume``), or your own :class:`Callback`.
    Ctrl-C or SIGTERM (with ``handle_interrupt``, main thread only) stops after the current batch and
    returns the history so far with ``history.interrupted = True``; a SIGTERM is then passed on to a
    process without a handler of its own for it, which ends there (after the checkpoint).
    Data parallel: ``distributed=True`` (every rank of ``mpiexec -n P`` calls fit with the same
    arguments and data) trains over MPI on the CPU or NCCL on GPUs (``"mpi"`` or ``"nccl"``, in any letter case,
    asks for that engine, refused on the other kind of device); ``batch_size`` is then the
    per-rank batch, the global batch is P times it, and the result is the single-process run at
    that global batch (see gpunn.distributed; on a gpunn.data source each rank reads only its shard,
    and the single-process order is ``gpunn.distributed.ShardedSource(source, P)``'s). Rank 0 prints
    and writes checkpoints. ``distributed=None`` (the default) is False, with a warning (once, by rank 0) where an MPI
    launcher started several processes, each of which then trains the whole run; ``False`` trains so, unwarned.
    graph: sets ``model.graph`` for this and later fits: True, False, or "auto" (on for a CUDA GPU where the
    step can be captured: the default); None leaves it as it is (see MLP and gpunn.training.graph).
    sample_weight: one weight a row of X (or one number, which weighs nothing), 0 or more: the loss becomes
    sum_i w_i ||a_i - y_i||^2 / sum_i w_i (gpunn.sample_weights), and the weights of rows a validation_fraction holds
    out weigh val_loss, val_mse, val_mae and val_r2 (scikit-learn's r2_score(sample_weight=...)); validation_data
    takes a third item, the validation rows' weights (Keras's). Arrays and an MLP's own step: a data source carries
    its own weights instead (``gpunn.data.npy(..., weights="w.npy")``: gpunn.data.row_weights). With
    ``distributed=True`` every rank passes the same weights (they are in the data's checksum the ranks compare before
    the first step) and each rank's piece of every global batch carries its rows' weights: the single-process weighted
    run at the global batch, as unweighted (``Ensemble.fit`` takes sample_weight as this fit does, data parallel too). A
    small net's weighted step on the CPU is its one Numba call (gpunn.ops.mlp_step), as an unweighted one; on a GPU
    the weighted loss is one kernel, in a CUDA graph.
    """
    if not hasattr(model, "layer_sizes"):  # gpunn.fit(X, Y) without the model: "'numpy.ndarray' object has no
        # attribute 'standardizer'" said not what was missing
        raise TypeError(f"gpunn.fit(model, X, Y, ...) takes the model to train first, and got {a_type(model)}: "
                        "gpunn.fit(gpunn.MLP([n_features, 64, n_outputs]), X, Y), or model.fit(X, Y)")
    if hasattr(model, "n_models"):  # (it failed with "'Ensemble' object has no attribute 'seed'")
        raise TypeError("gpunn.fit trains one MLP; train an Ensemble with its own fit, ens.fit(X, Y, ...), which also "
                        "takes per-member lr, weight_decay, momentum, beta1, beta2 and bootstrap")
    refuse_a_file_to_fit(X, Y)
    if graph is not None:
        model.graph = graph_mode(graph)
    distributed = not_data_parallel(distributed, "fit")
    if sample_weight is not None:
        refuse_weights_where_unweighted(model, X, Y)
    epochs = positive_int(epochs, "epochs")
    shuffle = flag(shuffle, "shuffle")
    from ..data.base import standardize_option

    standardize, given = standardize_option(standardize), model.standardizer
    with model.backend.use(), held_warnings() as checked, statistics_kept_on_refusal(model):
        source = None  # (columns read by position: warned once all is checked; statistics set and refused: unset)
        if is_source(X, Y):
            from ..data.binding import prepare_source, source_order

            source = X
            refuse_standardize_with_a_source(standardize, source)
            refuse_a_weighted_source(model, (source, validation_data))
            seed, shuffle = source_order(source, seed, shuffle, model.seed)
            statistics = None
            if distributed:  # standardization statistics from each rank's own shard
                from ..distributed.shard import statistics_over_ranks as statistics
            validation = prepare_source(model, source, validation_data, validation_fraction, statistics)
            getattr(source, "refuse_epochs_past_its_pass", lambda epochs: None)(epochs)
        else:
            seed = model.seed if seed is None else seed_int(seed)
            # a standardized model takes raw units, in fit as in predict
            X, Y = checked_arrays(model, X, Y, standardize, rows_trained_on(validation_data, validation_fraction, seed))
            weights = sample_weights.checked_weights(sample_weight, X.shape[0])
            X, Y, validation = split_validation(model, X, Y, validation_data, validation_fraction, seed, weights)
        rows = source.rows if source is not None else X.shape[0]
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        opt = make_optimizer(optimizer, lr=lr)
        settings = FitSettings(epochs=epochs, batch_size=rows if batch_size is None else min(batch_size, rows),
                               train_rows=int(rows), seed=seed,
                               shuffle=bool(shuffle), schedule=make_schedule(schedule),
                               validation="data" if validation_data is not None else
                                          ("fraction" if validation_fraction else None),
                               validation_fraction=validation_share(validation_fraction))  # float32(0.1) as 0.1
        callbacks = order_callbacks(callbacks, verbose)
        if distributed:
            from ..distributed.training import DataParallel

            dp = DataParallel(model, X, Y, distributed=distributed, batch_size=batch_size, seed=seed, shuffle=shuffle,
                              verbose=verbose, source=source, weighted=source is None and is_weighted(model, Y))
            settings = dataclasses.replace(settings, batch_size=dp.batch_size, ranks=dp.size)
        elif source is None:
            source = ArraySource(X, Y, model.backend, seed=seed, shuffle=shuffle, weighted=is_weighted(model, Y))
        checked.give()
    with model.backend.use(), statistics_kept_before_a_step(model, opt, given), \
            weighted_rows(model, getattr(dp.source if distributed else source, "weighted", False)):
        if distributed:
            return dp.run(lambda: train(model, dp.source, opt, settings, callbacks=dp.callbacks(callbacks),
                                        validation=dp.validation(validation), hook=dp.hook,
                                        handle_interrupt=handle_interrupt))
        return train(model, source, opt, settings, callbacks=callbacks, validation=validation,
                     handle_interrupt=handle_interrupt)
