import numpy as np
import pytest

from minicnn.classic import NNClassifier
from minicnn.gradcheck import numerical_gradient, relative_error


def blobs(n=300, seed=0):
    """Three Gaussian blobs in 4-D: an easy problem a working MLP must solve."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]])
    return centres[y] + rng.normal(0, 0.5, (n, 4)), y


def test_learns_blobs_and_follows_the_estimator_conventions():
    X, y = blobs()
    nn = NNClassifier(n_classes=3, n_features=4, n_hidden_units=10, l2=0.01, epochs=200,
                      learning_rate=0.01, n_batches=5, random_seed=1)
    assert nn.fit(X, y) is nn
    assert nn.score(X, y) > 0.95
    assert len(nn.error_) == 200 and nn.error_[-1] < nn.error_[0] / 3
    proba = nn.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(nn.predict(X), nn.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(nn.classes_, [0, 1, 2])
    assert nn.get_params()["n_hidden_units"] == 10
    assert nn.set_params(epochs=3).epochs == 3


def test_same_seed_same_model():
    X, y = blobs(60)
    make = lambda: NNClassifier(3, 4, epochs=5, n_batches=3, random_seed=7).fit(X, y)  # noqa: E731
    np.testing.assert_array_equal(make().predict_proba(X), make().predict_proba(X))


@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.2, 0.7)])
def test_error_gradient_with_penalties(float64, l1, l2):
    """dE/dW (summed cross-entropy + L2/2 ||W||^2 + L1 ||W||_1) against central differences."""
    X, y = blobs(20)
    nn = NNClassifier(3, 4, n_hidden_units=5, l1=l1, l2=l2, epochs=1, random_seed=0).fit(X, y)
    targets = np.eye(3)[y]
    nn._error_and_gradients(X, targets)
    for layer in nn._layers:
        analytic = layer.grads["kernel"].copy()
        kernel = layer.params["kernel"]

        def error(w, layer=layer):
            layer.params["kernel"] = w
            return nn._error_and_gradients(X, targets)

        numeric = numerical_gradient(error, kernel.copy())
        assert relative_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("kwargs, X, y, message", [
    ({}, np.zeros((5, 3)), np.zeros(5), r"X must have shape \(n_samples, 4\)"),
    ({}, np.zeros((5, 4)), np.zeros(4), "y must have shape"),
    ({}, np.zeros((5, 4)), np.array([0, 1, 2, 3, 0]), r"class indices in \[0, 3\)"),
    ({}, np.full((5, 4), np.nan), np.zeros(5), "NaN or inf"),
    ({"n_batches": 0}, np.zeros((5, 4)), np.zeros(5), "n_batches must be a positive int"),
    ({"l2": -1}, np.zeros((5, 4)), np.zeros(5), "l2 must be a non-negative number"),
])
def test_bad_input(kwargs, X, y, message):
    with pytest.raises(ValueError, match=message):
        NNClassifier(3, 4, **kwargs).fit(X, y)


def test_predict_before_fit_and_unknown_parameter():
    with pytest.raises(RuntimeError, match="not fitted"):
        NNClassifier(3, 4).predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="invalid parameter 'hidden'"):
        NNClassifier(3, 4).set_params(hidden=3)
