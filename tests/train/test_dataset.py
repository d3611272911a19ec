"""train.dataset on real HDF5 caches written with CacheWriter."""

import numpy as np

from cache.labels import read_label_table, write_labels
from cache.reader import CacheReader
from train.dataset import CacheShape, load_cache
from train.synthetic import write_synthetic_cache

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
