"""extract/featuresets.py: SOURCE:EXTRACTOR names, their dimensions, and identities over exactly the deciding options."""

from __future__ import annotations

import pytest

from common.errors import OptionError
from extract.embed import WeightsError
from extract.featuresets import (
    DEFAULT_SETS,
    NAMES,
    describe,
    feature_set,
    feature_sets,
    identity,
    weights_identity,
)

# Identities of the default sets with default options: a change here changes the identity
# of the sets every existing cache holds, which must never happen by accident.
FACE_RESNET50_IDENTITY = "6db043a6be03a9c8"
AUDIO_PYAA_IDENTITY = "15c669e1a61d9ab5"


def test_every_shipped_set_parses_back_from_its_name_with_its_dimension():
    dimensions = {name: feature_set(name).dimension for name in NAMES}
    assert [feature_set(name).name for name in NAMES] == list(NAMES)
    assert len(NAMES) == 15 and set(DEFAULT_SETS) <= set(NAMES)
    assert dimensions["face:resnet50"] == dimensions["scene:resnet50"] == 2048
    assert (dimensions["face:vgg16"], dimensions["scene:vgg19"], dimensions["face:efficientnetb0"]) == (512, 512, 1280)
    assert (dimensions["scene:convnext_tiny"], dimensions["face:mobilenetv3small"]) == (768, 576)
    assert (dimensions["audio:pyaa"], dimensions["audio:egemaps"], dimensions["audio:compare"]) == (68, 88, 6373)


@pytest.mark.parametrize(
    ("name", "problem", "suggestion"),
    [
        ("face:vg16", "names no face extractor 'vg16'", "face:vgg16"),
        ("fac:vgg16", "has an unknown source 'fac'", "face:vgg16"),
        ("vgg16", "is not SOURCE:EXTRACTOR", "face:vgg16"),
        ("face:egemaps", "names no face extractor 'egemaps'", "audio:egemaps"),
        ("Face:VGG16", "has an unknown source 'Face'", "face:vgg16"),
    ],
)
def test_an_unknown_set_is_one_line_with_the_closest_name_and_every_valid_one(name, problem, suggestion):
    with pytest.raises(OptionError) as caught:
        feature_set(name)
    message = caught.value.command_line_message()
    assert message.startswith(f"--features {name!r} {problem} (did you mean {suggestion}?); valid sets: ")
    assert message.endswith(", ".join(NAMES)) and "\n" not in message


def test_a_name_like_no_set_gets_no_suggestion():
    with pytest.raises(OptionError, match=r"^features 'audio:xyzzy' names no audio extractor 'xyzzy'; valid sets: "):
        feature_set("audio:xyzzy")


def test_a_list_of_sets_parses_in_order_and_refuses_repeats_and_emptiness():
    assert [chosen.name for chosen in feature_sets(" face:vgg16, audio:egemaps")] == ["face:vgg16", "audio:egemaps"]
    with pytest.raises(OptionError, match="names face:vgg16 more than once"):
        feature_sets("face:vgg16,audio:pyaa,face:vgg16")
    with pytest.raises(OptionError, match="names no feature set"):
        feature_sets(" , ")


def test_the_default_sets_keep_their_identities():
    assert identity(describe(feature_set("face:resnet50"))) == FACE_RESNET50_IDENTITY
    assert identity(describe(feature_set("audio:pyaa"))) == AUDIO_PYAA_IDENTITY


# (set, a deciding option and another value for it)
DECIDING = [
    ("face:resnet50", "weights", "none"),
    ("face:resnet50", "side", 112),
    ("scene:vgg16", "weights", "sha256:" + "0" * 64),
    ("audio:pyaa", "audio_rate", 22050),
    ("audio:pyaa", "audio_window", 0.040),
    ("audio:pyaa", "audio_step", 0.020),
    ("audio:pyaa", "audio_mode", "window"),
    ("audio:egemaps", "audio_rate", 8000),
    ("audio:compare", "audio_rate", 8000),
]
# (set, an option that does not change its numbers and another value for it)
NOT_DECIDING = [
    ("face:resnet50", "seed", 7),  # ImageNet weights are not random
    ("face:resnet50", "audio_rate", 8000),
    ("face:vgg16", "audio_mode", "window"),
    ("audio:pyaa", "side", 112),
    ("audio:pyaa", "weights", "none"),
    ("audio:egemaps", "audio_window", 0.040),
    ("audio:compare", "audio_mode", "window"),
]


@pytest.mark.parametrize(("name", "option", "value"), DECIDING)
def test_a_deciding_option_changes_the_identity(name, option, value):
    chosen = feature_set(name)
    assert identity(describe(chosen, **{option: value})) != identity(describe(chosen))


@pytest.mark.parametrize(("name", "option", "value"), NOT_DECIDING)
def test_an_option_that_does_not_decide_the_numbers_keeps_the_identity(name, option, value):
    chosen = feature_set(name)
    assert identity(describe(chosen, **{option: value})) == identity(describe(chosen))


def test_the_seed_decides_random_weights_only_and_the_window_only_when_windows_are_averaged():
    face, pyaa = feature_set("face:vgg16"), feature_set("audio:pyaa")
    assert identity(describe(face, weights="none", seed=1)) != identity(describe(face, weights="none", seed=0))
    windows = [identity(describe(pyaa, audio_mode="window", audio_window=window)) for window in (0.05, 0.04)]
    assert windows[0] == windows[1]


def test_identities_differ_between_sets_of_one_extractor_and_sources():
    identities = {identity(describe(feature_set(name))) for name in NAMES}
    assert len(identities) == len(NAMES)


def test_a_weights_file_is_identified_by_its_bytes_not_its_path(tmp_path):
    first, moved = tmp_path / "a.weights.h5", tmp_path / "elsewhere" / "b.weights.h5"
    first.write_bytes(b"weights one")
    moved.parent.mkdir()
    moved.write_bytes(b"weights one")
    assert weights_identity(str(first)) == weights_identity(str(moved))
    assert weights_identity(str(first)).startswith("sha256:")
    moved.write_bytes(b"weights two")
    assert weights_identity(str(first)) != weights_identity(str(moved))
    assert (weights_identity("imagenet"), weights_identity("none")) == ("imagenet", "none")
    with pytest.raises(WeightsError, match=r"^weights .*missing\.h5: no such file"):
        weights_identity(str(tmp_path / "missing.h5"))
