"""gpunn: fast regression MLPs on a CUDA GPU (CuPy) or the CPU (NumPy), picked automatically."""
from . import _startup  # noqa: F401 - first: the gpunn command's Ctrl-C in the imports below is one line
from . import datasets
from ._version import __version__
from .activations import ACTIVATIONS
from .backend import CPUFallbackWarning, DeviceError
from .checkpoint import CheckpointError, ModelCheckpoint, load, load_checkpoint, save
from .ensemble import Ensemble
from .metrics import UndefinedMetricWarning
from .model import MLP, fit
from .ops.cpu import KernelFallbackWarning
from .optim import SGD, Adam, AdamW, Momentum, Nesterov, Optimizer, Schedule
from .training.callbacks import Callback, EarlyStopping, History, ReduceLROnPlateau
from .training.graph import GraphWarning
from .training.loop import TrainingDiverged, ValidationNotFinite

__all__ = ["MLP", "Ensemble", "MLPRegressor", "fit", "datasets", "ACTIVATIONS", "Callback", "History",
           "TrainingDiverged", "ValidationNotFinite", "EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint", "save",
           "load", "load_checkpoint", "CheckpointError", "DeviceError", "CPUFallbackWarning", "GraphWarning",
           "KernelFallbackWarning", "UndefinedMetricWarning", "__version__", "Optimizer", "SGD", "Momentum", "Nesterov",
           "Adam", "AdamW", "Schedule"]


# Imported on first use by __getattr__, and listed by __dir__ (one table, so dir() cannot miss a name that
# __getattr__ serves): name -> the submodule that defines it (None: the name is the submodule). The
# scikit-learn estimator, so that scikit-learn stays optional and `import gpunn` stays fast; data parallel
# (MPI, NCCL; mpi4py only when a run starts) and the data sources.
_LAZY = {"MLPRegressor": "estimator", "data": None, "distributed": None}


def __dir__():
    # what dir(gpunn), IPython's completion and help() list: the lazy names too (MLPRegressor was missing)
    return sorted({*globals(), *_LAZY})


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
        return module if _LAZY[name] is None else getattr(module, name)
    raise AttributeError(f"module 'gpunn' has no attribute {name!r}")


if _startup.launched():  # started by an MPI launcher: a rank's uncaught exception ends the job, not only the rank
    from .distributed.comm import end_job_on_uncaught_exception

    end_job_on_uncaught_exception()
