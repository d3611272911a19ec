"""Fixtures shared by the tests of train's data modules."""

import pytest

from cache.reader import CacheReader
from train.dataset import CacheData, load_cache
from train.synthetic import write_synthetic_cache


@pytest.fixture(scope="session")
def labelled_data(tmp_path_factory) -> CacheData:
    """A real cache read into memory: train 30 / validation 10 / test 10 videos, T = 4, two frames per segment."""
    cache = write_synthetic_cache(
        tmp_path_factory.mktemp("data") / "cache",
        {"train": 30, "validation": 10, "test": 10},
        frames=4,
        frames_per_segment=2,
    )
    return load_cache(CacheReader(cache))
