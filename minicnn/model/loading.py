"""``load_model``: a saved model file checked (``saving.py``), then rebuilt as a Sequential
or, for a file with a graph, a Model."""

from __future__ import annotations

import json
import os
import stat

from .. import config
from ..validation import as_finite
from . import npz
from .functional import Model
from .saving import (
    CONFIG_BYTES,
    LayerClassError,
    check_complete_slots,
    checked_config,
    expected_arrays,
    layer_classes,
    model_from_config,
)
from .sequential import Sequential


def load_model(path: str | os.PathLike, custom_objects: dict | None = None):
    """Rebuild a model saved by ``save``, a Sequential or a Model, with its weights and
    optimizer state.

    ``custom_objects`` ({class name: class}) names the layer classes of your own that the
    model uses, as in Keras (or register them once with ``@minicnn.layers.register_layer``).
    Every array is checked against what the config implies (names, shapes, dtypes, sizes)
    before anything is allocated, and for NaN/inf in the current floatx after. A bad file
    raises ValueError naming it; nothing half-built is returned.
    """
    path = os.fsdecode(path)
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"cannot load model from {path!r}: it is not a regular file (a "
                         "folder, device or pipe); give the path of a .npz saved by save()")
    classes = layer_classes(custom_objects)
    try:
        with npz.NpzArchive(path) as archive:
            cfg = checked_config(json.loads(archive.small_bytes("config", CONFIG_BYTES)),
                                  classes)
            model = model_from_config(cfg, classes, Model if "graph" in cfg else Sequential)
            expected = expected_arrays(model)
            stored = archive.names() - {"config"}
            unknown = stored - set(expected)
            if unknown:
                raise ValueError(f"unexpected arrays {sorted(unknown)[:5]}")
            weights = {k: v for k, v in expected.items() if k.startswith("weights/")}
            archive.check(weights)
            state = {k: v for k, v in expected.items()
                     if k in stored and k.startswith("optimizer/")}
            archive.check(state)
            check_complete_slots(state, model)
            values = {key: as_finite(archive.array(key), config.dtype(), key)
                      for key in [*weights, *state]}
        model.build()
        model.set_weights([values[key] for key in weights])
        if model.optimizer is not None:
            model.optimizer.load_state(cfg["optimizer_iterations"],
                                       {k.removeprefix("optimizer/"): values[k] for k in state})
    except FileNotFoundError:
        raise
    except LayerClassError as exc:
        raise ValueError(f"cannot load model from {path!r}: {exc}") from None
    except (*npz.BAD_FILE_ERRORS, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot load model from {path!r}: the file is corrupt, truncated or "
                         f"not a minicnn model ({type(exc).__name__}: {exc})") from None
    return model
