"""gpunn: fast regression MLPs on a CUDA GPU (CuPy) or the CPU (NumPy), picked automatically."""
from . import datasets
from .activations import ACTIVATIONS
from .backend import CPUFallbackWarning, DeviceError
from .model import MLP
from .train import Callback, History, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["MLP", "datasets", "ACTIVATIONS", "Callback", "History", "TrainingDiverged", "DeviceError",
           "CPUFallbackWarning", "__version__"]
