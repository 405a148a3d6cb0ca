"""The model: ``Model``'s graph and weights (``functional.py``, ``graph.py``), ``Sequential``
as its chain (``sequential.py``), their training (``training.py``), the file format
(``saving.py``) and ``load_model`` (``loading.py``)."""

from .functional import Model
from .loading import load_model
from .sequential import Sequential
from .training import History

__all__ = ["History", "Model", "Sequential", "load_model"]
