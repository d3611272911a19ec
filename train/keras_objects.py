"""Keras objects of our own, registered so that saved models load in safe mode.

Importing this module imports Keras; the rest of ``train`` imports it lazily.
"""

from __future__ import annotations

import functools
import sys

import keras
from keras import ops
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

PACKAGE = "traitcache"  # registration namespace: names saved in model.keras
# Keras releases on which FusedAdam was checked against keras.optimizers.Adam
# (tests/train/test_model.py): it reads Adam's private slots (_get_variable_index,
# _momentums, _velocities), which another release may move without notice. Widen
# it after that test passes on a new release.
FUSED_KERAS_RELEASES = SpecifierSet(">=3.15,<3.16")


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """Learned attention pooling over time (additive scoring, softmax weights).

    Input (batch, T, features) -> output (batch, features): the sum over t of
    softmax_t(v . tanh(W h_t + b)) h_t.

    Parameters
    ----------
    units : int
        Width of the scoring layer W.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        features = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(features, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score = self.add_weight(name="score", shape=(self.units, 1), initializer="glorot_uniform")

    def call(self, inputs):
        energies = ops.matmul(ops.tanh(ops.matmul(inputs, self.kernel) + self.bias), self.score)
        weights = ops.softmax(energies, axis=1)
        return ops.sum(weights * inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
def mean_accuracy(y_true, y_pred):
    """ChaLearn mean accuracy per video: 1 - mean absolute error over the traits.

    Parameters
    ----------
    y_true, y_pred : tensor
        (batch, 5) scores in [0, 1].

    Returns
    -------
    tensor
        (batch,) accuracies; Keras averages them over videos, giving 1 - MAE.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    return 1.0 - ops.mean(ops.abs(y_true - y_pred), axis=-1)


def fused_update_problem(version: str) -> str | None:
    """Why `FusedAdam` should not use its fused kernel under Keras ``version``.

    Parameters
    ----------
    version : str
        A Keras release, e.g. ``keras.version()``.

    Returns
    -------
    str or None
        A one-line warning when ``version`` lies outside `FUSED_KERAS_RELEASES` (or
        is not a version); None when the fused kernel was checked on it.
    """
    try:
        if Version(version) in FUSED_KERAS_RELEASES:
            return None
    except InvalidVersion:
        pass
    return (
        f"warning: FusedAdam was checked on Keras {FUSED_KERAS_RELEASES} only, not {version}:"
        " training uses Keras' own Adam (the same updates, slower steps)"
    )


@functools.cache
def _warn_once(message: str) -> None:
    print(message, file=sys.stderr)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable updated by TensorFlow's fused ``ResourceApplyAdam`` kernel.

    The same update as ``keras.optimizers.Adam`` (m, v, then the variable less
    lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)), in one pass
    over each variable instead of about a dozen element-wise ops: on the seed
    head's 2.2 M weights at batch 8 this cut a training step's CPU time by about a
    quarter. TensorFlow backend only; ``train.fit.compile_head`` gives the other
    backends plain Adam.

    The kernel is handed Adam's own slot variables, which Keras keeps in private
    attributes; on a Keras release outside `FUSED_KERAS_RELEASES` the optimizer
    says so once on standard error and runs Keras' Adam update instead.

    Parameters
    ----------
    keras_version : str
        The Keras release to judge by; the one imported unless a test says otherwise.
    """

    def __init__(self, *arguments, keras_version: str = keras.version(), **keywords):
        super().__init__(*arguments, **keywords)
        problem = fused_update_problem(keras_version)
        self.fused = problem is None
        if problem:
            _warn_once(problem)

    def update_step(self, gradient, variable, learning_rate):
        if not self.fused:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=ops.power(beta_1, step),
            beta2_power=ops.power(beta_2, step),
            lr=ops.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype),
        )
