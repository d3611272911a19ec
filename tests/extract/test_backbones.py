"""extract/backbones.py: the real keras.applications backbones, their preprocessing, weights and batching."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import extract.backbones
from bench.embed_bench import face_crops
from common.errors import OptionError
from extract.backbones import (
    BACKBONES,
    MINIMUM_SIDE,
    build_backbone,
    embed_images,
    preprocess,
)
from extract.embed import EmbedOptions, WeightsError, embed_float32, within_float16_storage

SIDE = MINIMUM_SIDE  # the smallest input every backbone takes: the real architectures at test speed
IMAGES = face_crops(5, SIDE)
BATCH = 2  # images 2 and 3 share a batch, image 4 is alone in one
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port on loopback: nothing listens, the connection is refused at once
CAFFE_FAMILY = [name for name, backbone in BACKBONES.items() if not backbone.preprocessing_in_model]
SELF_PREPROCESSING = [name for name, backbone in BACKBONES.items() if backbone.preprocessing_in_model]


@pytest.fixture(scope="module")
def embeddings() -> dict[str, np.ndarray]:
    """Every backbone's random-weight embeddings of IMAGES, each model built once."""
    return {name: embed_images(IMAGES, name, "none", batch_size=BATCH) for name in BACKBONES}


def same_within_float16(values: np.ndarray, reference: np.ndarray) -> bool:
    """Equal within float16 storage precision, relative to the reference's scale (random
    EfficientNet and MobileNetV3 outputs are far below float16's smallest normal number)."""
    scale = float(np.abs(reference).max())
    return scale > 0 and within_float16_storage(values / scale, reference / scale)


@pytest.mark.parametrize("name", BACKBONES)
def test_embeddings_are_float32_rows_of_the_declared_dimension(name, embeddings):
    model = build_backbone(name, "none", SIDE)
    assert model.output_shape == (None, BACKBONES[name].dimension)
    assert embeddings[name].shape == (len(IMAGES), BACKBONES[name].dimension)
    assert embeddings[name].dtype == np.float32 and np.isfinite(embeddings[name]).all()
    assert len({row.tobytes() for row in embeddings[name]}) == len(IMAGES)


@pytest.mark.parametrize("name", BACKBONES)
def test_an_image_embeds_the_same_alone_as_in_a_batch(name, embeddings):
    alone = embed_images(IMAGES[3:4], name, "none")
    assert same_within_float16(alone[0], embeddings[name][3])


@pytest.mark.parametrize("name", CAFFE_FAMILY)
def test_caffe_mode_backbones_embed_their_preprocessed_pixels(name, embeddings):
    model = build_backbone(name, "none", SIDE)
    family = importlib.import_module(f"keras.applications.{BACKBONES[name].family}")
    pixels = IMAGES.astype(np.float32)
    assert same_within_float16(embeddings[name], model.predict_on_batch(family.preprocess_input(pixels.copy())))
    assert not same_within_float16(embeddings[name], model.predict_on_batch(pixels))


@pytest.mark.parametrize("name", SELF_PREPROCESSING)
def test_backbones_that_preprocess_inside_get_raw_pixels(name):
    np.testing.assert_array_equal(preprocess(IMAGES, name), IMAGES.astype(np.float32))
    first_layer = build_backbone(name, "none", SIDE).layers[1]
    assert isinstance(first_layer, keras.layers.Rescaling | keras.layers.Normalization)


def test_resnet50_gives_the_numbers_of_extract_embed(embeddings):
    options = EmbedOptions(weights="none", runtime="keras", batch_size=BATCH)
    np.testing.assert_array_equal(embeddings["resnet50"], embed_float32(IMAGES, options, seed=0))


def test_random_weights_are_the_same_in_another_process_and_change_with_the_seed(embeddings, tmp_path):
    program = (
        "import numpy as np, keras; keras.utils.set_random_seed(99)\n"  # other global seed state: no effect
        "from bench.embed_bench import face_crops; from extract.backbones import embed_images\n"
        f"np.save({str(tmp_path / 'vgg16.npy')!r}, embed_images(face_crops(5, {SIDE}), 'vgg16', 'none', batch_size={BATCH}))"
    )
    subprocess.run([sys.executable, "-c", program], check=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
    np.testing.assert_array_equal(np.load(tmp_path / "vgg16.npy"), embeddings["vgg16"])
    other_seed = embed_images(IMAGES, "vgg16", "none", seed=1, batch_size=BATCH)
    assert not same_within_float16(other_seed, embeddings["vgg16"])


def test_a_weights_file_of_the_same_architecture_loads_and_of_another_is_refused(embeddings, tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    build_backbone("vgg16", "none", SIDE).save_weights(path)
    np.testing.assert_array_equal(embed_images(IMAGES, "vgg16", str(path), batch_size=BATCH), embeddings["vgg16"])
    with pytest.raises(WeightsError) as caught:
        build_backbone("resnet50", str(path), SIDE)
    message = caught.value.command_line_message()
    assert message.startswith(f"--weights {path}: cannot be loaded as ResNet50 include_top=False weights (")
    assert message.endswith("pass a file saved from keras.applications.ResNet50(include_top=False), imagenet, or none")
    assert "\n" not in message


def test_a_missing_weights_file_is_named():
    with pytest.raises(WeightsError, match=r"^weights /no/such\.h5: no such file; expected imagenet, none, or a VGG16"):
        build_backbone("vgg16", "/no/such.h5", SIDE)


def test_imagenet_weights_that_cannot_be_downloaded_say_where_to_put_them(tmp_path, monkeypatch):
    # An empty Keras cache and a real download that fails at once: nothing is fetched from the internet.
    backbone = BACKBONES["mobilenetv3small"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    unreachable = dataclasses.replace(backbone, imagenet_origin=UNREACHABLE + backbone.imagenet_file)
    monkeypatch.setitem(extract.backbones.BACKBONES, "mobilenetv3small", unreachable)
    with pytest.raises(WeightsError) as caught:
        build_backbone("mobilenetv3small", "imagenet", SIDE)
    message = caught.value.command_line_message()
    assert message.startswith("--weights imagenet: MobileNetV3Small ImageNet weights are not cached")
    assert f"put it at {tmp_path / 'models' / backbone.imagenet_file} or pass --weights /path/to/" in message
    assert not (tmp_path / "models" / backbone.imagenet_file).exists()


def test_inputs_below_the_smallest_side_and_unknown_backbones_are_refused():
    with pytest.raises(OptionError, match=f"^crop_size must be at least {MINIMUM_SIDE} pixels"):
        embed_images(face_crops(1, MINIMUM_SIDE - 1), "convnext_tiny", "none")
    with pytest.raises(OptionError, match="'vgg17' is not a backbone; expected one of resnet50, vgg16, vgg19"):
        build_backbone("vgg17", "none", SIDE)
