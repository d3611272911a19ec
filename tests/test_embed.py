"""extract/embed.py: the real Keras ResNet50, its preprocessing and weights loading."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from extract.embed import WeightsError, build_resnet, embed, imagenet_weights_path, preprocess

SIZE = 32  # ResNet50's smallest input: the real architecture at test speed


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file saved from a randomly initialised include_top=False ResNet50."""
    keras.utils.set_random_seed(123)
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = tmp_path_factory.mktemp("weights") / "resnet50.weights.h5"
    model.save_weights(path)
    return path


def test_the_model_is_built_once_per_process():
    assert build_resnet("none", SIZE) is build_resnet("none", SIZE)


def test_preprocessing_is_caffe_mode():
    crops = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    expected = crops[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(preprocess(crops), expected, rtol=1e-6)


def test_embeddings_equal_keras_resnet50_loaded_from_the_same_file(weights_file):
    crops = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    ours = embed(crops, str(weights_file), SIZE, batch_size=2)
    reference = keras.applications.ResNet50(include_top=False, weights=str(weights_file), input_shape=(SIZE, SIZE, 3), pooling="avg")
    expected = reference.predict(keras.applications.resnet50.preprocess_input(crops.astype(np.float32)), verbose=0)
    assert ours.shape == (5, 2048) and ours.dtype == np.float16
    np.testing.assert_allclose(ours.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_random_weights_are_reproducible_from_the_seed():
    crops = np.random.default_rng(2).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    first = embed(crops, "none", SIZE, seed=5)
    build_resnet.cache_clear()
    assert np.array_equal(first, embed(crops, "none", SIZE, seed=5))


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        build_resnet(str(tmp_path / "absent.h5"), SIZE)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_file_of_another_architecture_is_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match="cannot load"):
        build_resnet(str(path), SIZE)


def test_imagenet_weights_come_from_keras_cache_or_a_clear_instruction(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    try:
        path = imagenet_weights_path()
    except WeightsError as error:
        # No internet (as on the build machines): the message says how to fix it.
        assert "--weights" in str(error) and str(tmp_path) in str(error)
    else:
        assert path.is_file() and path.parent == tmp_path / "models"
