"""Heads: layers, parameter counts from the layer sizes, saving in safe mode."""

import keras
import numpy as np
import pytest

from common.errors import OptionError
from common.options import replace
from train.config import HEADS, FitOptions
from train.model import build_head

FRAMES = 4
DIMENSIONS = (2048, 68)  # face:resnet50 and audio:pyaa, the default sets
OTHER_DIMENSIONS = (512 + 1280, 88)  # face:vgg16 beside scene:efficientnetb0, and audio:egemaps
TINY = FitOptions(visual_units=12, visual_projection=6, audio_units=4, lstm_units=3, attention_units=5)


def dense(inputs, units):
    return inputs * units + units


def lstm(inputs, units):
    return 4 * (units * (inputs + units) + units)


def expected_parameters(head, options, dimensions=DIMENSIONS):
    """Parameter count implied by the layer sizes of each head and its input widths."""
    visual_dimension, audio_dimension = dimensions
    visual = dense(visual_dimension, options.visual_units) + dense(options.visual_units, options.visual_projection)
    audio = dense(audio_dimension, options.audio_units)
    fused = {
        "seed": options.visual_projection + options.audio_units,
        "audio": options.audio_units,
        "visual": options.visual_projection + 1,
    }
    fused_width = fused.get(head, options.visual_projection + options.audio_units + 1)
    streams = {"seed": visual + audio, "audio": audio, "visual": visual}.get(head, visual + audio)
    if head == "bilstm":
        return streams + 2 * lstm(fused_width, options.lstm_units) + dense(2 * options.lstm_units, 5)
    if head == "attention":
        attention = options.lstm_units * options.attention_units + options.attention_units + options.attention_units
        return streams + lstm(fused_width, options.lstm_units) + attention + dense(options.lstm_units, 5)
    return streams + lstm(fused_width, options.lstm_units) + dense(options.lstm_units, 5)


def test_seed_head_is_the_original_layer_for_layer():
    options = FitOptions()
    model = build_head(options, 10, DIMENSIONS)
    assert model.count_params() == dense(2048, 1024) + dense(1024, 128) + dense(68, 32) + lstm(128 + 32, 10) + dense(
        10, 5
    )
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    described = []
    for layer in layers:
        config = layer.get_config()
        described.append(
            (
                type(layer).__name__,
                config.get("units"),
                config.get("activation"),
                config.get("rate"),
                config.get("return_sequences"),
            )
        )
    # The original's TimeDistributed(Dense) layers are Dense on the (batch, T, features) sequence: per frame, the same weights.
    assert sorted(described, key=str) == sorted(
        [
            ("Dense", 1024, "relu", None, None),
            ("Dense", 128, "linear", None, None),
            ("Dropout", None, None, 0.2, None),
            ("Dense", 32, "linear", None, None),
            ("Concatenate", None, None, None, None),
            ("LSTM", 10, "tanh", None, True),
            ("Dense", 5, "sigmoid", None, None),
            ("GlobalAveragePooling1D", None, None, None, None),
        ],
        key=str,
    )
    assert [tensor.shape for tensor in model.inputs] == [(None, 10, 2048), (None, 10, 68)]


@pytest.mark.parametrize("dimensions", [DIMENSIONS, OTHER_DIMENSIONS])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_has_the_parameter_count_its_layers_and_input_widths_imply(head, dimensions):
    model = build_head(replace(TINY, head=head), FRAMES, dimensions)
    assert model.count_params() == expected_parameters(head, TINY, dimensions)
    widths = {"visual": dimensions[0], "audio": dimensions[1], "face": 1}
    assert all(tensor.shape[-1] == widths[tensor.name] for tensor in model.inputs)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_maps_its_inputs_to_five_scores_in_the_unit_interval(head):
    model = build_head(replace(TINY, head=head), FRAMES, DIMENSIONS)
    rng = np.random.default_rng(0)
    shapes = {"visual": (3, FRAMES, 2048), "audio": (3, FRAMES, 68), "face": (3, FRAMES, 1)}
    inputs = {tensor.name: rng.normal(size=shapes[tensor.name]).astype(np.float32) for tensor in model.inputs}
    scores = np.asarray(model.predict_on_batch(inputs))
    assert scores.shape == (3, 5)
    assert np.all((scores > 0) & (scores < 1))
    expected_inputs = {"seed": {"visual", "audio"}, "audio": {"audio"}, "visual": {"visual", "face"}}.get(
        head, {"visual", "audio", "face"}
    )
    assert set(inputs) == expected_inputs


def test_unknown_head_is_refused():
    with pytest.raises(
        OptionError, match="head must be one of seed, bilstm, attention, visual, audio, got 'transformer'"
    ):
        replace(TINY, head="transformer")


def test_attention_head_saves_and_loads_in_safe_mode(tmp_path):
    model = build_head(replace(TINY, head="attention"), FRAMES, DIMENSIONS)
    rng = np.random.default_rng(1)
    inputs = {
        "visual": rng.normal(size=(2, FRAMES, 2048)).astype(np.float32),
        "audio": rng.normal(size=(2, FRAMES, 68)).astype(np.float32),
        "face": np.ones((2, FRAMES, 1), np.float32),
    }
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded.predict_on_batch(inputs), model.predict_on_batch(inputs), rtol=1e-6)


def test_attention_pooling_is_a_convex_combination_over_time():
    from train.keras_objects import AttentionPooling

    layer = AttentionPooling(4)
    same = np.tile(np.arange(6, dtype=np.float32), (2, 5, 1))
    np.testing.assert_allclose(np.asarray(layer(same)), same[:, 0], rtol=1e-6)
    varied = np.random.default_rng(2).normal(size=(2, 5, 6)).astype(np.float32)
    pooled = np.asarray(layer(varied))
    assert np.all(pooled <= varied.max(axis=1) + 1e-6) and np.all(pooled >= varied.min(axis=1) - 1e-6)


def test_mixed_precision_heads_still_output_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_head(TINY, FRAMES, DIMENSIONS)
        assert model.get_layer("visual_dense").compute_dtype == "float16"
        assert model.outputs[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def weights_after_five_steps(optimizer):
    """The TINY seed head's weights before and after five steps of ``optimizer`` on one seeded batch."""
    rng = np.random.default_rng(4)
    inputs = {
        "visual": rng.normal(size=(8, FRAMES, 2048)).astype("float32"),
        "audio": rng.normal(size=(8, FRAMES, 68)).astype("float32"),
    }
    labels = rng.uniform(0.3, 0.7, (8, 5)).astype("float32")
    keras.utils.set_random_seed(2)
    model = build_head(TINY, FRAMES, DIMENSIONS)
    model.compile(optimizer=optimizer, loss="mse")
    initial = model.get_weights()
    for _ in range(5):
        model.train_on_batch(inputs, labels)
    return initial, model.get_weights()


def test_fused_adam_makes_the_updates_of_keras_adam():
    from train.keras_objects import FusedAdam

    fused = FusedAdam(1e-3)
    assert fused.fused, "the installed Keras is outside FUSED_KERAS_RELEASES: this test would check the fallback"
    weights = {}
    for name, optimizer in (("keras", keras.optimizers.Adam(1e-3)), ("fused", fused)):
        initial, weights[name] = weights_after_five_steps(optimizer)
        assert not np.allclose(weights[name][0], initial[0], rtol=0, atol=1e-4), "the weights should have moved"
    for keras_weight, fused_weight in zip(weights["keras"], weights["fused"], strict=True):
        np.testing.assert_allclose(fused_weight, keras_weight, rtol=1e-5, atol=1e-7)


def test_fused_adam_is_trusted_only_on_the_keras_releases_it_was_checked_on():
    from train.keras_objects import fused_update_problem

    for checked in ("3.15.0", "3.15.1", "3.15.12"):
        assert fused_update_problem(checked) is None, checked
    for other in ("3.14.9", "3.16.0", "4.0.0", "2.15.0", "not a version"):
        problem = fused_update_problem(other)
        assert problem.startswith("warning: ") and other in problem and "Keras' own Adam" in problem, other
        assert "\n" not in problem


def test_outside_those_releases_fused_adam_warns_once_and_runs_keras_adam(capsys):
    from train.keras_objects import FusedAdam, fused_update_problem

    fallback = FusedAdam(1e-3, keras_version="3.99.0")
    FusedAdam(1e-3, keras_version="3.99.0")
    assert not fallback.fused
    assert capsys.readouterr().err == fused_update_problem("3.99.0") + "\n"  # once per process
    _, keras_weights = weights_after_five_steps(keras.optimizers.Adam(1e-3))
    _, fallback_weights = weights_after_five_steps(fallback)
    for keras_weight, fallback_weight in zip(keras_weights, fallback_weights, strict=True):
        np.testing.assert_array_equal(fallback_weight, keras_weight)


def test_per_frame_dense_layers_act_on_each_frame_alone():
    model = build_head(replace(TINY, head="visual"), FRAMES, DIMENSIONS)
    frames = np.random.default_rng(5).normal(size=(3, FRAMES, 2048)).astype("float32")
    dense_layer = model.get_layer("visual_dense")
    whole = keras.ops.convert_to_numpy(dense_layer(frames))
    one_at_a_time = np.stack(
        [keras.ops.convert_to_numpy(dense_layer(frames[:, step])) for step in range(FRAMES)], axis=1
    )
    np.testing.assert_allclose(whole, one_at_a_time, rtol=1e-5, atol=1e-6)
