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
