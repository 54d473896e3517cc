"""The configuration check before the first step: every rank must be training the same thing.

Each rank describes its run as a flat dict of settings (model shape, activations, dtype,
optimizer, schedule, batch size, epochs, seed, data source, a fingerprint of in-memory data: a
gpunn.data source is described, not read, as each rank reads only its shard, with a file source's sampled
checksum of its files, gpunn.data.contents) and
the ranks exchange a SHA-256 of it. Only when the digests differ are the dicts themselves
gathered, to name each differing setting and the ranks that hold each value.
"""
from __future__ import annotations

import hashlib
import json


class ConfigMismatch(ValueError):
    """Ranks disagree on a setting; raised on every rank, before any training step."""


def flatten(settings: dict, prefix="") -> dict:
    out = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(flatten(settings), sort_keys=True, default=str).encode()).hexdigest()


def describe_differences(per_rank: list[dict]) -> str:
    """One line per differing setting: its value on each group of ranks."""
    flat = [flatten(s) for s in per_rank]
    keys = sorted(set().union(*flat))
    lines = []
    for key in keys:
        groups = {}
        for rank, settings in enumerate(flat):
            value = json.dumps(settings.get(key, "<missing>"), default=str)
            groups.setdefault(value, []).append(rank)
        if len(groups) > 1:
            # the value held by rank 0 first, then the others, each with its ranks
            parts = [f"{value} on rank{'s' if len(ranks) > 1 else ''} {_ranks(ranks)}" for value, ranks in groups.items()]
            lines.append(f"  {key}: " + "; ".join(parts))
    return "\n".join(lines)


def _ranks(ranks):
    return ", ".join(str(r) for r in ranks) if len(ranks) <= 8 else f"{ranks[0]}..{ranks[-1]} ({len(ranks)})"


def check_same_config(comm, settings: dict) -> None:
    """Raise :class:`ConfigMismatch` on every rank when any rank's ``settings`` differ from another's."""
    digests = comm.allgather(digest(settings))
    if len(set(digests)) == 1:
        return
    per_rank = comm.allgather(settings)
    differences = describe_differences(per_rank)
    # ranks each given a part of the data (files split per rank, X[rank::P]): the one difference with a way on
    # that is not in its own line
    weights = " (sample_weight too: its weights are in the data's checksum)" if any(map(_weighted, per_rank)) else ""
    data = (f"; give every rank the same data, all of it{weights}: each reads (or gathers) only its own share of the "
            "rows" if any(_names_the_rows(line) for line in differences.splitlines()) else "")
    raise ConfigMismatch(f"the ranks are not training the same run{data}; these settings differ (before the first "
                         f"step):\n{differences}")


# a data source's settings of how it is read (the seed and shuffle a fit gives it, its window, hold-out and
# statistics), which differ where the fit's do (MLP(seed=rank): data.seed beside fit.seed), not where ranks were
# given parts of the data
_HOW_READ = ("seed", "shuffle", "window", "validation_fraction", "standardize")


def _weighted(settings: dict) -> bool:
    """Whether a rank's run weighs its rows, the training rows' or the validation rows' (gpunn.sample_weights)."""
    data = settings.get("data") or {}
    return bool(data.get("sample_weight") or data.get("validation_sample_weight"))


def _names_the_rows(line: str) -> bool:
    """Whether a line of describe_differences is of the data's rows (a path, the row count, the checksum...)."""
    key = line.strip().split(":", 1)[0]
    return key.startswith("data.") and key.rsplit(".", 1)[-1] not in _HOW_READ
