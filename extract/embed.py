"""ResNet50 embeddings of face crops (Keras; TensorFlow imported lazily)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

# Keras' own origin and checksum for the ImageNet ResNet50 without its top layer.
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


class WeightsError(Exception):
    """The requested ResNet50 weights cannot be found or loaded."""


def keras_home() -> Path:
    """Keras' cache folder: ``$KERAS_HOME`` or ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()


def imagenet_weights_path() -> Path:
    """Path of the ImageNet weights in Keras' cache, downloading them on first use.

    Raises
    ------
    WeightsError
        When the file is not cached and cannot be downloaded, saying where to get it.
    """
    import keras

    try:
        return Path(keras.utils.get_file(IMAGENET_FILE, IMAGENET_ORIGIN, cache_dir=str(keras_home()), cache_subdir="models", file_hash=IMAGENET_MD5))
    # keras.utils.get_file re-raises every download failure as a bare Exception.
    except Exception as error:  # noqa: BLE001
        raise WeightsError(
            f"ImageNet weights are not cached and cannot be downloaded ({error}). "
            f"Download {IMAGENET_ORIGIN} on a machine with internet and either put it at {keras_home() / 'models' / IMAGENET_FILE} "
            f"or pass --weights /path/to/{IMAGENET_FILE}; --weights none runs with random weights"
        ) from error


@functools.cache
def build_resnet(weights: str, crop_size: int, seed: int = 0):
    """Frozen ResNet50 (include_top=False, average pooling), built once per process.

    Parameters
    ----------
    weights : str
        ``imagenet``, ``none`` (random weights seeded by ``seed``) or a weights file path.
    crop_size : int
        Side of the square input (32 or more).
    """
    import keras

    if weights == "none":
        keras.utils.set_random_seed(seed)
        source = None
    elif weights == "imagenet":
        source = str(imagenet_weights_path())
    else:
        if not Path(weights).is_file():
            raise WeightsError(f"{weights}: weights file not found; expected a ResNet50 include_top=False weights file (.h5 or .weights.h5)")
        source = weights
    try:
        model = keras.applications.ResNet50(include_top=False, weights=source, input_shape=(crop_size, crop_size, 3), pooling="avg")
    except (ValueError, OSError) as error:
        raise WeightsError(f"{weights}: cannot load as ResNet50 include_top=False weights ({error})") from error
    model.trainable = False
    return model


def preprocess(crops: np.ndarray) -> np.ndarray:
    """ImageNet (caffe mode) preprocessing that matches Keras' ResNet50 weights.

    Parameters
    ----------
    crops : np.ndarray
        (N, S, S, 3) uint8 RGB.

    Returns
    -------
    np.ndarray
        (N, S, S, 3) float32 BGR with the ImageNet channel means subtracted.
    """
    from keras.applications.resnet50 import preprocess_input

    return preprocess_input(crops.astype(np.float32))


def embed(crops: np.ndarray, weights: str, crop_size: int, seed: int = 0, batch_size: int = 32) -> np.ndarray:
    """ResNet50 embeddings of face crops.

    Parameters
    ----------
    crops : np.ndarray
        (N, S, S, 3) uint8 RGB.

    Returns
    -------
    np.ndarray
        (N, 2048) float16.
    """
    model = build_resnet(weights, crop_size, seed)
    outputs = [np.asarray(model.predict_on_batch(preprocess(crops[start : start + batch_size]))) for start in range(0, len(crops), batch_size)]
    return np.concatenate(outputs).astype(np.float16)
