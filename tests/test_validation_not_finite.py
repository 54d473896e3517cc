"""A validation metric that is NaN or infinite is never a result: the fit stops at the epoch that met it, before the
callbacks see it (gpunn.training.loop.Trainer.check_validation, from the logs already read: no read of its own).
A validation value far outside the training rows' range (3e38, which a float32 model takes, and which a spread near
1 leaves finite once standardized) makes the model's output overflow: ValidationNotFinite, where the fit, and
``gpunn train`` with status 0, reported val_loss=inf. Weights that became NaN or infinite in an epoch's last steps
(its training loss, each batch's taken before its step, cannot show them): TrainingDiverged; an ensemble's member
diverged so is frozen, as by its training loss."""
import re
import warnings

import numpy
import pytest

import gpunn
from gpunn.cli import main

HUGE = 3e38  # finite in float32


def rows(dtype="float32"):
    """(X, Y, X_val, Y_val): 40 training rows of a linear target, 10 validation rows whose row 3 holds HUGE."""
    X, Y = gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", dtype=dtype, seed=1)
    X, Y = numpy.asarray(X), numpy.asarray(Y)
    X_val = X[40:].copy()
    X_val[3] = HUGE
    return X[:40], Y[:40], X_val, Y[40:]


class Seen(gpunn.Callback):
    """The epochs whose end the callbacks saw, with their val_loss."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append((epoch, logs.get("val_loss")))


REFUSAL = (r"validation metrics became NaN or infinite in epoch 1 \((?P<metrics>[^)]*)\) while the training loss "
           r"\((?P<losses>[^)]*)\) and the weights stayed finite: the model's output overflows float32 on validation "
           r"rows(?: \((?P<where>[^)]*)\))?\. A validation value far outside the training rows' range does that "
           r"\(find the rows where predict\(X\) is not finite, and clean them\), or weights grown huge in the epoch's "
           r"last steps \(lower the learning rate\)")


@pytest.mark.parametrize("members", [None, 2], ids=["mlp", "ensemble"])
def test_a_validation_value_the_models_output_overflows_on_stops_the_fit_before_the_callbacks_see_it(
        tmp_path, device, members):
    """The fit went on with val_loss=inf, val_r2=-inf: EarlyStopping saw no improvement and stopped with no best
    epoch to restore, a checkpoint was written of the epoch, and nothing said why."""
    X, Y, X_val, Y_val = rows()
    model = (gpunn.MLP([3, 8, 1], device=device, seed=0) if members is None else
             gpunn.Ensemble([3, 8, 1], n_models=members, device=device, seed=0))
    seen, path = Seen(), tmp_path / "run.npz"
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        model.fit(X, Y, epochs=3, batch_size=8, validation_data=(X_val, Y_val), verbose=False,
                  callbacks=[seen, gpunn.EarlyStopping(patience=1), gpunn.ModelCheckpoint(str(path))])
    said, first = str(caught.value), "1 value, the first at row 3 of X_val, column 0"
    if members is None:
        found = re.fullmatch(REFUSAL, said)
        assert found and found["metrics"] == "val_loss inf, val_mse inf, val_mae inf, val_r2 -inf", said
        assert found["where"] == first
    else:
        found = re.fullmatch(r"members \[0, 1\]: their " + REFUSAL, said)
        assert found and found["metrics"].startswith("val_loss [inf, inf]"), said
        assert found["where"] == f"members [0, 1]: {first}"  # said once for the members it is the same for
    assert seen.seen == [] and not path.exists()
    assert isinstance(caught.value, FloatingPointError)  # as TrainingDiverged: what an overflow raises


def test_gpunn_train_refuses_a_held_out_value_that_stays_finite_standardized_in_one_line(tmp_path, capsys):
    """3e38 in a held-out chunk of a column whose spread is about 1.4: standardized (by the training chunks'
    statistics) it is 2e38, finite in float32, which the model's output overflows on. gpunn train printed
    "held-out (standardized targets): mse inf  mae inf  r2 -inf" and exited 0."""
    from gpunn import data
    from gpunn.cli.data import VALIDATION_FRACTION

    n = 400
    X = numpy.column_stack([numpy.linspace(-1.7, 1.7, n), 2 * numpy.cos(numpy.arange(n))]).astype(numpy.float32)
    Y = (X[:, :1] - X[:, 1:]).astype(numpy.float32)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    held = data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), seed=0)
    held.hold_out(VALIDATION_FRACTION)  # as gpunn train holds chunks out
    row = sum(held.chunk_sizes[:list(held.validation_chunks)[0]]) + 2
    X[row] = HUGE
    numpy.save(tmp_path / "X.npy", X)
    status = main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--hidden", "8",
                   "--epochs", "1", "--device", "cpu", "--quiet", "--standardize", "--seed", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    found = re.fullmatch("gpunn train: error: " + REFUSAL, err[-1])
    assert status == 2 and found and found["where"] == f"1 value, the first at row {row} of {tmp_path / 'X.npy'}, " \
                                                       "column 0", err  # (it named none for a source's rows)


def _validation_source(kind, tmp_path, X, Y):
    """(a gpunn.data source of X, Y in 3-row chunks or pieces, the file that holds row r and r's place in it, for
    ``kind``): an .npy pair (rows of the file), a CSV file (lines, after the header) or a directory of two Parquet
    files of 5 rows each (rows counted within their file)."""
    from gpunn import data

    if kind == "npy":
        numpy.save(tmp_path / "Xv.npy", X)
        numpy.save(tmp_path / "Yv.npy", Y)
        return data.npy(str(tmp_path / "Xv.npy"), str(tmp_path / "Yv.npy"), chunk_rows=3), \
            lambda r: f"row {r} of {tmp_path / 'Xv.npy'}"
    columns = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y[:, 0]}
    if kind == "csv":
        lines = ["a,b,c,y"] + [",".join(repr(float(v)) for v in row) for row in zip(*columns.values())]
        (tmp_path / "v.csv").write_text("\n".join(lines) + "\n")
        return data.csv(str(tmp_path / "v.csv"), "y", block_size=80), lambda r: f"line {r + 2} of {tmp_path / 'v.csv'}"
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "v").mkdir()
    for i, name in enumerate(("a.parquet", "b.parquet")):
        pq.write_table(pa.table({k: v[5 * i:5 * i + 5] for k, v in columns.items()}), tmp_path / "v" / name,
                       row_group_size=5)
    return data.parquet(str(tmp_path / "v"), "y", chunk_rows=3), \
        lambda r: f"row {r % 5} of {tmp_path / 'v' / ('a.parquet', 'b.parquet')[r // 5]}"


@pytest.mark.parametrize("bad", [7, 5], ids=["in a chunk", "a second file's first"])
@pytest.mark.parametrize("members", [None, 2], ids=["mlp", "ensemble"])
@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
def test_the_refusal_names_the_first_row_of_a_validation_source_as_the_source_names_its_rows(tmp_path, kind,
                                                                                            members, bad):
    """A validation source's rows (validation_data=a gpunn.data source, read chunk by chunk): ValidationNotFinite
    named no row (a second streamed pass was left out), so the user had to search the file for the 3e38. It names
    the first value's row as the source's own errors name a row now (the chunk's first row plus the row in it: an
    .npy file's row, a CSV file's line, a Parquet file and its row), from a second pass on that path only; a table's
    column by the target's name, as its own errors name a column (an .npy file's by index)."""
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    from gpunn import data

    X, Y, X_val, Y_val = rows()
    X_val[3] = 1.0
    X_val[bad] = HUGE  # 7: in the third chunk (or the second Parquet file), past the first chunks' rows; 5: the
    # second Parquet file's row 0, a chunk's first row (audit38b m36: the row past a chunk's last named in that chunk)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    validation, row_words = _validation_source(kind, tmp_path, X_val, Y_val)
    assert len(validation.chunk_sizes) > 2
    model = (gpunn.MLP([3, 8, 1], device="cpu", seed=0) if members is None else
             gpunn.Ensemble([3, 8, 1], n_models=members, device="cpu", seed=0))
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        model.fit(data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=8), epochs=2, batch_size=8,
                  validation_data=validation, verbose=False)
    who = "" if members is None else r"members \[0, 1\]: their "
    where = re.fullmatch(who + REFUSAL, str(caught.value))["where"]
    column = "column 0" if kind == "npy" else "column 'y'"  # a table's target by its name (it said "column 0")
    assert where == ("" if members is None else "members [0, 1]: ") + f"1 value, the first at {row_words(bad)}, {column}"


class _Windows:
    """A validation source of your own, not a chunked one: the DataSource protocol and ordered_windows (what fit asks
    of a validation_data source), the rows in windows of 4."""

    resumable, validation_rows = False, 0

    def __init__(self, X, Y):
        self.X, self.Y = X, Y
        self.rows, self.n_features, self.n_outputs = X.shape[0], X.shape[1], Y.shape[1]

    def bind(self, backend, dtype):
        return self

    def batches(self, epoch, batch_size, first_batch=0):
        yield self.X, self.Y

    def ordered_windows(self):
        for start in range(0, self.rows, 4):
            yield self.X[start:start + 4], self.Y[start:start + 4]

    def config(self):
        return {"kind": "windows of 4"}


def test_a_validation_source_without_chunks_names_its_row_in_the_order_read():
    """A validation source that is not a chunked gpunn.data source has no file rows to name: the refusal names the
    value's place among the validation rows as the windows gave them (metrics.source_row_words, chunks None)."""
    X, Y, X_val, Y_val = rows()
    X_val[3] = 1.0
    X_val[7] = HUGE  # in the second window
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        gpunn.MLP([3, 8, 1], device="cpu", seed=0).fit(gpunn.data.iterable([(X, Y)]), epochs=2, batch_size=8,
                                                        verbose=False, validation_data=_Windows(X_val, Y_val))
    where = re.fullmatch(REFUSAL, str(caught.value))["where"]
    assert where == "1 value, the first at row 7 of the validation rows as read, column 0"  # (untested before;
    # it said "validation row 7 (in the order read)", parentheses inside the place's own)


def test_the_refusal_names_the_first_held_out_row_by_its_chunk_in_the_source(tmp_path):
    """A source's held-out chunks are whole chunks drawn from the file, not its first rows: the row named is the
    chunk's first row in the file plus the row in it, not the value's place among the rows held out."""
    from gpunn import data

    X, Y = (numpy.asarray(A) for A in gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", seed=1))
    numpy.save(tmp_path / "Y.npy", Y)

    def source():
        numpy.save(tmp_path / "X.npy", X)
        return data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=5, validation_fraction=0.3,
                        seed=1)

    held = list(source().validation_chunks)
    assert held[0] > 0 and held[1] - held[0] > 1  # not the file's first rows, and apart
    row = 5 * held[1] + 2  # in the second chunk held out
    X[row] = HUGE
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        gpunn.MLP([3, 8, 1], device="cpu", seed=0).fit(source(), epochs=2, batch_size=8, verbose=False)
    where = re.fullmatch(REFUSAL, str(caught.value))["where"]
    assert where == f"1 value, the first at row {row} of {tmp_path / 'X.npy'}, column 0"


@pytest.mark.parametrize("members", [None, 2], ids=["mlp", "ensemble"])
def test_the_refusal_names_the_first_validation_row_the_output_overflows_on_as_a_row_of_x(members):
    """ValidationNotFinite named the epoch and the metrics but no row: with validation_fraction, the held-out rows are
    a random draw from X, so the user could not find the 3e38 the output overflows on. It names how many output
    values are not finite and the first one's row of X (and column) now, from one more pass over the rows."""
    from gpunn.rng import host_rng

    X, Y, _, _ = rows()
    held = numpy.sort(host_rng(0, "validation").permutation(40)[:8])  # fit's split of 40 rows, validation_fraction 0.2
    X[held[5]], X[held[2]] = HUGE, -HUGE
    model = (gpunn.MLP([3, 8, 1], device="cpu", seed=0) if members is None else
             gpunn.Ensemble([3, 8, 1], n_models=members, device="cpu", seed=0))
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        model.fit(X, Y, epochs=2, batch_size=8, validation_fraction=0.2, seed=0, verbose=False)
    who = "" if members is None else r"members \[0, 1\]: their "
    where, first = re.fullmatch(who + REFUSAL, str(caught.value))["where"], f"the first at row {held[2]} of X, column 0"
    other = f"1 value, the first at row {held[5]} of X, column 0"  # (member 1's output on -3e38 stays finite)
    assert where == (f"2 values, {first}" if members is None else f"member 0: 2 values, {first}; member 1: {other}")


@pytest.mark.parametrize("lr", [1e308, 1e307], ids=["weights not finite", "weights huge"])
def test_an_ensemble_member_whose_validation_alone_is_not_finite_diverged_and_is_frozen(lr):
    """Member 0's one step of the epoch (the whole batch) takes its weights past float64 (1e308) or so far that its
    outputs overflow (1e307); its training loss, taken before the step, is finite. Member 1 scores the rows finitely.
    Member 0 ended the fit with NaN or huge weights, not listed as diverged, its val_loss inf."""
    X, Y, _, _ = rows("float64")
    model = gpunn.Ensemble([3, 8, 1], n_models=2, dtype="float64", device="cpu", seed=0)
    with pytest.warns(RuntimeWarning, match=r"^members \[0\] diverged in epoch 1 \((weights NaN or infinite in its "
                                            r"last steps|validation metrics NaN or infinite, where the others' are "
                                            r"finite)\) and are frozen; the others go on$"):
        history = model.fit(X, Y, epochs=2, batch_size=40, optimizer="sgd", lr=[lr, 1e-3], validation_data=(X, Y),
                            verbose=False)
    assert history.diverged == [0] and model.diverged == [0] and history["epoch"] == [1, 2]
    assert not numpy.isfinite(history["val_loss"][0][0]) and numpy.isfinite(history["val_loss"][1][1])


def test_one_models_weights_that_became_nan_in_the_epochs_last_step_are_divergence(tmp_path):
    """One step (the whole batch) takes the weights past float64: the epoch's training loss is finite, the validation
    NaN. TrainingDiverged, and EarlyStopping puts back the best epoch's weights (the first), as for a diverged loss."""
    X, Y, _, _ = rows("float64")
    model = gpunn.MLP([3, 8, 1], dtype="float64", device="cpu", seed=0)

    class Blow(gpunn.Callback):  # epoch 2 with a rate that takes the weights past float64
        def on_epoch_begin(self, trainer, epoch):
            trainer.optimizer.lr = 1e-3 if epoch == 0 else 1e308

    with pytest.raises(gpunn.TrainingDiverged, match=r"^the weights became NaN or infinite in the last steps of epoch "
                                                     r"2 \(learning rate 1e\+308; its validation loss is nan\); lower "
                                                     r"the learning rate"):
        model.fit(X, Y, epochs=3, batch_size=40, optimizer="sgd", validation_data=(X, Y), verbose=False,
                  callbacks=[Blow(), gpunn.EarlyStopping(patience=5)])
    assert numpy.isfinite(model.params).all()


def test_two_ranks_on_the_stand_ins_gpus_both_refuse_a_validation_value_the_output_overflows_on(
        fake_cupy, monkeypatch):
    """Data parallel, each rank validates its share of the rows (rank 1: the one holding 3e38) and the sums are added
    over the ranks: every rank holds the same logs and raises the same refusal; nobody ends the job."""
    from thread_ranks import run_ranks

    X, Y, X_val, Y_val = rows()
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: gpunn.MLP([3, 8, 1], device=f"cuda:{rank}", seed=0).fit(
        X, Y, epochs=2, batch_size=4, validation_data=(X_val, Y_val), verbose=False, distributed=True))
    assert [type(raised) for _, raised in outcomes] == [gpunn.ValidationNotFinite] * 2, outcomes
    assert str(outcomes[0][1]) == str(outcomes[1][1]) and aborted == []


@pytest.mark.parametrize("kind, members", [("fraction", None), ("fraction", 2), ("held-out chunks", None)],
                         ids=["rows-mlp", "rows-ensemble", "chunks-mlp"])
def test_two_ranks_name_the_first_row_as_one_process_does_where_it_is_another_ranks(
        fake_cupy, monkeypatch, tmp_path, kind, members):
    """Data parallel, each rank validates its share of the rows (in-memory rows split by rows, a source's held-out
    chunks by chunks): the refusal named no row, since the ranks must raise the same words. Each rank names its
    first value's row in the user's order now (its share's offset: X's row for a validation_fraction, the file's
    row for a chunk), the ranks' are gathered, and every rank says rank 1's row, as one process does."""
    from thread_ranks import run_ranks

    from gpunn import data
    from gpunn.rng import host_rng

    X, Y = (numpy.asarray(A) for A in gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", seed=1))
    numpy.save(tmp_path / "Y.npy", Y)
    if kind == "fraction":
        held = numpy.sort(host_rng(0, "validation").permutation(50)[:10])  # fit's split: rank 1 validates 5 to 9
        row = int(held[7])
    else:
        row = 5 * 8 + 2  # chunks of 5 rows, seed 1 holds out [3, 5, 8]: rank 0 validates chunk 3, rank 1 5 and 8
    X[row] = HUGE
    numpy.save(tmp_path / "X.npy", X)

    def fit(device, distributed):
        model = (gpunn.MLP([3, 8, 1], device=device, seed=0) if members is None else
                 gpunn.Ensemble([3, 8, 1], n_models=members, device=device, seed=0))
        if kind == "fraction":
            return model.fit(X, Y, epochs=2, batch_size=4, validation_fraction=0.2, seed=0, verbose=False,
                             distributed=distributed)
        source = data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=5, validation_fraction=0.3,
                          seed=1)
        assert list(source.validation_chunks) == [3, 5, 8]
        return model.fit(source, epochs=2, batch_size=4, verbose=False, distributed=distributed)

    with pytest.raises(gpunn.ValidationNotFinite) as alone:
        fit("cpu", False)
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: fit(f"cuda:{rank}", True))
    assert [type(raised) for _, raised in outcomes] == [gpunn.ValidationNotFinite] * 2 and aborted == [], outcomes
    who = "" if members is None else r"members \[0, 1\]: their "
    where = [re.fullmatch(who + REFUSAL, str(raised))["where"] for _, raised in outcomes]
    said = f"1 value, the first at row {row} of {'X' if kind == 'fraction' else tmp_path / 'X.npy'}, column 0"
    assert where == [re.fullmatch(who + REFUSAL, str(alone.value))["where"]] * 2, where
    assert where[0] == (said if members is None else f"members [0, 1]: {said}")


def test_two_ranks_name_a_tables_target_column_by_its_name_as_one_process_does(fake_cupy, monkeypatch, tmp_path):
    """Data parallel over a CSV validation source's chunks: each rank names the first value's column before the ranks'
    places are gathered, by the target's name as one process does (it said "column 0")."""
    from thread_ranks import run_ranks

    X, Y, X_val, Y_val = rows()
    X_val[3] = 1.0
    X_val[7] = HUGE  # rank 1's chunks
    from gpunn import data

    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    _, row_words = _validation_source("csv", tmp_path, X_val, Y_val)  # (each rank reads v.csv with its own source)
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: gpunn.MLP([3, 8, 1], device=f"cuda:{rank}", seed=0).fit(
        data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=8), epochs=2, batch_size=4,
        validation_data=data.csv(str(tmp_path / "v.csv"), "y", block_size=80), verbose=False, distributed=True))
    assert [type(raised) for _, raised in outcomes] == [gpunn.ValidationNotFinite] * 2 and aborted == [], outcomes
    where = [re.fullmatch(REFUSAL, str(raised))["where"] for _, raised in outcomes]
    assert where == [f"1 value, the first at {row_words(7)}, column 'y'"] * 2, where


def test_a_score_one_rank_refuses_in_a_callback_ends_the_job_as_any_one_rank_error(fake_cupy, monkeypatch):
    """A rank_zero_only callback of the user's that scores held-out rows its output overflows on: score() raises
    ValidationNotFinite on rank 0 alone (33f931a). The job's run took every ValidationNotFinite for the loop's own
    check, which every rank raises at the same point, and neither aborted nor let the caller's error end the job:
    the other rank waited in the next collective until the timeout. The loop's checks mark their errors now, and a
    ValidationNotFinite of anything else ends the job at once, as any error of one rank."""
    from thread_ranks import run_ranks

    X, Y, X_val, _ = rows()

    class TestScore(gpunn.Callback):
        rank_zero_only = True

        def on_epoch_end(self, trainer, epoch, logs):
            logs["test_r2"] = trainer.model.score(X_val, numpy.zeros((len(X_val), 1), "float32"))

    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: gpunn.MLP([3, 8, 1], device=f"cuda:{rank}", seed=0).fit(
        X, Y, epochs=2, batch_size=4, callbacks=[TestScore()], verbose=False, distributed=True), timeout=10)
    # rank 0 aborts the job at once (what rank 1 does after its broken collective is not the job's: its process
    # would be gone); before, rank 0 aborted nothing and rank 1 waited until the timeout
    assert aborted[:1] == [(0, 1)] and type(outcomes[0][1]) is gpunn.ValidationNotFinite, (aborted, outcomes)
    assert not gpunn.distributed.comm.is_raised_on_every_rank(outcomes[0][1])


def test_validation_no_rank_can_split_is_rank_zeros_and_every_rank_takes_its_logs_to_check(fake_cupy, monkeypatch):
    """An evaluator that cannot be split by rank (a hand-written source's) runs on rank 0 alone. The other ranks took
    its logs only in the epoch-log broadcast, after the loop's check: rank 0 alone would refuse a val_loss of inf
    (and alone raise TrainingDiverged, which is not aborted on, leaving the others in that broadcast). Now every rank
    takes rank 0's validation logs in a broadcast of their own, and checks them; and ValidationNotFinite's words of
    where the values are not finite, rank 0's evaluator's, so that every rank raises the same."""
    from thread_ranks import run_ranks  # (which loads the stand-in's NCCL: fake_cupy; alone, it found no cupy)

    from gpunn.distributed import training

    class Evaluator:
        n_rows = 10

        def __init__(self, rank):
            self.rank, self.calls = rank, 0

        def evaluate(self, model):
            self.calls += 1
            return {"val_loss": float("inf"), "rank": self.rank}

        def not_finite_places(self, model):  # (ValidationNotFinite's words: rank 0's, said by every rank)
            self.calls += 1
            return {0: f"1 value, the first at row {self.rank} of it, column 0"}

    evaluators = [Evaluator(rank) for rank in range(2)]

    def work(rank):
        validation = training._ValidatedOnRankZero(evaluators[rank], training.world(None))
        return validation.n_rows, validation.evaluate(None), validation.not_finite_places(None)

    outcomes, aborted = run_ranks(monkeypatch, 2, work)
    words = {0: "1 value, the first at row 0 of it, column 0"}
    assert outcomes == [((10, {"val_loss": float("inf"), "rank": 0}, words), None)] * 2 and aborted == []
    assert [e.calls for e in evaluators] == [2, 0]


# ---- evaluate() and score(): no score where the metrics are not finite (they returned inf/NaN, or R² 0, silently)

NO_SCORE = r"the model has no score on \(X, Y\) \(loss (?P<loss>\S+), mse \S+, mae \S+, r2 \S+\): "
# the place in ValidationNotFinite's words (it was "at 1 value(s) (first at row 3, column 0)": the fit's said it otherwise)
OVERFLOW = (r"predict\(X\) is NaN or infinite \(1 value, the first at row 3 of X, column 0\) while the weights are "
            r"finite: the output overflows float32 on such rows \(an input far outside the training rows' range; "
            r"clean them\)")


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the rows made to overflow
def test_an_mlps_score_on_rows_its_output_overflows_on_is_refused_naming_the_first_row(device):
    """scikit-learn's r2_score refuses NaN or infinite predictions ("Input contains NaN"); evaluate() returned
    {"loss": inf, ..., "r2": -inf} and score() -inf. Now ValidationNotFinite, as the fit's validation on the same
    rows raises, naming how many values of predict(X) are not finite and the first one's row and column."""
    X, Y, X_val, Y_val = rows()
    model = gpunn.MLP([3, 8, 1], device=device, seed=0)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=False)
    for call in (model.evaluate, model.score):
        with pytest.raises(gpunn.ValidationNotFinite, match="^" + NO_SCORE + OVERFLOW + "$") as caught:
            call(X_val, Y_val)
        assert re.match(NO_SCORE, str(caught.value))["loss"] == "inf"
    assert numpy.isfinite(model.score(X_val[:3], Y_val[:3]))  # the rows before it score


def test_an_mlp_whose_weights_are_nan_has_no_score_where_a_constant_target_gave_it_a_perfect_zero(device):
    """A diverged model's (fit raised TrainingDiverged; the user kept it) evaluate() was all NaN, and its score() on
    a constant target 0.0 (R²'s convention for a constant target, predicted "not exactly"): TrainingDiverged now."""
    X, Y, _, _ = rows()
    model = gpunn.MLP([3, 8, 1], device=device, seed=0)
    model.params[...] = numpy.nan
    for target in (Y, numpy.ones_like(Y)):
        with pytest.raises(gpunn.TrainingDiverged, match="^" + NO_SCORE + r"the weights are NaN or infinite \(it "
                                                         r"diverged in training\); fit it again with a lower learning "
                                                         r"rate, or standardize the targets and inputs$"):
            model.score(X, target)


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the rows made to overflow
def test_where_no_member_has_a_score_the_rows_are_predicted_again_chunk_rows_at_a_time(monkeypatch):
    """evaluate() goes chunk_rows rows at a time (an ensemble's memory check counts them); on its no-score path the
    rows were predicted again whole, K x rows x outputs at once and a mask of it, so rows evaluate could score could
    raise out of memory there instead of the error naming the row. The first row is still found across chunks."""
    X, Y, X_val, Y_val = rows()
    ens = gpunn.Ensemble([3, 8, 1], n_models=2, device="cpu", seed=0)
    ens.fit(X, Y, epochs=1, batch_size=8, verbose=False)
    ens.chunk_rows = 2
    predicted, real = [], ens._forward  # (the forward passes, each of the rows of one chunk)
    monkeypatch.setattr(ens, "_forward", lambda X, *args: predicted.append(len(X)) or real(X, *args))
    with pytest.raises(gpunn.ValidationNotFinite, match=r"^no member of the ensemble has a score on \(X, Y\): members "
                                                        r"\[0, 1\]: " + OVERFLOW + "$"):
        ens.evaluate(X_val, Y_val)
    assert max(predicted) == 2 and sum(predicted) == 2 * len(X_val)  # evaluate's pass, then the error's


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the rows made to overflow
def test_the_row_named_is_the_first_the_output_overflows_on_where_a_later_chunk_overflows_too(monkeypatch):
    """Rows 3 and 7 of X_val overflow the output, predicted 2 rows at a time: the count is both chunks' and the row
    named is the first chunk's, not the last one met."""
    from gpunn import model as model_module

    X, Y, X_val, Y_val = rows()
    X_val[7] = HUGE  # (row 3 is HUGE already)
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=0)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=False)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 2)
    with pytest.raises(gpunn.ValidationNotFinite, match=r"\(2 values, the first at row 3 of X, column 0\)"):
        model.score(X_val, Y_val)


ONE_ROW = (r"^R² is not defined on 1 row: the targets' sum of squares about their mean, its denominator, is 0 there, "
           r"so r2 is NaN \(as scikit-learn's r2_score gives\); score at least 2 rows$")


def test_one_row_still_scores_its_r2_as_nan_as_scikit_learn_does_with_one_warning_naming_why():
    """R² of one row is undefined (NaN, scikit-learn's r2_score too): not a model with no score. It came without a
    word, where scikit-learn's r2_score warns (UndefinedMetricWarning, "R^2 score is not well-defined with less than
    two samples."): one gpunn.UndefinedMetricWarning a call now, at the user's line, an ensemble's for all its members,
    and MLPRegressor's score without scikit-learn (gpunn.metrics.r2) the same."""
    from gpunn.metrics import r2

    X, Y, _, _ = rows()
    model, ens = gpunn.MLP([3, 8, 1], device="cpu", seed=0), gpunn.Ensemble([3, 8, 1], n_models=3, device="cpu", seed=0)
    calls = {"evaluate": lambda: model.evaluate(X[:1], Y[:1])["r2"], "score": lambda: model.score(X[:1], Y[:1]),
             "ensemble": lambda: ens.score(X[:1], Y[:1]), "metrics.r2": lambda: r2(numpy, Y[:1] + 1, Y[:1])}
    for name, call in calls.items():
        with pytest.warns(gpunn.UndefinedMetricWarning, match=ONE_ROW) as caught:
            assert numpy.isnan(call()).all(), name
        assert [w.filename for w in caught] == [__file__], name  # one, at the line above
    assert issubclass(gpunn.UndefinedMetricWarning, UserWarning)  # as scikit-learn's
    with pytest.warns(gpunn.UndefinedMetricWarning):
        assert numpy.isfinite(model.evaluate(X[:1], Y[:1])["loss"])  # the other metrics are defined
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert numpy.isfinite(model.score(X[:2], Y[:2]))  # 2 rows: scored, without a word


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the rows made to overflow
def test_an_ensemble_scores_its_other_members_and_gives_nan_with_a_warning_for_one_without_a_score(device):
    """One member's weights NaN (a member diverged in the last fit holds them): ens.score gave NaN for it without a
    word, and on rows one member's output overflows on, -inf. Its four metrics are NaN now (scikit-learn's
    error_score), a warning says which member and why, at the user's line, and the others score as their MLPs do."""
    X, Y, X_val, Y_val = rows()
    ens = gpunn.Ensemble([3, 8, 1], n_models=3, device=device, seed=0)
    ens.fit(X, Y, epochs=1, batch_size=8, verbose=False)
    ens.member_params[1] = numpy.nan
    with pytest.warns(RuntimeWarning, match=r"^members \[1\] have no score on \(X, Y\): their metrics are NaN "
                                            r"\(member 1: the weights are NaN or infinite\)$") as caught:
        logs = ens.evaluate(X, Y)
    assert [w.filename for w in caught] == [__file__]
    assert all(numpy.isnan(logs[key][1]) for key in ("loss", "mse", "mae", "r2"))
    assert [logs["r2"][k] for k in (0, 2)] == [ens.member(k).score(X, Y) for k in (0, 2)]
    with pytest.warns(RuntimeWarning, match=r"members \[1\]"):
        scores = ens.score(X, Y)
    assert numpy.isnan(scores[1]) and numpy.nanargmax(scores) in (0, 2)
    with pytest.raises(gpunn.ValidationNotFinite, match=r"^no member of the ensemble has a score on \(X, Y\): members "
                                                        r"\[0, 2\]: " + OVERFLOW + r"; member 1: the weights are NaN "
                                                        r"or infinite$"):
        ens.score(X_val, Y_val)
    ens.member_params[...] = numpy.nan
    with pytest.raises(gpunn.TrainingDiverged, match=r"^no member of the ensemble has a score on \(X, Y\): members "
                                                     r"\[0, 1, 2\]: the weights are NaN or infinite; fit it again"):
        ens.evaluate(X, Y)


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the rows made to overflow
def test_an_ensemble_member_scored_on_rows_it_overflows_on_gets_nan_metrics_as_one_with_nan_weights(device):
    """A member whose outputs overflow (its weights finite) has no score either: its four metrics are NaN, not the
    infinite loss and -inf R² its predictions give (audit37b e16: with the NaN not written, the member kept them)."""
    X, Y, _, _ = rows()
    ens = gpunn.Ensemble([3, 8, 1], n_models=3, device=device, seed=0)
    ens.fit(X, Y, epochs=1, batch_size=8, verbose=False)
    ens.member_params[2] = 1e30  # finite float32 weights whose products overflow
    with pytest.warns(RuntimeWarning, match=r"^members \[2\] have no score on \(X, Y\): their metrics are NaN"):
        logs = ens.evaluate(X, Y)
    assert all(numpy.isnan(logs[key][2]) for key in ("loss", "mse", "mae", "r2")), logs
    assert all(numpy.isfinite(logs[key][k]) for key in ("loss", "mse", "mae", "r2") for k in (0, 1))


def test_on_a_gpu_the_pass_that_names_the_row_leaves_nothing_in_the_sources_overflow_watch(tmp_path, fake_cupy):
    """On tests/fakecupy, a standardized source's held-out rows: the second pass that names the first row the output
    overflows on standardizes its windows on the device too, and takes them from the source's watch (metrics'
    SourceEvaluator.not_finite_places), so none is left held, with its pass's refuse_at, for the next reader's take."""
    from gpunn import data

    X, Y = (numpy.asarray(A) for A in gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", seed=1))
    numpy.save(tmp_path / "Y.npy", Y)

    def source():
        numpy.save(tmp_path / "X.npy", X)
        return data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=5, validation_fraction=0.3,
                        seed=1, standardize=True)

    row = 5 * list(source().validation_chunks)[1] + 2
    X[row] = 2.8e38  # finite in float32 once standardized (3e38 is not), and the output overflows on it
    read = source()
    with pytest.raises(gpunn.ValidationNotFinite) as caught:
        gpunn.MLP([3, 8, 1], device="cuda", seed=0).fit(read, epochs=2, batch_size=8, verbose=False)
    assert re.fullmatch(REFUSAL, str(caught.value))["where"] == (f"1 value, the first at row {row} of "
                                                                 f"{tmp_path / 'X.npy'}, column 0")
    assert read.overflow_watch.take(fake_cupy) is None  # nothing seen since the last take


def test_an_mlps_evaluate_on_a_source_its_output_overflows_on_says_so_without_reading_the_rows_again(tmp_path):
    """evaluate(source) where the output overflows on a row: ValidationNotFinite says predict(source) is not finite
    on some row (or its errors overflow), the weights finite; the source is not read again to name the row, and the
    words are not those of X's errors against Y, which no X was given for."""
    from gpunn import data

    X, Y = (numpy.asarray(A) for A in gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", seed=1))
    X[3] = HUGE
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    with warnings.catch_warnings(), pytest.raises(gpunn.ValidationNotFinite) as caught:
        warnings.simplefilter("ignore", RuntimeWarning)  # (NumPy's overflow in the product)
        gpunn.MLP([3, 8, 1], device="cpu", seed=0).evaluate(data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy")))
    assert str(caught.value).split(": ", 1)[1] == (
        "predict(source) is NaN or infinite on some row, or its errors against the targets overflow float32, while "
        "the weights are finite (an input far outside the training rows' range; clean them)")


def test_a_float64_mlps_errors_that_overflow_are_said_so_where_its_output_is_finite():
    """A target of 1e200: the output is finite, its error's square is not in float64 (loss inf, mae finite). The
    refusal says the errors overflow, with no row of X, as no output is NaN or infinite."""
    X, Y = (numpy.asarray(A, "float64") for A in gpunn.datasets.make("teacher", 50, 3, 1, device="cpu", seed=1))
    Y[5] = 1e200
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (NumPy's overflow in the squares)
        with pytest.raises(gpunn.ValidationNotFinite) as caught:
            model.evaluate(X, Y)
    assert str(caught.value).endswith("): the errors predict(X) - Y overflow float64 (predictions and targets far "
                                      "apart near its limits)")
