"""extract/embed.py: the real Keras ResNet50, its runtimes, preprocessing and weights loading."""

from __future__ import annotations

import shutil
import sys

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

import extract.embed
from bench.embed_bench import face_crops
from cache.manifest import config_hash
from common.errors import ExitCode, OptionError
from common.options import replace
from extract.cli import app
from extract.config import ExtractOptions
from extract.embed import (
    FLOAT16_ROUNDOFF,
    FLOAT16_SMALLEST_NORMAL,
    IMAGENET_FILE,
    REDUCED_PRECISION_RUNTIMES,
    RUNTIMES,
    EmbedOptions,
    RuntimeUnavailableError,
    WeightsError,
    build_resnet,
    check_runtime,
    embed,
    embed_float32,
    gpu_visible,
    imagenet_weights_path,
    loading_line,
    openvino_model,
    preprocess,
    resolve_runtime,
    within_float16_storage,
)

SIZE = 32  # ResNet50's smallest input: the real architecture at test speed
# Hash of ExtractOptions().feature_config() computed before --runtime existed: a float32
# runtime must never change the identity of a cache built with today's defaults.
DEFAULT_CONFIG_HASH = "67c78ba2f6c9ab32"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port on loopback: nothing listens, the connection is refused at once
runner = CliRunner()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file saved from a randomly initialised include_top=False ResNet50."""
    keras.utils.set_random_seed(123)
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = tmp_path_factory.mktemp("weights") / "resnet50.weights.h5"
    model.save_weights(path)
    return path


@pytest.fixture
def without_openvino(monkeypatch):
    """This process as if openvino were not installed (``import openvino`` raises ImportError)."""
    resolve_runtime.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)
    yield
    resolve_runtime.cache_clear()


def assert_equal_within_float16(ours: np.ndarray, keras_output: np.ndarray) -> None:
    """Differences below what float16 storage rounds away anyway (assert_allclose shows the worst ones)."""
    np.testing.assert_allclose(ours, keras_output, rtol=FLOAT16_ROUNDOFF, atol=FLOAT16_SMALLEST_NORMAL)
    assert within_float16_storage(ours, keras_output)


def test_float16_storage_precision_separates_float32_noise_from_bf16_rounding():
    reference = np.random.default_rng(3).uniform(0.0, 40.0, 2048).astype(np.float32)
    assert within_float16_storage(reference * np.float32(1 + 2.0**-13), reference)  # a quarter of float16's step
    assert not within_float16_storage(reference * np.float32(1 + 2.0**-8), reference)  # bfloat16's rounding step
    assert not within_float16_storage(reference + np.float32(0.13), reference)  # OpenVINO bf16's measured max diff


def test_the_model_is_built_once_per_process():
    assert build_resnet("none", SIZE) is build_resnet("none", SIZE)


def test_openvino_converts_once_per_process():
    assert openvino_model("none", SIZE) is openvino_model("none", SIZE)


def test_preprocessing_is_caffe_mode():
    crops = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    expected = crops[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(preprocess(crops), expected, rtol=1e-6)


@pytest.mark.parametrize("runtime", ["keras", "openvino"])
def test_embeddings_equal_keras_resnet50_loaded_from_the_same_file(weights_file, runtime):
    crops = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    ours = embed(crops, EmbedOptions(weights=str(weights_file), runtime=runtime, batch_size=2), 0)
    reference = keras.applications.ResNet50(
        include_top=False, weights=str(weights_file), input_shape=(SIZE, SIZE, 3), pooling="avg"
    )
    expected = reference.predict(keras.applications.resnet50.preprocess_input(crops.astype(np.float32)), verbose=0)
    assert ours.shape == (5, 2048) and ours.dtype == np.float16
    np.testing.assert_allclose(ours.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("size", [32, 64])
def test_openvino_float32_equals_keras_within_float16_precision_on_face_crops(size):
    crops = face_crops(6, size)
    keras_options = EmbedOptions(weights="none", runtime="keras", batch_size=4)
    keras_output = embed_float32(crops, keras_options, 0)
    assert keras_output.max() > 1.0  # real activations, not an all-zero output that would match anything
    openvino_output = embed_float32(crops, replace(keras_options, runtime="openvino"), 0)
    assert_equal_within_float16(openvino_output, keras_output)


@pytest.mark.parametrize("runtime", REDUCED_PRECISION_RUNTIMES)
def test_reduced_precision_runtimes_stay_close_to_keras(runtime):
    try:
        check_runtime(runtime)
    except RuntimeUnavailableError as error:
        pytest.skip(str(error))  # bf16 needs a CPU with bf16 instructions
    crops = face_crops(6, SIZE)
    keras_output = embed_float32(crops, EmbedOptions(weights="none", runtime="keras"), 0)
    ours = embed_float32(crops, EmbedOptions(weights="none", runtime=runtime), 0)
    cosine = np.sum(ours * keras_output, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(keras_output, axis=1))
    assert cosine.min() > 0.999


def test_random_weights_are_reproducible_from_the_seed():
    crops = np.random.default_rng(2).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    options = EmbedOptions(weights="none", runtime="keras")
    first = embed(crops, options, 5)
    build_resnet.cache_clear()
    assert np.array_equal(first, embed(crops, options, 5))


def test_a_local_weights_file_is_loaded_exactly(weights_file):
    keras.utils.set_random_seed(123)
    saved = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    loaded = build_resnet(str(weights_file), SIZE)
    assert len(loaded.get_weights()) == len(saved.get_weights())
    for ours, theirs in zip(loaded.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_a_missing_weights_file_is_a_clear_error_naming_it(tmp_path):
    absent = tmp_path / "absent.weights.h5"
    with pytest.raises(WeightsError, match="not found") as caught:
        build_resnet(str(absent), SIZE)
    assert str(absent) in str(caught.value)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_file_of_another_architecture_is_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match="cannot load"):
        build_resnet(str(path), SIZE)


def test_imagenet_weights_that_cannot_be_downloaded_say_how_to_get_them(tmp_path, monkeypatch):
    # An empty Keras cache and a real download that fails at once: nothing is fetched from the internet.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(extract.embed, "IMAGENET_ORIGIN", UNREACHABLE + IMAGENET_FILE)
    with pytest.raises(WeightsError) as caught:
        imagenet_weights_path()
    message = caught.value.command_line_message()
    assert IMAGENET_FILE in message and str(tmp_path / "models" / IMAGENET_FILE) in message
    assert message.startswith("--weights imagenet: ")
    assert "pass --weights /path/to/" in message and "--weights none runs with random weights" in message
    assert "pass `weights` /path/to/" in str(caught.value)  # the library names the option, not the flag
    assert not (tmp_path / "models" / IMAGENET_FILE).exists()


def test_default_options_keep_the_config_hash_of_caches_built_before_runtimes():
    assert config_hash(ExtractOptions().feature_config()) == DEFAULT_CONFIG_HASH
    assert "runtime" not in ExtractOptions().feature_config()


@pytest.mark.parametrize("runtime", ["auto", "keras", "openvino"])
def test_float32_runtimes_share_the_cache_config(runtime):
    assert config_hash(ExtractOptions.from_dict({"runtime": runtime}).feature_config()) == DEFAULT_CONFIG_HASH


@pytest.mark.parametrize("runtime", REDUCED_PRECISION_RUNTIMES)
def test_reduced_precision_runtimes_are_recorded_in_the_config(runtime):
    config = ExtractOptions.from_dict({"runtime": runtime}).feature_config()
    assert config["runtime"] == runtime and config_hash(config) != DEFAULT_CONFIG_HASH
    assert ExtractOptions.from_dict(config).embed.runtime == runtime


def test_an_unknown_runtime_is_refused():
    with pytest.raises(OptionError, match="^runtime must be one of"):
        EmbedOptions(runtime="onnx")
    with pytest.raises(OptionError, match="^runtime must be one of"):
        resolve_runtime("onnx")


def test_auto_picks_keras_on_a_gpu_else_openvino():
    resolve_runtime.cache_clear()
    assert resolve_runtime("auto") == ("keras" if gpu_visible() else "openvino")


def test_auto_falls_back_to_keras_without_openvino(without_openvino):
    assert resolve_runtime("auto") == "keras"


def test_openvino_forced_without_openvino_is_a_clear_error(without_openvino):
    with pytest.raises(RuntimeUnavailableError, match="pip install openvino"):
        embed(face_crops(6, SIZE), EmbedOptions(weights="none", runtime="openvino"), 0)


def test_the_cli_exits_2_before_touching_the_cache_when_openvino_is_missing(
    clip_folder, tmp_path, without_openvino, tiny_flags
):
    result = runner.invoke(
        app, [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *tiny_flags, "--runtime", "openvino"]
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--runtime openvino needs the openvino package" in result.output
    assert not list((tmp_path / "cache").glob("*.h5"))


def test_float32_runtimes_extend_one_cache_and_reduced_precision_is_refused_there(clip_folder, tmp_path, tiny_flags):
    data = tmp_path / "validation"
    shutil.copytree(clip_folder / "validation", data)
    command = [str(data), "--cache", str(tmp_path / "cache"), *tiny_flags]
    first = runner.invoke(app, [*command, "--runtime", "keras"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*command, "--runtime", "openvino"])
    assert again.exit_code == 0 and "1 already cached" in again.output, again.output
    other = runner.invoke(app, [*command, "--runtime", "keras-mixed"])  # runs on any CPU, unlike bf16
    assert other.exit_code == ExitCode.USAGE, other.output
    assert "different extraction config" in other.output and "runtime" in other.output


@pytest.mark.parametrize("runtime", ["keras", "openvino"])
def test_a_crops_embedding_does_not_depend_on_the_other_crops_of_its_batch(runtime):
    crops = face_crops(12, SIZE)
    options = EmbedOptions(weights="none", runtime=runtime, batch_size=12)
    together = embed(crops, options, 0)
    np.testing.assert_array_equal(embed(crops[::-1], options, 0)[::-1], together)
    np.testing.assert_array_equal(embed(crops[3:8], replace(options, batch_size=5), 0), together[3:8])


def test_every_runtime_says_what_its_start_up_involves():
    lines = {runtime: loading_line(runtime) for runtime in RUNTIMES}
    assert all(line.startswith("loading TensorFlow and ResNet50 (Keras") for line in lines.values())
    assert all("OpenVINO" in lines[runtime] for runtime in ("auto", "openvino", "openvino-bf16"))
    assert not any("OpenVINO" in lines[runtime] for runtime in ("keras", "keras-mixed"))
