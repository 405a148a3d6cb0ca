"""The model file: one ``.npz`` holding the JSON config, the weights and the optimizer
state; ``save_model`` writes it atomically, and the checks ``loading.load_model`` makes
of a file before it builds anything."""

from __future__ import annotations

import json
import os

import numpy as np

from .. import losses, optimizers
from ..layers import LAYER_CLASSES, REGISTERED_LAYERS, Layer
from . import npz

FORMAT_VERSION = 1
CONFIG_BYTES = 1 << 20  # a model's JSON config is a few KB; more is not a minicnn file


class LayerClassError(ValueError):
    """A saved layer whose class this process does not know, or cannot rebuild."""


def layer_classes(custom_objects: dict | None = None) -> dict[str, type]:
    """The layer classes a file may name: minicnn's, those registered with
    ``@minicnn.layers.register_layer``, and ``custom_objects`` ({name: class}), as Keras."""
    custom = dict(custom_objects or {})
    bad = {k: v for k, v in custom.items()
           if not (isinstance(k, str) and isinstance(v, type) and issubclass(v, Layer))}
    if bad:
        raise TypeError(f"custom_objects must map class names to minicnn Layer classes, "
                        f"got {bad!r:.200}")
    return {**LAYER_CLASSES, **REGISTERED_LAYERS, **custom}


def checked_config(cfg, classes: dict[str, type]) -> dict:
    """The parsed JSON config, with the type of every field checked."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"config: {what}")

    need(isinstance(cfg, dict), "not a JSON object")
    need(cfg.get("format_version") == FORMAT_VERSION,
         f"unsupported format_version {cfg.get('format_version')!r}")
    need(isinstance(cfg.get("name"), str), "name must be a string")
    need(isinstance(cfg.get("layers"), list) and cfg["layers"], "layers must be a list")
    for spec in cfg["layers"]:
        need(isinstance(spec, dict) and isinstance(spec.get("class"), str)
             and isinstance(spec.get("config"), dict)
             and isinstance(spec.get("trainable", True), bool), f"bad layer entry {spec!r:.80}")
        name = spec["class"]
        if name not in classes:
            raise LayerClassError(
                f"unknown layer class {name!r:.80}: pass it in custom_objects, e.g. "
                f"load_model(path, custom_objects={{{name!r:.80}: {name:.80}}}), or register "
                "it with @minicnn.layers.register_layer")
    if "graph" in cfg:
        _check_graph(cfg["graph"], [spec["config"].get("name") for spec in cfg["layers"]],
                     need)
    need(cfg.get("loss") is None or isinstance(cfg["loss"], (str, dict)),
         "loss must be a name or an object with a name")
    need(cfg.get("optimizer") is None or (isinstance(cfg["optimizer"], dict)
                                          and isinstance(cfg["optimizer"].get("name"), str)),
         "optimizer must be an object with a name")
    need(isinstance(cfg.get("metrics"), list)
         and all(isinstance(m, str) for m in cfg["metrics"]), "metrics must be a list of names")
    iterations = cfg.get("optimizer_iterations")
    need(type(iterations) is int and iterations >= 0,
         "optimizer_iterations must be an int >= 0")
    return cfg


def _check_graph(graph, names: list, need) -> None:
    """A saved graph (``Model._graph_config``): an input shape, then nodes that each name one
    of the file's layers and read only tensors made before them (so no cycle)."""
    need(isinstance(graph, dict) and isinstance(graph.get("input"), dict)
         and isinstance(graph["input"].get("name"), str)
         and isinstance(graph["input"].get("shape"), list) and graph["input"]["shape"]
         and all(type(d) is int and d > 0 for d in graph["input"]["shape"])
         and isinstance(graph.get("nodes"), list) and graph["nodes"],
         "graph must have an input {name, shape} and a list of nodes")
    for k, node in enumerate(graph["nodes"]):
        need(isinstance(node, list) and len(node) == 2 and isinstance(node[0], str),
             f"graph node {k} must be [layer name, inputs], got {node!r:.80}")
        if node[0] not in names:
            raise ValueError(f"config: graph node {k} names layer {node[0]!r:.80}, which is "
                             f"missing from the file's layers {names!r:.200}")
        reads = node[1] if isinstance(node[1], list) else [node[1]]
        need(reads and all(type(i) is int and 0 <= i <= k for i in reads),
             f"graph node {k} ({node[0]!r:.80}) must read tensors made before it (0 to {k}), "
             f"got {node[1]!r:.80}")


def model_from_config(cfg: dict, classes: dict[str, type], model_class: type):
    """The ``model_class`` (Sequential, or Model for a config with a graph) a config
    describes: layers made and compiled, no weights allocated yet (a graph's are drawn,
    then replaced by the file's)."""
    layers = []
    for spec in cfg["layers"]:
        try:
            layer = classes[spec["class"]](**spec["config"])
        except TypeError as exc:
            raise LayerClassError(
                f"layer class {spec['class']!r} cannot be rebuilt from its saved config "
                f"{spec['config']!r:.200} ({exc}); its get_config() must return its "
                "constructor's arguments") from None
        layer.trainable = spec.get("trainable", True)
        if "rng_state" in spec:
            layer.rng = generator_from_state(spec["rng_state"])
        layers.append(layer)
    model = model_class._from_layers(cfg, layers)
    if cfg["loss"] is not None:
        if cfg["optimizer"] is None:
            raise ValueError("config: a compiled model needs an optimizer")
        model.compile(optimizers.from_config(cfg["optimizer"]), losses.from_config(cfg["loss"]),
                      cfg["metrics"])
    return model


def generator_from_state(state) -> np.random.Generator:
    """A NumPy generator where a saved one stood (``bit_generator.state``); ValueError for
    anything else."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise ValueError(f"config: rng_state must be a NumPy bit generator's state, got "
                         f"{state!r:.80}")
    generator = np.random.Generator(getattr(np.random, name)())
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"config: rng_state is not a {name} state ({exc})") from None
    return generator


def check_complete_slots(state: dict, model) -> None:
    """Each parameter has all of its optimizer's slots or none (none: never updated)."""
    per_param: dict[str, int] = {}
    for key in state:
        param = key.rsplit("/", 1)[0]
        per_param[param] = per_param.get(param, 0) + 1
    wanted = len(model.optimizer.slot_names) if model.optimizer else 0
    partial = [p for p, n in per_param.items() if n != wanted]
    if partial:
        raise ValueError(f"incomplete optimizer state for {partial[:3]}")


def expected_arrays(model) -> dict[str, tuple[int, ...]]:
    """Every array a saved file of this model holds, with its shape (optimizer state may
    be absent for a parameter never updated), computed without building anything."""
    shapes = {}
    slots = model.optimizer.slot_names if model.optimizer else ()
    for i, (layer, (in_shape, _)) in enumerate(zip(model.layers, model.layer_shapes())):
        for key, spec in layer.weight_specs(in_shape).items():
            shapes[f"weights/{i}/{key}"] = spec.shape
            for slot in slots if spec.trainable else ():
                shapes[f"optimizer/{i}/{key}/{slot}"] = spec.shape
    return shapes


def _json_value(value):
    """What ``json`` cannot write itself: NumPy scalars, as the Python numbers they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r:.80} has no JSON form")


def portable_config(model) -> str:
    """The model's config as JSON, checked exactly as ``load_model`` will read it (the model
    is rebuilt from it, its own layer classes known), so every file ``save`` writes loads.
    NumPy scalars become Python numbers; anything else that cannot round-trip is a
    ValueError naming it, raised before any file is touched."""
    try:
        text = json.dumps(model.get_config(), default=_json_value, allow_nan=False)
        classes = layer_classes({type(layer).__name__: type(layer) for layer in model.layers})
        model_from_config(checked_config(json.loads(text), classes), classes, type(model))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"cannot save this model: its config would not load back ({exc}); "
                         "nothing was written") from None
    return text


def save_model(model, path: str | os.PathLike) -> None:
    """Write architecture, weights and optimizer state to one ``.npz`` file, atomically.

    What could not be loaded back is refused before anything is written
    (``portable_config``), and so are non-finite weights (a diverged run): the existing
    file is kept.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"save takes a file path (str or pathlib.Path), got "
                        f"{type(path).__name__}")
    path = os.fsdecode(path)
    if not path.endswith(".npz"):
        raise ValueError(f"minicnn saves models as .npz files, not {path!r} "
                         "(Keras' .keras and .h5 formats are not supported); use a name "
                         "ending in .npz")
    text = portable_config(model)
    model.build()
    arrays = {"config": np.frombuffer(text.encode(), np.uint8)}
    for i, layer in enumerate(model.layers):
        for key, value in zip(layer.weight_specs(layer.input_shape), layer.get_weights()):
            arrays[f"weights/{i}/{key}"] = value
    if model.optimizer is not None:
        for key, value in model.optimizer.state_arrays().items():
            arrays[f"optimizer/{key}"] = value
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"cannot save {os.fspath(path)!r}: {key} contains NaN or inf "
                             "(the training diverged); the existing file was left as it was")
    npz.atomic_write(path, lambda f: np.savez(f, **arrays))
