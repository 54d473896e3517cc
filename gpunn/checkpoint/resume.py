"""Resuming a run from its checkpoint (:func:`resume_run`, which ``Checkpoint.resume`` calls): the data, the
validation data, the generator that draws rows and the precision checked against the run's, then the run trained on."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings

from .. import backend as _backend
from ..checks import check_rows_match, held_warnings, positive_int, warn_read_by_position
from ..preflight import same_file
from ..rng import CPU_SHUFFLE, GPU_GENERATOR, GPU_SHUFFLE, generator, shuffler
from ..training import callbacks as cbmod
from ..training.callbacks import order_callbacks
from ..training import ensemble as ens_training
from ..training.ensemble import MemberEarlyStopping
from ..sample_weights import checked_weights
from ..training.fit import (is_weighted, not_data_parallel, refuse_a_weighted_source, refuse_weights_where_unweighted,
                            split_validation, weighted_rows, weights_trained_on)
from ..training.loop import train
from ..training.protocols import is_source
from ..training.sources import ARRAY_KINDS, ArraySource, fingerprint_matches
from ..training.state import position_words
from .callback import ModelCheckpoint
from .models import _members
from .resumed_callbacks import _callback_class, _resumed_callbacks, _run_order, _saved_key


def check_resume_precision(ckpt) -> None:
    """Refuse, before anything trains, to resume a run recorded in a precision ("tf32", "bf16") that the
    device it was loaded on cannot run: loading put its float32 weights in float32 there (right to predict
    with), and resuming would silently continue the run in another arithmetic. ``Checkpoint.resume`` and
    ``gpunn train --resume`` both call it."""
    from ..model import runnable_precision

    recorded = ckpt.meta["model"].get("precision", "float32")
    backend = ckpt.model.backend
    if runnable_precision(recorded, backend) != recorded:
        raise ValueError(f"{ckpt.path} holds a run trained in precision {recorded!r}, which runs the matrix products "
                         f"on NVIDIA tensor cores, and it was loaded on {backend.device!r}, which cannot run it (the "
                         "model loaded in float32): resume it on a CUDA GPU (load_checkpoint(path, device='cuda'), "
                         "gpunn train --resume on cuda). On the CPU its float32 weights predict, and a new fit "
                         "(model.fit) trains them further in float32, with a fresh optimizer")


def resume_run(ckpt, X, Y=None, *, epochs=None, validation_data=None, callbacks=(), verbose=True, checkpoint=True,
               handle_interrupt=True, distributed=None, sample_weight=None):
    """Continue the run saved in ``ckpt`` on (X, Y): see :meth:`Checkpoint.resume`."""
    distributed = not_data_parallel(distributed, "Checkpoint.resume")
    model, opt, state = ckpt.model, ckpt.optimizer, ckpt.state
    ensemble = _members(model) is not None
    with model.backend.use(), held_warnings() as checked:  # (columns read by position: warned once all is checked)
        with _refusals_agreed(distributed):  # (data parallel: a rank's refusal ends every rank's resume, said)
            settings, source, evaluator, shards, callbacks, other_order = _checked(
                ckpt, X, Y, epochs, validation_data, callbacks, verbose, checkpoint, sample_weight)
        ckpt._resumed = True  # the model and optimizer train on from here: Checkpoint.resume refuses a second run
        if distributed:
            from ..distributed.training import DataParallel

            dp = DataParallel(model, distributed=distributed, batch_size=None, verbose=verbose, source=source,
                              shards=shards, resuming=(ckpt.path, settings))  # the per-rank batch: the run's global one
            settings = dataclasses.replace(settings, batch_size=dp.batch_size, ranks=dp.size)
            checked.give()
            if other_order and dp.is_root:  # (a note on the run: rank 0's, once, not one a rank)
                warnings.warn(other_order, UserWarning, stacklevel=_backend.user_stacklevel())
            if not dp.is_root:  # rank 0 alone carries the saved part-epoch sum into the reduction
                state = dataclasses.replace(state, partial_sum_sq=0.0 if isinstance(state.partial_sum_sq, float)
                                            else [0.0] * len(state.partial_sum_sq))
            if ensemble:
                return ens_training.run_ensemble(model, dp.source, opt, settings, state,
                                                 callbacks=dp.callbacks(callbacks), validation=dp.validation(evaluator),
                                                 hook=dp.hook, handle_interrupt=handle_interrupt, dp=dp)
            with weighted_rows(model, getattr(dp.source, "weighted", False)):
                return dp.run(lambda: train(model, dp.source, opt, settings, state, callbacks=dp.callbacks(callbacks),
                                            validation=dp.validation(evaluator), hook=dp.hook,
                                            handle_interrupt=handle_interrupt))
        if settings.ranks != 1:  # a data-parallel run continued in one process, at its global batch
            settings = dataclasses.replace(settings, batch_size=settings.batch_size * settings.ranks, ranks=1)
        if shards:  # ... reading every rank's shard, interleaved as the ranks were
            from ..distributed.shard import ShardedSource

            source = ShardedSource(source, shards)
        checked.give()
        if other_order:
            warnings.warn(other_order, UserWarning, stacklevel=_backend.user_stacklevel())
        if ensemble:
            return ens_training.run_ensemble(model, source, opt, settings, state, callbacks=callbacks,
                                             validation=evaluator, handle_interrupt=handle_interrupt)
        with weighted_rows(model, getattr(source, "weighted", False)):
            return train(model, source, opt, settings, state, callbacks=callbacks, validation=evaluator,
                         handle_interrupt=handle_interrupt)


def _refusals_agreed(distributed):
    """Around a resume's checks: a data-parallel one's refusal on one rank told to the others
    (gpunn.distributed.training.resume_refusals_agreed); nothing for a resume in one process."""
    if not distributed:
        return contextlib.nullcontext()
    from ..distributed.training import resume_refusals_agreed

    return resume_refusals_agreed()


def _checked(ckpt, X, Y, epochs, validation_data, callbacks, verbose, checkpoint, sample_weight):
    """Every check of a resume of ``ckpt`` before it trains (each rank's own, data parallel), with what it gives:
    (settings, the epochs given; the training source; the validation evaluator or None; a chunked source's shards,
    None for arrays; the callbacks, ordered, the run's resumed; the warning of another shuffle, or None)."""
    if sample_weight is not None:
        refuse_weights_where_unweighted(ckpt.model, X, Y)
    check_resume_precision(ckpt)
    if isinstance(checkpoint, (str, bytes, os.PathLike)) and not os.fspath(checkpoint):
        # (the writer made of it refused its path as the file's "invalid saved state for ModelCheckpoint")
        raise ValueError("checkpoint='' names no file: pass the path to write the resumed run to, True (the file "
                         "loaded, the default) or False (no writer)")
    model, training = ckpt.model, ckpt.training
    settings, state = ckpt.settings, ckpt.state
    ensemble = _members(model) is not None
    if epochs is not None:
        epochs = positive_int(epochs, "epochs")
        if epochs < state.epoch or (epochs == state.epoch and state.batch):
            # it trained nothing and then wrote a checkpoint past its own end, which no load accepted again
            done = position_words(state.epoch, state.batch, settings.batches_per_epoch)
            raise ValueError(f"{ckpt.path}: the run has done {done}; epochs={epochs} ends before that (epochs is "
                             f"the run's total, not the epochs to add): pass more to train on")
        settings = dataclasses.replace(settings, epochs=epochs)
    if ensemble:  # what an ensemble's run cannot do, refused before anything runs
        if is_source(X, Y) and (training.get("source") or {}).get("kind") == "bootstrap":
            raise ValueError(f"{ckpt.path} holds a bootstrapped ensemble's run (each member its own resample of "
                             "in-memory arrays): resume it with the same X and Y")
        callbacks = ens_training.member_callbacks(callbacks, verbose)
    if settings.validation == "data" and validation_data is None:
        raise ValueError(f"{ckpt.path} was trained with validation_data; pass the same validation_data to resume")
    if settings.validation != "data" and validation_data is not None:  # it was dropped without a word
        how = (f"held out validation_fraction={settings.validation_fraction} of its rows"
               if settings.validation == "fraction" else "was given no validation_data")
        raise ValueError(f"{ckpt.path}: the run {how}; resuming it with validation_data would not use them "
                         "(the run continues as it started): resume without validation_data")
    shards = None
    if is_source(X, Y):
        refuse_a_weighted_source(model, (X, validation_data))
        source, evaluator = _resume_source(ckpt, X, validation_data if settings.validation == "data" else None)
        if ensemble:
            evaluator = ens_training.ensemble_evaluator(model, evaluator)
        # a data-parallel run on a chunked source read it as rank shards; 0: it read the source whole
        shards = (ckpt.training.get("source") or {}).get("shards", 0)
    else:
        _, _, source, evaluator = _resume_arrays(ckpt, settings, X, Y, validation_data, sample_weight)
    _check_validation(ckpt, evaluator)
    other_order = _other_shuffle(ckpt, settings, state)
    over = _over(ckpt, settings)
    callbacks = order_callbacks(_resumed_callbacks(ckpt, list(callbacks), checkpoint, over), verbose)
    if over:  # nothing trains: a writer of the file resumed would only put this call's settings in it (patience
        # 50 for the 1 that stopped the run), and the file would no longer say which run it holds
        callbacks = [cb for cb in callbacks if not _writes_to(cb, ckpt.path)]
    return settings, source, evaluator, shards, callbacks, other_order


def stopped_epochs(training: dict) -> list:
    """The saved stops of the early stopping callbacks of a checkpoint's run (``training``: its record, as
    checkpoint.read_meta gives it too), those that stopped it: EarlyStopping's epoch; MemberEarlyStopping's list, None
    for a member it did not stop."""
    order = _run_order(training)
    stops = []
    for entry in training.get("callbacks", []):
        cls = _callback_class(_saved_key(entry, order))
        if cls is None or not issubclass(cls, (cbmod.EarlyStopping, MemberEarlyStopping)):
            continue
        stopped = entry["state"].get("stopped_epoch") if isinstance(entry.get("state"), dict) else None
        if stopped is not None:
            stops.append(stopped)
    return stops


def _over(ckpt, settings) -> str | None:
    """Why the run saved in ``ckpt`` trains no more when resumed with ``settings`` (its epochs as passed), in words;
    None when it has epochs to train. A run early stopping ended stays ended (EarlyStopping's saved stop, every
    member's in an ensemble; or an ensemble's members all frozen, some stopped early and the others diverged),
    whatever the callbacks passed."""
    for stopped in stopped_epochs(ckpt.training):
        if not isinstance(stopped, list) or all(e is not None for e in stopped):
            return (f"early stopping ended the run after epoch {ckpt.state.epoch}, and this resume trains no more "
                    "(a stopped run stays stopped)")
        if len(ckpt.optimizer.frozen) == len(stopped):  # every member frozen (the others diverged): it is over too
            early = [k for k, e in enumerate(stopped) if e is not None]
            diverged = [k for k, e in enumerate(stopped) if e is None]
            return (f"early stopping ended members {early} and divergence members {diverged} by epoch "
                    f"{ckpt.state.epoch}, and this resume trains no more (a stopped run stays stopped)")
    if settings.epochs == ckpt.state.epoch and not ckpt.state.batch:
        return (f"the run has done its {position_words(ckpt.state.epoch, 0, 0, settings.epochs)}, and this resume "
                "trains no more (pass more epochs to train on by them)")
    return None


def _writes_to(cb, path) -> bool:
    """Whether callback ``cb`` is a checkpoint writer of the file ``path``."""
    return isinstance(cb, ModelCheckpoint) and same_file(cb.path, path)


def _resume_arrays(ckpt, settings, X, Y, validation_data, sample_weight=None):
    """(X, Y, source, evaluator) for resuming on in-memory (X, Y): the training rows of the same validation
    split as the run had, their source and the evaluator; an ensemble's evaluator, and its members'
    resamples drawn again from the seed when the run was bootstrapped. ``sample_weight``: the run's weights
    (gpunn.sample_weights), refused where the run had none, required where it had them."""
    model = ckpt.model
    kind = (ckpt.training.get("source") or {}).get("kind")
    if kind is not None and kind not in ARRAY_KINDS:  # in-memory arrays give other batches than its windows
        raise ValueError(f"{ckpt.path} was trained on a gpunn.data source ({kind}); in-memory arrays give other "
                         "batches (another shuffle): resume it on that source, resume(source)")
    _check_drawn_by(ckpt, ckpt.training.get("source"))  # a bootstrapped run's resamples
    warn_read_by_position(X, model.data_columns, "X", model)  # (the checkpoint's names, kept: see resume)
    X, Y = model._checked(X, Y)  # standardized copies for a model with statistics, as fit trains on
    check_rows_match(X, Y)
    given = X.shape[0]
    weights = checked_weights(sample_weight, given)
    validation_data = validation_data if settings.validation == "data" else None
    X, Y, evaluator = split_validation(model, X, Y, validation_data, settings.validation_fraction, settings.seed,
                                       weights)
    if X.shape[0] != settings.train_rows:  # (it said "the checkpoint trained on 16200 rows; these data give 16195" of
        fraction = settings.validation_fraction  # an X of 17995 rows: the count after the split, unexplained)
        split = f" (those validation_fraction={fraction:g} left of X)" if settings.validation == "fraction" else ""
        after = f", {X.shape[0]:,} after that split" if split else ""
        raise ValueError(f"{ckpt.path} trained on {settings.train_rows:,} rows{split}; these X and Y have {given:,}"
                         f"{after}. Resume with the same X and Y.")
    saved = ckpt.training.get("source") or {}
    weighted = is_weighted(model, Y)
    if weighted != bool(saved.get("sample_weight")):
        if weighted:
            raise ValueError(f"{ckpt.path} was trained without sample_weight (or with weights all equal, which weigh "
                             "nothing); these weights would train another run: resume without sample_weight")
        raise ValueError(f"{ckpt.path} was trained with sample_weight: pass the same weights to resume, "
                         f"resume(X, Y, sample_weight=w){' (these are all equal)' if weights is not None else ''}")
    if _members(model) is None:
        source = ArraySource(X, Y, model.backend, seed=settings.seed, shuffle=settings.shuffle, weighted=weighted)
    else:
        source = ens_training.ensemble_source(  # (a bootstrap's resamples weighed by their rows' weights)
            model, X, Y, seed=settings.seed, shuffle=settings.shuffle, bootstrap=saved.get("kind") == "bootstrap",
            weights=weights_trained_on(weights, validation_data, settings.validation_fraction, settings.seed))
        if evaluator is not None:
            evaluator = ens_training.ensemble_evaluator(model, evaluator)
    # a run saved before the fingerprint existed (a data-parallel one before ShardedArraySource recorded it) has
    # none: rows are all it checks
    if "fingerprint" in saved and not fingerprint_matches(saved, lambda: source.config()["fingerprint"], model.xp,
                                                          X, Y, where=ckpt.path):
        data = "X, Y and sample_weight" if weighted else "X and Y"
        raise ValueError(f"{ckpt.path} trained on other values: these {data} have its {X.shape[0]} training rows "
                         "but not its data (a checksum differs; rows or columns in another order count as other "
                         f"data). Resume with the same {data}, in the same order.{_drawn_elsewhere(ckpt)}")
    return X, Y, source, evaluator


def _drawn_elsewhere(ckpt) -> str:
    """What to say to a resume on other values where the run trained on the other kind of device: rows drawn again
    by gpunn.datasets.make there (a GPU script run again on a laptop) are not the run's, for the same seed."""
    trained_on = str(ckpt.meta.get("device", "cpu"))
    if trained_on.startswith("cuda") == ckpt.model.backend.is_gpu:
        return ""
    here = "a GPU" if ckpt.model.backend.is_gpu else "the CPU"
    return (f" It trained on {trained_on}, and gpunn.datasets.make draws other rows on {here} for the same seed: "
            f"rows made again here are not its rows; save the run's X and Y where they were made (numpy.save) and "
            "resume on those.")


def _resume_source(ckpt, source, validation_data):
    """(source, evaluator) for resuming on a gpunn.data source: it must describe the data the run was
    saved with (its config, paths aside), and it takes the checkpoint's standardization statistics."""
    from ..data.binding import prepare_source

    saved = ckpt.training.get("source") or {}
    if saved.get("kind") in ARRAY_KINDS:
        raise ValueError(f"{ckpt.path} was trained on in-memory arrays; a gpunn.data source gives other batches (its "
                         "own windows and shuffle): resume it with the same X and Y, resume(X, Y)")
    if hasattr(source, "follow_saved_cut"):  # a synthetic source cut by default: into the pieces the run was cut into
        source.follow_saved_cut(saved)
    now = source.config()
    differ = _config_differences(saved, now, ignored=("shards",))  # (how data-parallel ranks split it:
    read = source_files(saved)  # (the resume follows the checkpoint)
    read = f" (the run read {_and_listed(read)})" if read else ""
    if differ:
        raise ValueError(f"{ckpt.path} was trained on another source: {differ}. Resume with the same data{read}.")
    if _other_contents(saved, now):
        thing, _, it, _ = _said_of(now)
        back = f"{thing} as the run read {it}" if _same_files(saved, now) else f"the run's {thing[4:]}{read}"
        raise ValueError(f"{ckpt.path} was trained on other values: {_contents_differ(saved, now)}. Resume with "
                         f"{back}; to train its model on these, train the model gpunn.load(path) returns further (a "
                         "new run, with a new optimizer)")
    _check_drawn_by(ckpt, saved)
    if hasattr(source, "standardizer"):
        source.standardizer = ckpt.model.standardizer  # exactly the statistics training used
    return source, prepare_source(ckpt.model, source, validation_data)


# the sources whose values a generator draws (gpunn.rng.generator, which their config records as "rng"): a synthetic
# source's rows, a bootstrapped ensemble's resamples of the rows
_DRAWN = {"synthetic": ("a synthetic source's rows", "rows"),
          "bootstrap": ("its members' bootstrap resamples", "resamples")}
_CPU_BEFORE_THE_RECORD = "numpy PCG64"  # default_rng's bit generator (NumPy >= 1.17), gpunn's on the CPU from its start
_GENERATOR_WORDS = {GPU_GENERATOR: "gpunn's Philox4x32-10 on a GPU", _CPU_BEFORE_THE_RECORD: "NumPy's PCG64 on the CPU"}


def _check_drawn_by(ckpt, saved, validation=False) -> None:
    """Refuse to resume a run whose source draws its values (_DRAWN) where they would be drawn by another generator
    than the run's: the run would go on with other rows, and no run would reproduce it. The generator a file records
    (the source's "rng"), else what drew them when files did not record it: NumPy's PCG64 on the CPU, as now (those
    runs resume exactly); cuRAND on a GPU, whose draws this gpunn cannot make again (its own Philox4x32-10 draws other
    rows for a seed)."""
    saved = saved or {}
    if saved.get("kind") not in _DRAWN:
        return
    what, noun = _DRAWN[saved["kind"]]
    if validation:
        what, noun = "validation rows (a synthetic source's)", "rows"
    backend = ckpt.model.backend
    now = generator(backend)
    was = saved.get("rng")
    if was is None and not str(ckpt.meta.get("device", "cpu")).startswith("cuda"):
        was = _CPU_BEFORE_THE_RECORD
    if was == now:
        return
    if was is None:
        raise ValueError(
            f"{ckpt.path} was trained on {what} drawn on a GPU by cuRAND, as gpunn drew them before its own "
            f"Philox4x32-10 generator, which draws other {noun} for the same seed (CHANGELOG: \"On a GPU, a seed draws "
            f"other rows\"); this gpunn cannot draw the run's {noun} again, and resumed on other {noun} the run would "
            "be one that no run reproduces. Resume it with the gpunn that wrote it, or run it again from the start; to "
            "keep its weights, train the model gpunn.load(path) returns further (a new run, with a new optimizer)")
    on = (_on_a_gpu() if was == GPU_GENERATOR else
          "the CPU: gpunn.load_checkpoint(path, device='cpu')" if was == _CPU_BEFORE_THE_RECORD else
          "the gpunn that wrote it")
    raise ValueError(f"{ckpt.path} was trained on {what} drawn by {_GENERATOR_WORDS.get(was, repr(was))}, and on "
                     f"{backend.device} they are drawn by {_GENERATOR_WORDS.get(now, repr(now))}: other {noun}, not the "
                     f"run's. Resume it on {on}")


def _on_a_gpu() -> str:
    """Where a GPU's run resumes: load_checkpoint(path, device='cuda'), or where this machine has no GPU (a laptop,
    which that load refuses, "Use device 'cpu' or 'auto'"), a machine with one, and what this one can do."""
    missing = _backend.probe_cuda()[2]
    if not missing:
        return "a GPU: gpunn.load_checkpoint(path, device='cuda')"
    return (f"a machine with a GPU ({missing}); on this one, the loaded model predicts (ckpt.model), and "
            "ckpt.model.fit(...) trains it on as a new run")


_SHUFFLE_WORDS = {CPU_SHUFFLE: "NumPy's permutation on the CPU", GPU_SHUFFLE: "gpunn's hash permutation on a GPU"}


def _other_shuffle(ckpt, settings, state) -> str | None:
    """The warning where a shuffled run stopped part-way through an epoch is resumed where another permutation orders
    the rows (gpunn.rng.shuffler: the CPU's and the GPU's differ for the same seed and epoch): the rest of that epoch
    is the other order's batches, some of its rows trained twice and others not at all; else None. Warned (by rank 0
    alone in a data-parallel resume), not refused, as the rows are the run's (other rows drawn are refused:
    _check_drawn_by); at an epoch's end nothing is said, as the next epochs' other shuffles are as good, and the
    arithmetic differs between devices anyway. What ordered them is the file's "shuffled_by", else (a file from
    before the record) what orders them on the device it names."""
    if not settings.shuffle or not state.batch:
        return None
    was = ckpt.training.get("shuffled_by")
    if was is None:
        was = GPU_SHUFFLE if str(ckpt.meta.get("device", "cpu")).startswith("cuda") else CPU_SHUFFLE
    backend = ckpt.model.backend
    now = shuffler(backend)
    if was == now:
        return None
    on = ("a GPU: gpunn.load_checkpoint(path, device='cuda')" if was == GPU_SHUFFLE else
          "the CPU: gpunn.load_checkpoint(path, device='cpu')" if was == CPU_SHUFFLE else "the gpunn that wrote it")
    return (f"{ckpt.path} stopped part-way through epoch {state.epoch + 1} (after {state.batch} of its "
            f"{settings.batches_per_epoch} batches), whose rows {_SHUFFLE_WORDS.get(was, repr(was))} ordered, "
            f"and on {backend.device} {_SHUFFLE_WORDS.get(now, repr(now))} orders them: the rest of that epoch "
            "is another order's batches, some of its rows trained twice and others not at all (later epochs are "
            f"whole). For the run's order, resume it on {on}")


# a file source's sampled checksum of its files (gpunn.data.contents): compared apart from the config, as files from
# before it was recorded lack it
_CONTENTS = ("contents", "contents_rule")


def _other_contents(saved: dict, now: dict) -> bool:
    """Whether a file source's files hold other values than the run's: both checksums recorded by the same rule,
    and different."""
    if "contents" not in saved or "contents" not in now or saved.get("contents_rule") != now.get("contents_rule"):
        return False
    return saved["contents"] != now["contents"]


def source_files(config: dict) -> list:
    """The files a source's config names: an .npy pair's two (and its weights' file), a table's file or directory, none for a synthetic
    source (the paths as recorded: absolute, see gpunn.cli.data.make_source)."""
    return [config[k] for k in _FILE_KEYS if config.get(k)]


_FILE_KEYS = ("path", "x_path", "y_path", "w_path")


def _and_listed(files) -> str:
    """Files in a sentence: "X.npy and Y.npy"; three (an .npy pair and its weights) "X.npy, Y.npy and w.npy"."""
    files = [str(f) for f in files]
    return files[0] if len(files) == 1 else f"{', '.join(files[:-1])} and {files[-1]}"


def _same_files(saved: dict, now: dict) -> bool:
    return source_files(saved) == source_files(now)


def _contents_differ(saved: dict, now: dict) -> str:
    """How the files differ from the run's: changed where the run read them, others of its shape, or, where some are
    the run's own paths, which are not (the checksum is one over all of them: it cannot say which file differs)."""
    _, has, it, sampled = _said_of(now)
    named = _and_listed(source_files(now))
    if _same_files(saved, now):
        return f"{named} {has} changed since the run read {it} ({sampled} differs)"
    pairs = [(saved[k], now[k]) for k in _FILE_KEYS if saved.get(k) and now.get(k)]
    own = [path for was, path in pairs if was == path]
    if own:
        others = " and ".join(f"{path} is not the run's {was}" for was, path in pairs if was != path)
        return (f"{_and_listed(own)} {'is' if len(own) == 1 else 'are'} the run's, but {others}; over all of them, "
                f"{sampled} differs")
    return f"{named} {has} the run's shape but not its values ({sampled} differs)"


def _said_of(config: dict) -> tuple:
    """How a file source's files are named in a sentence: an .npy pair's in the plural, a table's file or directory
    in the singular (a CSV file was said "t.csv have changed since the run read them")."""
    files = source_files(config)
    if len(files) > 1:
        return "the files", "have", "them", "a checksum of their sizes and of bytes sampled through them"
    if os.path.isdir(files[0]):
        return ("the directory", "has", "it", "a checksum of its files' sizes and of bytes sampled through them")
    return "the file", "has", "it", "a checksum of its size and of bytes sampled through it"


def _config_differences(saved: dict, now: dict, ignored=()) -> str:
    """How two sources' configs differ ("seed was 4, now 5; ..."), or "" when they describe the same data;
    paths aside (the same files may be read from another place) and the keys ``ignored``."""
    from ..datasets import CHUNK_ROWS

    moved = ("path", "x_path", "y_path", "w_path", "rng") + _CONTENTS  # ("rng": _check_drawn_by's, which knows what a file
    # without it drew; the contents: _other_contents's)
    # a synthetic source records chunk_rows only when it is not make's 65,536 (as every run before pieces)
    unrecorded = {"chunk_rows": CHUNK_ROWS} if now.get("kind") == "synthetic" else {}

    def value(config, k):
        return config.get(k, unrecorded.get(k))

    differ = sorted(k for k in set(saved) | set(now) if k not in moved + tuple(ignored) and value(saved, k) != value(now, k))
    return "; ".join(f"{k} was {value(saved, k)!r}, now {value(now, k)!r}" for k in differ)


def _check_held_out(ckpt, evaluator) -> None:
    """Refuse in-memory arrays whose rows validation_fraction holds out are not the run's, though its training rows
    are (_resume_arrays compared those): val_loss would go on on other rows. The held-out rows' count and checksum
    (with their weights, a weighted run's), as validation_data's; a checkpoint from before they were recorded, or a
    source's (whose config and files' checksum cover its held-out chunks), has none to compare."""
    saved = ckpt.training.get("held_out")
    describe = getattr(evaluator, "describe", None)
    now = describe() if saved is not None and describe is not None else None
    if now is None or (saved["rows"] == now["rows"] and saved.get("sample_weight") == now.get("sample_weight")
                       and fingerprint_matches(saved, lambda: now["fingerprint"], ckpt.model.xp, evaluator.X,
                                               evaluator.Y, where=ckpt.path)):
        return
    weighted = (ckpt.training.get("source") or {}).get("sample_weight")
    data, values = ("X, Y and sample_weight", "targets, features or weights") if weighted else ("X and Y",
                                                                                                "targets or features")
    raise ValueError(f"{ckpt.path} held out other rows: the held-out rows (validation_fraction="
                     f"{ckpt.settings.validation_fraction:g}'s {saved['rows']:,}) of these {data} are not the run's, "
                     f"though its training rows are (a checksum differs: other {values} there). The validation "
                     "metrics, and the early stopping, plateaus and best weights that follow them, would go on on "
                     f"other rows. Resume with the same {data}, in the same order.")


# what a validation source's scores do not depend on: it is read whole, chunk by chunk in file order, scaled by the
# training statistics (and a file's seed only shuffles; a synthetic source's draws its rows)
_VALIDATION_SOURCE_FREE = ("shards", "shuffle", "window", "validation_fraction", "standardize")


def _check_validation(ckpt, evaluator) -> None:
    """Refuse validation data other than the run's (early stopping, plateaus and the best weights follow
    them): arrays by row count and checksum, a validation source by its config; the rows validation_fraction held
    out of in-memory arrays by :func:`_check_held_out`. A checkpoint from before this was recorded (or without
    validation_data) has nothing to compare."""
    if ckpt.settings.validation == "fraction":
        _check_held_out(ckpt, evaluator)
        return
    saved = ckpt.training.get("validation_data")
    describe = getattr(evaluator, "describe", None)
    now = describe() if saved is not None and describe is not None else None
    if now is None:
        return
    fix = "Resume with the same validation_data."
    if saved.get("kind") == "arrays" or now.get("kind") == "arrays":
        if saved.get("kind") != now.get("kind"):
            raise ValueError(f"{ckpt.path} was validated on {'arrays' if saved.get('kind') == 'arrays' else 'a source'}, "
                             f"and validation_data is {'arrays' if now.get('kind') == 'arrays' else 'a source'} now. {fix}")
        if saved["rows"] != now["rows"]:
            raise ValueError(f"{ckpt.path} was validated on {saved['rows']} rows; this validation_data has "
                             f"{now['rows']}. {fix}")
        if bool(saved.get("sample_weight")) != bool(now.get("sample_weight")):  # (gpunn.sample_weights)
            if saved.get("sample_weight"):
                raise ValueError(f"{ckpt.path} was validated with weights, validation_data's third item: resume with "
                                 "the same (X_val, Y_val, w_val)")
            raise ValueError(f"{ckpt.path} was validated without weights (or with weights all equal); these would "
                             "validate another run: resume with (X_val, Y_val)")
        if not fingerprint_matches(saved, lambda: now["fingerprint"], ckpt.model.xp, evaluator.X, evaluator.Y,
                                   where=ckpt.path):
            raise ValueError(f"{ckpt.path} was validated on other values: this validation_data has its {now['rows']} "
                             f"rows but not its data (a checksum differs; rows or columns in another order count "
                             f"as other data). {fix}")
        return
    free = _VALIDATION_SOURCE_FREE + (() if now.get("kind") == "synthetic" else ("seed",))
    differ = _config_differences(saved, now, ignored=free)
    if differ:
        raise ValueError(f"{ckpt.path} was validated on another source: {differ}. {fix}")
    if _other_contents(saved, now):
        raise ValueError(f"{ckpt.path} was validated on other values: {_contents_differ(saved, now)}. {fix}")
    _check_drawn_by(ckpt, saved, validation=True)
