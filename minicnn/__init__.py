"""minicnn: a from-scratch neural-network engine with interchangeable kernel backends."""

from .backends import available_backends, get_backend, set_backend, use_backend
from .config import floatx, set_floatx
from .model import History, Model, Sequential, load_model

__version__ = "0.1.0"

__all__ = [
    "History", "Model", "Sequential", "available_backends", "floatx", "get_backend", "load_model",
    "set_backend", "set_floatx", "use_backend",
]
