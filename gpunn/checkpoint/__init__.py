"""Checkpoints: a model, or a whole training run, in one ``.npz`` file without pickle; the format is
:mod:`gpunn.checkpoint.format`'s. Every public name is importable from here."""
from .format import (CALLBACKS, FORMAT, FORMAT_VERSION, MAX_META_BYTES, META, READABLE_VERSIONS, Checkpoint,
                     CheckpointError, ModelCheckpoint, atomic_write, check_replaceable, check_resume_precision, load,
                     load_checkpoint, model_config, optimizer_from_config, read, read_meta, resume_run, save,
                     save_checkpoint)

__all__ = ["CALLBACKS", "FORMAT", "FORMAT_VERSION", "MAX_META_BYTES", "META", "READABLE_VERSIONS", "Checkpoint",
           "CheckpointError", "ModelCheckpoint", "atomic_write", "check_replaceable", "check_resume_precision", "load",
           "load_checkpoint", "model_config", "optimizer_from_config", "read", "read_meta", "resume_run", "save",
           "save_checkpoint"]
