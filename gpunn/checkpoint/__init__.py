"""Checkpoints: a model, or a whole training run, in one ``.npz`` file without pickle. Every public name is
importable from here; a module each job:

* ``format``: the file format (its docstring describes it), written and read back fully validated
  (:func:`read`, :func:`read_meta`);
* ``models``: :func:`save` and :func:`load`, a training checkpoint's writer (:func:`save_checkpoint`);
* ``loaded``: :class:`Checkpoint`, a training checkpoint loaded (:func:`load_checkpoint`);
* ``callback``: :class:`ModelCheckpoint`, which writes them while a run trains;
* ``resume``: :func:`resume_run`, a run continued from its checkpoint (``Checkpoint.resume``), and
  ``resumed_callbacks``: its callbacks given their saved states, in the run's order.

:func:`atomic_write`, which the files gpunn writes go through (all but the CSV index cache, kept private), is
``gpunn.atomic``'s (re-exported here): the configs, reports and prediction files that use it need not import
checkpoints and the training code they load.

``MAX_META_BYTES`` (the largest metadata member a read accepts, 64 MiB) is ``format``'s own: reading or setting it
here reads or sets that one (a copy here, set, changed nothing).
"""
import sys
import types

from . import format as _format
from ..atomic import atomic_write
from .callback import CALLBACKS, ModelCheckpoint
from .format import (FORMAT, FORMAT_VERSION, META, READABLE_VERSIONS, CheckpointError, check_replaceable,
                     optimizer_from_config, read, read_meta)
from .loaded import Checkpoint, load_checkpoint
from .models import load, model_config, save, save_checkpoint
from .resume import check_resume_precision, resume_run

__all__ = ["CALLBACKS", "FORMAT", "FORMAT_VERSION", "MAX_META_BYTES", "META", "READABLE_VERSIONS", "Checkpoint",
           "CheckpointError", "ModelCheckpoint", "atomic_write", "check_replaceable", "check_resume_precision", "load",
           "load_checkpoint", "model_config", "optimizer_from_config", "read", "read_meta", "resume_run", "save",
           "save_checkpoint"]


_limit_here = [True]  # whether MAX_META_BYTES is the package's: a del takes it, until it is set again


def _no_limit_here(module):
    return AttributeError(f"module {module.__name__!r} has no attribute 'MAX_META_BYTES'")


class _Package(types.ModuleType):  # (the package's class: a module's attribute can be a property only so)
    @property
    def MAX_META_BYTES(self):
        if not _limit_here[0]:
            raise _no_limit_here(self)
        return _format.MAX_META_BYTES

    @MAX_META_BYTES.setter
    def MAX_META_BYTES(self, value):
        _format.MAX_META_BYTES = value
        _limit_here[0] = True

    @MAX_META_BYTES.deleter
    def MAX_META_BYTES(self):
        # as from any module: gone from the package (format's limit stays), until set again. unittest.mock.patch
        # deletes the name and, where that leaves none, sets it back; with no deleter it failed, the patch in force
        if not _limit_here[0]:
            raise _no_limit_here(self)
        _limit_here[0] = False


def __dir__():
    return sorted([*globals(), *(["MAX_META_BYTES"] if _limit_here[0] else [])])


sys.modules[__name__].__class__ = _Package
