"""NNClassifier: the classic scratch MLP, in scikit-learn style, built from minicnn layers.

One sigmoid hidden layer and a sigmoid output layer, weights drawn uniform in [-1, 1],
the summed cross-entropy error plus penalties

    E = -sum[y log o + (1 - y) log(1 - o)] + l2/2 * ||W||^2 + l1 * ||W||_1   (biases free)

and plain gradient descent on each of ``n_batches`` slices (``np.array_split``) of the
shuffled training set: W <- W - learning_rate * dE/dW, the gradient summed over the slice.
"""

from __future__ import annotations

import numpy as np

from . import config, losses
from .backends import get_backend, in_session
from .layers import Dense
from .optimizers import SGD
from .validation import as_array, as_finite, check_positive_int


class NNClassifier:
    """Scratch multi-layer perceptron: ``NNClassifier(n_classes=10, n_features=784).fit(X, y)``."""

    def __init__(self, n_classes: int, n_features: int, n_hidden_units: int = 30, l1: float = 0.0,
                 l2: float = 0.0, epochs: int = 500, learning_rate: float = 0.01,
                 n_batches: int = 1, random_seed: int | None = None, shuffle: bool = True):
        self.n_classes = n_classes
        self.n_features = n_features
        self.n_hidden_units = n_hidden_units
        self.l1 = l1
        self.l2 = l2
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.n_batches = n_batches
        self.random_seed = random_seed
        self.shuffle = shuffle

    # -- scikit-learn protocol -----------------------------------------------------------

    _PARAMS = ("n_classes", "n_features", "n_hidden_units", "l1", "l2", "epochs",
               "learning_rate", "n_batches", "random_seed", "shuffle")

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> NNClassifier:
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"invalid parameter {name!r} for NNClassifier; "
                                 f"valid ones are {list(self._PARAMS)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"NNClassifier({args})"

    # -- validation ------------------------------------------------------------------------

    def _check_params(self) -> None:
        for name in ("n_classes", "n_features", "n_hidden_units", "epochs", "n_batches"):
            check_positive_int(getattr(self, name), name)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        for name in ("l1", "l2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    def _check_X(self, X) -> np.ndarray:
        X = as_array(X, "X")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}), got {X.shape}; "
                             "reshape images with X.reshape(len(X), -1)")
        if len(X) == 0:
            raise ValueError("X is empty; expected at least one sample")
        return as_finite(X, config.dtype(), "X")

    def _check_y(self, y, n: int) -> np.ndarray:
        y = as_array(y, "y")
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match X, got {y.shape}")
        if not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"y must hold class indices in [0, {self.n_classes}); "
                             f"found values from {y.min():g} to {y.max():g}")
        return y.astype(np.int64)

    # -- model -----------------------------------------------------------------------------

    def _build(self, rng: np.random.Generator) -> None:
        self.hidden_ = Dense(self.n_hidden_units, activation="sigmoid")
        self.output_ = Dense(self.n_classes, activation="sigmoid")
        for layer, fan_in in ((self.hidden_, self.n_features), (self.output_, self.n_hidden_units)):
            layer.build((fan_in,))
            layer.set_weights([rng.uniform(-1, 1, (fan_in, layer.units)),
                               rng.uniform(-1, 1, layer.units)])

    def _penalty(self) -> float:
        kernels = [layer.params["kernel"] for layer in self._layers]
        return sum(self.l2 / 2 * float((w * w).sum()) + self.l1 * float(np.abs(w).sum())
                   for w in kernels)

    @property
    def _layers(self) -> tuple[Dense, Dense]:
        return self.hidden_, self.output_

    def _error_and_gradients(self, X: np.ndarray, targets: np.ndarray) -> float:
        """E on a slice; fills every layer's ``grads`` with dE/dW (penalties included)."""
        logits = self.output_.forward(self.hidden_.forward(X, True), True, activate=False)
        mean_error, grad = losses.BinaryCrossentropy().fused(logits, targets)
        grad = grad * targets.size  # the classic error is a sum, not a mean
        self.hidden_.backward(self.output_.backward(grad))
        for layer in self._layers:
            w = layer.params["kernel"]
            layer.grads["kernel"] = layer.grads["kernel"] + self.l2 * w + self.l1 * np.sign(w)
        return mean_error * targets.size + self._penalty()

    @in_session
    def fit(self, X, y) -> NNClassifier:
        """Train from scratch; ``error_`` holds the mean slice error of every epoch."""
        self._check_params()
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        rng = np.random.default_rng(self.random_seed)
        self.classes_ = np.arange(self.n_classes)
        self._build(rng)
        optimizer = SGD(self.learning_rate)
        targets = np.eye(self.n_classes, dtype=config.dtype())[y]
        self.error_ = []
        for _ in range(self.epochs):
            order = rng.permutation(len(X)) if self.shuffle else np.arange(len(X))
            errors = []
            for idx in np.array_split(order, self.n_batches):
                if len(idx):
                    errors.append(self._error_and_gradients(X[idx], targets[idx]))
                    optimizer.apply(self._layers)  # W <- W - learning_rate * dE/dW
            self.error_.append(float(np.mean(errors)))
        return self

    @in_session
    def _outputs(self, X) -> np.ndarray:
        if not hasattr(self, "hidden_"):
            raise RuntimeError("this NNClassifier is not fitted yet; call fit(X, y) first")
        return self.output_.forward(self.hidden_.forward(self._check_X(X)), activate=False)

    def predict_proba(self, X) -> np.ndarray:
        """Softmax over the output units: (n_samples, n_classes), rows sum to 1."""
        return get_backend().activation_forward("softmax", self._outputs(X))

    def predict(self, X) -> np.ndarray:
        """The most likely class of each sample."""
        labels = self._outputs(X).argmax(axis=1)
        return self.classes_[labels]

    def score(self, X, y) -> float:
        """Mean accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == self._check_y(y, len(X))))
