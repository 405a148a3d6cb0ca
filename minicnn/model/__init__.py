"""The model: ``Sequential``'s structure and weights (``sequential.py``), its training
(``training.py``), and its file format with ``load_model`` (``saving.py``)."""

from .saving import load_model
from .sequential import Sequential
from .training import History

__all__ = ["History", "Sequential", "load_model"]
