"""gpunn: fast regression MLPs on a CUDA GPU (CuPy) or the CPU (NumPy), picked automatically."""
__version__ = "0.1.0"

from . import datasets
from .activations import ACTIVATIONS
from .backend import CPUFallbackWarning, DeviceError
from .callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from .io import CheckpointError, load, load_checkpoint, save
from .model import MLP
from .train import Callback, History, TrainingDiverged, fit

__all__ = ["MLP", "MLPRegressor", "fit", "datasets", "ACTIVATIONS", "Callback", "History", "TrainingDiverged",
           "EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint", "save", "load", "load_checkpoint",
           "CheckpointError", "DeviceError", "CPUFallbackWarning", "__version__"]


def __getattr__(name):
    # The scikit-learn estimator is imported on first use: scikit-learn stays optional and
    # `import gpunn` stays fast.
    if name == "MLPRegressor":
        from .sklearn import MLPRegressor

        return MLPRegressor
    raise AttributeError(f"module 'gpunn' has no attribute {name!r}")
