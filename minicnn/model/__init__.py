"""The model: ``Sequential``'s structure and weights (``sequential.py``), its training
(``training.py``), its file format (``saving.py``) and ``load_model`` (``loading.py``)."""

from .loading import load_model
from .sequential import Sequential
from .training import History

__all__ = ["History", "Sequential", "load_model"]
