"""Hand edits of a checkpoint's metadata, for tests of what an older gpunn (or a user) may have written."""
import json

import numpy


def rewrite_meta(path, to, change):
    """Write ``path``'s checkpoint to ``to`` (may be ``path``) with its metadata changed in place by ``change``."""
    npz = numpy.load(path, allow_pickle=False)
    arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["gpunn_meta"].tobytes())
    change(meta)
    arrays["gpunn_meta"] = numpy.frombuffer(json.dumps(meta).encode(), numpy.uint8)
    with open(to, "wb") as f:
        numpy.savez(f, **arrays)


def run_options(meta) -> dict:
    """The options gpunn train or gpunn sweep recorded in a checkpoint's metadata (its RunOptions callback)."""
    from gpunn.cli import resume

    return resume.saved_options(meta)
