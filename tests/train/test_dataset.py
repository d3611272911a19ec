"""train.dataset on real HDF5 caches written with CacheWriter."""

import numpy as np
import pytest

from cache.labels import read_label_table, write_labels
from cache.reader import CacheReader
from common.errors import CacheError
from train.config import DEFAULT_FEATURES
from train.dataset import CacheShape, joined_sets, load_cache
from train.synthetic import add_synthetic_set, write_synthetic_cache

FRAMES = 4  # T of the labelled_data fixture
SHAPE = CacheShape(FRAMES, 2)  # the labelled_data cache's: two frames per segment


def test_load_cache_reads_every_split_with_labels(labelled_data):
    assert {name: len(split) for name, split in labelled_data.splits.items()} == {
        "test": 10,
        "train": 30,
        "validation": 10,
    }
    train = labelled_data.splits["train"]
    assert train.visual.shape == (30, FRAMES * 2, 2048) and train.visual.dtype == np.float16
    assert train.audio.shape == (30, FRAMES, 68)
    assert train.face.shape == (30, FRAMES * 2)
    assert train.labels.shape == (30, 5) and np.isfinite(train.labels).all()
    assert labelled_data.shape == SHAPE


def test_videos_without_all_five_labels_are_left_out(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 6}, frames=FRAMES)
    table = read_label_table(cache)
    del table["train-00001.mp4"]
    del table["train-00004.mp4"]["neuroticism"]
    write_labels(cache, table, replace=True)
    loaded = load_cache(CacheReader(cache))
    assert list(loaded.splits["train"].video_ids) == [
        "train-00000.mp4",
        "train-00002.mp4",
        "train-00003.mp4",
        "train-00005.mp4",
    ]
    assert loaded.unlabelled == {"train": 2}


def test_two_visual_sets_are_joined_per_frame_and_the_audio_set_kept_apart():
    rng = np.random.default_rng(0)
    sets = {
        "face:vgg16": rng.normal(size=(3, 8, 512)).astype(np.float16),
        "scene:resnet50": rng.normal(size=(3, 8, 2048)).astype(np.float16),
        "audio:egemaps": rng.normal(size=(3, 4, 88)).astype(np.float32),
    }
    visual, audio = joined_sets(sets, ("scene:resnet50", "audio:egemaps", "face:vgg16"), np.ones((3, 8), bool))
    assert visual.shape == (3, 8, 2048 + 512) and audio.shape == (3, 4, 88)
    np.testing.assert_array_equal(visual[..., :2048], sets["scene:resnet50"])
    np.testing.assert_array_equal(visual[..., 2048:], sets["face:vgg16"])
    np.testing.assert_array_equal(audio, sets["audio:egemaps"])
    visual_only, no_audio = joined_sets(sets, ("face:vgg16",), np.ones((3, 8), bool))
    assert visual_only.shape == (3, 8, 512) and no_audio.shape == (3, 1, 0)


def test_sets_are_read_by_name_and_each_run_reads_its_own(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 6}, frames=FRAMES)
    reader = CacheReader(cache)
    stored = reader.read("train", ("face_embeddings", "audio_features"))
    audio_only = load_cache(reader, features=("audio:pyaa",)).splits["train"]
    assert audio_only.visual.shape == (6, FRAMES, 0)
    np.testing.assert_array_equal(audio_only.audio, stored["audio_features"])
    both = load_cache(reader, features=DEFAULT_FEATURES, head_features=("face:resnet50",)).splits["train"]
    np.testing.assert_array_equal(both.visual, stored["face_embeddings"])
    assert both.audio.shape == (6, 1, 0)
    np.testing.assert_array_equal(both.reading(("audio:pyaa",)).audio, stored["audio_features"])
    with pytest.raises(
        CacheError, match=rf"holds no feature set 'face:vgg16' .*`python -m extract add {cache} --features face:vgg16`"
    ):
        load_cache(reader, features=("face:vgg16", "audio:pyaa"))


def test_a_run_on_added_sets_reads_their_arrays_side_by_side(tmp_path):
    cache = write_synthetic_cache(
        tmp_path / "cache", {"train": 6, "validation": 3}, frames=FRAMES, frames_per_segment=2
    )
    for name, dimension in (("face:vgg16", 512), ("scene:mobilenetv3small", 576), ("audio:egemaps", 88)):
        add_synthetic_set(cache, name, dimension)
    reader = CacheReader(cache)
    stored = reader.read("train", ("face:vgg16", "scene:mobilenetv3small", "audio:egemaps"))
    train = load_cache(reader, features=("face:vgg16", "scene:mobilenetv3small", "audio:egemaps")).splits["train"]
    assert train.visual.shape == (6, FRAMES * 2, 512 + 576) and train.audio.shape == (6, FRAMES, 88)
    np.testing.assert_array_equal(train.visual[..., :512], stored["face:vgg16"])
    np.testing.assert_array_equal(train.visual[..., 512:], stored["scene:mobilenetv3small"])
    np.testing.assert_array_equal(train.audio, stored["audio:egemaps"])
