"""Regression metrics on device arrays, returned as Python floats."""
from __future__ import annotations


def mse(xp, P, Y) -> float:
    return float(xp.mean((P - Y) ** 2))


def mae(xp, P, Y) -> float:
    return float(xp.mean(xp.abs(P - Y)))


def r2(xp, P, Y) -> float:
    """Coefficient of determination, averaged uniformly over outputs (scikit-learn's default)."""
    ss_res = xp.sum((Y - P) ** 2, axis=0)
    ss_tot = xp.sum((Y - Y.mean(axis=0)) ** 2, axis=0)
    ok = ss_tot > 0
    score = xp.where(ok, 1 - ss_res / xp.where(ok, ss_tot, 1), xp.where(ss_res == 0, 1.0, 0.0))
    return float(score.mean())


class RegressionEvaluator:
    """MSE, MAE and R² of a model on one fixed (X, Y), for per-epoch validation.

    The sums are accumulated on the model's device in float64 and read back in a single
    transfer, so one evaluation costs one host synchronisation. R²'s denominator (the
    target's total sum of squares per output) is computed once, here. X and Y must already
    be checked device matrices (``model._as_input`` / ``model._as_target``).
    """

    def __init__(self, model, X, Y, chunk_rows=65536):
        self.X, self.Y, self.chunk_rows = X, Y, int(chunk_rows)
        centred = Y - Y.mean(axis=0, dtype="float64")
        self.ss_tot = (centred * centred).sum(axis=0)  # float64, per output, stays on the device

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def evaluate(self, model) -> dict:
        xp, X, Y = model.xp, self.X, self.Y
        ss_res = xp.zeros(Y.shape[1], "float64")
        abs_sum = xp.zeros((), "float64")
        for start in range(0, X.shape[0], self.chunk_rows):
            Xc, Yc = X[start:start + self.chunk_rows], Y[start:start + self.chunk_rows]
            P = model._forward(Xc, model._workspace(Xc.shape[0]))
            D = P - Yc
            ss_res += (D * D).sum(axis=0, dtype="float64")
            abs_sum += xp.abs(D).sum(dtype="float64")
        ok = self.ss_tot > 0
        # scikit-learn's convention for a constant target: 1 if predicted exactly, else 0
        r2 = xp.where(ok, 1 - ss_res / xp.where(ok, self.ss_tot, 1), xp.where(ss_res == 0, 1.0, 0.0))
        count = Y.shape[0] * Y.shape[1]
        packed = xp.stack([ss_res.sum() / count, abs_sum / count, r2.mean()])
        mse_, mae_, r2_ = (float(v) for v in model.backend.to_host(packed))  # the one host sync
        return {"val_loss": mse_, "val_mse": mse_, "val_mae": mae_, "val_r2": r2_}
