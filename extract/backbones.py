"""Visual backbones from ``keras.applications``: globally average-pooled image embeddings.

Each backbone is a ``keras.applications`` network without its classifier
(``include_top=False, pooling="avg"``), frozen, in float32, built once per process.
Images go through the family's own ``preprocess_input`` first. ResNet50 and VGG16/19
need it (caffe mode: BGR with the ImageNet channel means subtracted). EfficientNet,
ConvNeXt and MobileNetV3 carry their preprocessing inside the model (their first
layers rescale and normalise raw 0-255 pixels) and their ``preprocess_input`` passes
images through unchanged; calling it anyway keeps each family on Keras' own
contract.

Weights are ``imagenet`` (Keras' download into ``$KERAS_HOME/models``), ``none``
(random, seeded, the same in every process: for tests) or a local ``.weights.h5`` /
``.h5`` file saved from the same architecture without its top. ResNet50 here is
``extract.embed``'s model, number for number. Random EfficientNetB0 and
MobileNetV3Small shrink their input to outputs of about 1e-17 and 1e-10 (swish
and squeeze-excite gates halve small values in every block), below what float16
storage keeps: ``none`` serves shape and plumbing tests there.

Keras builds EfficientNet's input scaling for ``imagenet`` with one more
rescaling than for a weights file (Keras' own correction of its ImageNet
statistics), so a file saved from the ImageNet EfficientNetB0 gives other
numbers than ``imagenet``: for ImageNet weights use ``imagenet``, with the file
in Keras' cache folder when offline.

TensorFlow and Keras are imported lazily: importing this module pulls neither.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.schema import EMBEDDING_DIM
from common.errors import OptionError
from common.quiet import start_keras
from extract.embed import IMAGENET_ORIGIN, WeightsError, _draw_random_kernels, keras_home

MINIMUM_SIDE = 32  # pixels: every shipped network halves its input five times; keras.applications refuses less
BATCH_SIZE = 32  # images per inference call: as fast as larger batches on CPU (FACTS, ResNet50 at batch 10 and 32)
KERAS_WEIGHTS_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` network as an embedding extractor.

    Attributes
    ----------
    name : str
        Registry key, the EXTRACTOR of a feature-set name (``vgg16``).
    architecture : str
        The ``keras.applications`` constructor (``VGG16``).
    family : str
        The ``keras.applications`` submodule holding its ``preprocess_input``.
    dimension : int
        Length of the pooled embedding: channels of the last feature map.
    preprocessing_in_model : bool
        The model rescales raw pixels itself (its ``preprocess_input`` is the identity).
    imagenet_file : str
        File name of the ImageNet weights without top, as Keras caches it.
    imagenet_origin : str
        Where Keras downloads that file from.
    """

    name: str
    architecture: str
    family: str
    dimension: int
    preprocessing_in_model: bool
    imagenet_file: str
    imagenet_origin: str


def _backbone(name, architecture, family, dimension, preprocessing_in_model, imagenet_path) -> Backbone:
    file = imagenet_path.rsplit("/", 1)[-1]
    origin = imagenet_path if imagenet_path.startswith("https://") else KERAS_WEIGHTS_ROOT + imagenet_path
    return Backbone(name, architecture, family, dimension, preprocessing_in_model, file, origin)


BACKBONES = {
    backbone.name: backbone
    for backbone in (
        # Today's default set, the cache's face_embeddings.
        _backbone("resnet50", "ResNet50", "resnet50", EMBEDDING_DIM, False, IMAGENET_ORIGIN),
        # 512: channels of VGG16's block5 convolutions; VGG-Face networks share this architecture.
        _backbone("vgg16", "VGG16", "vgg16", 512, False, "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        # 512: channels of VGG19's block5 convolutions; BU-NKU's scene network (VGG-VD19) is this architecture.
        _backbone("vgg19", "VGG19", "vgg19", 512, False, "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        # 1280: channels of EfficientNetB0's final 1x1 "top_conv" (kept with include_top=False).
        _backbone(
            "efficientnetb0",
            "EfficientNetB0",
            "efficientnet",
            1280,
            True,
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        ),
        # 768: channels of ConvNeXt-Tiny's fourth stage.
        _backbone("convnext_tiny", "ConvNeXtTiny", "convnext", 768, True, "convnext/convnext_tiny_notop.h5"),
        # 576: channels of MobileNetV3Small's last convolution before the top (Keras 3 puts its 1024-d layer in the top).
        _backbone(
            "mobilenetv3small",
            "MobileNetV3Small",
            "mobilenet_v3",
            576,
            True,
            "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
    )
}


def backbone_named(name: str) -> Backbone:
    """The registered backbone called ``name``.

    Raises
    ------
    OptionError
        For a name not in BACKBONES, listing them.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise OptionError("backbone", f"{name!r} is not a backbone; expected one of {', '.join(BACKBONES)}") from None


def check_side(side: int) -> None:
    """Refuse an input side below MINIMUM_SIDE (raises OptionError)."""
    if side < MINIMUM_SIDE:
        raise OptionError("crop_size", f"must be at least {MINIMUM_SIDE} pixels for every backbone, got {side}")


def _weights_source(backbone: Backbone, weights: str) -> str | None:
    """What the keras.applications constructor's ``weights`` argument gets."""
    if weights == "none":
        return None
    if weights == "imagenet":
        _fetch_imagenet(backbone)
        return "imagenet"
    if not Path(weights).is_file():
        raise WeightsError(
            f"{weights}: no such file; expected imagenet, none, or a {backbone.architecture} include_top=False weights file (.h5 or .weights.h5)"
        )
    return weights


@functools.cache
def build_backbone(name: str, weights: str, side: int, seed: int = 0):
    """A frozen ``keras.applications`` model (include_top=False, average pooling), once per process.

    Parameters
    ----------
    name : str
        A key of BACKBONES.
    weights : str
        ``imagenet``, ``none`` (random weights seeded by ``seed``) or a weights file path.
    side : int
        Side of the square input, MINIMUM_SIDE or more.
    seed : int
        Seeds the random weights of ``none``; ignored otherwise.

    Raises
    ------
    OptionError
        For an unknown name or a side below MINIMUM_SIDE.
    WeightsError
        When the weights cannot be found, downloaded or loaded into this architecture.
    """
    keras = start_keras()

    backbone = backbone_named(name)
    check_side(side)
    source = _weights_source(backbone, weights)
    constructor = getattr(keras.applications, backbone.architecture)
    # keras.applications takes no dtype: the global policy decides it while the layers are built.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        with warnings.catch_warnings():
            # A file of another architecture warns once per layer before the error that says it all.
            warnings.filterwarnings("ignore", message="Skipping nested container", category=UserWarning)
            model = constructor(include_top=False, weights=source, input_shape=(side, side, 3), pooling="avg")
    # Keras reports a file of another architecture as ValueError, an unreadable one as OSError,
    # and a failed download (the cache in another Keras home) as a bare Exception.
    except Exception as error:  # noqa: BLE001
        if source is None:
            raise
        if source == "imagenet":
            raise _imagenet_error(backbone, error) from error
        raise WeightsError(
            f"{weights}: cannot be loaded as {backbone.architecture} include_top=False weights ({_first_sentence(error)}); "
            f"pass a file saved from keras.applications.{backbone.architecture}(include_top=False), imagenet, or none"
        ) from error
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if source is None:
        # extract.embed's seeded Glorot draws: the same random ResNet50 as today's caches, in every process.
        _draw_random_kernels(model, seed)
    model.trainable = False
    return model


def _fetch_imagenet(backbone: Backbone) -> None:
    """Put the ImageNet weights in Keras' cache (a no-op when they are there), or say where to put them.

    The constructor then finds them there. It must be given ``imagenet`` rather than
    the file: Keras builds EfficientNet's input scaling differently for ``imagenet``.
    """
    keras = start_keras()

    try:
        keras.utils.get_file(
            backbone.imagenet_file, backbone.imagenet_origin, cache_dir=str(keras_home()), cache_subdir="models"
        )
    # keras.utils.get_file re-raises every download failure as a bare Exception.
    except Exception as error:  # noqa: BLE001
        raise _imagenet_error(backbone, error) from error


def _first_sentence(error: Exception) -> str:
    """The start of a Keras error, whose later lines list every layer that failed."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(":.") if text else type(error).__name__


def _imagenet_error(backbone: Backbone, error: Exception) -> WeightsError:
    return WeightsError(
        f"imagenet: {backbone.architecture} ImageNet weights are not cached and cannot be downloaded ({_first_sentence(error)}). "
        f"Download {backbone.imagenet_origin} on a machine with internet and either put it at "
        f"{keras_home() / 'models' / backbone.imagenet_file} or pass `weights` /path/to/{backbone.imagenet_file}; "
        "`weights` none runs with random weights"
    )


def preprocess(images: np.ndarray, name: str) -> np.ndarray:
    """The backbone family's own ``preprocess_input``.

    Parameters
    ----------
    images : np.ndarray
        (N, S, S, 3) uint8 RGB.
    name : str
        A key of BACKBONES.

    Returns
    -------
    np.ndarray
        (N, S, S, 3) float32 model input (raw 0-255 values where the model preprocesses itself).
    """
    family = importlib.import_module(f"keras.applications.{backbone_named(name).family}")
    return np.asarray(family.preprocess_input(images.astype(np.float32)), dtype=np.float32)


def embed_images(
    images: np.ndarray, name: str, weights: str = "imagenet", seed: int = 0, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """Pooled embeddings of square images by one backbone, in batches.

    Parameters
    ----------
    images : np.ndarray
        (N, S, S, 3) uint8 RGB, S at least MINIMUM_SIDE; the model's input side is S.
    name : str
        A key of BACKBONES.
    weights : str
        ``imagenet``, ``none`` or a weights file path (see ``build_backbone``).
    seed : int
        Seeds the random weights of ``none``.
    batch_size : int
        Images per inference call; the numbers do not depend on it.

    Returns
    -------
    np.ndarray
        (N, D) float32, D = ``BACKBONES[name].dimension``.

    Raises
    ------
    OptionError, WeightsError
        As in ``build_backbone``.
    """
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise ValueError(f"images must be (N, S, S, 3), got {images.shape}")
    model = build_backbone(name, weights, images.shape[1], seed)
    outputs = [
        np.asarray(model.predict_on_batch(preprocess(images[start : start + batch_size], name)), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, BACKBONES[name].dimension), np.float32)
