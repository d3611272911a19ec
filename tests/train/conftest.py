"""Fixtures shared by train's tests."""

import dataclasses

import pytest

from cache.reader import CacheReader
from common.options import Role, option
from train.config import FitOptions
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


# FitOptions as a later release that adds two options would define it: each new option is
# its one field, whose role sits in its own definition.
NewerFitOptions = dataclasses.make_dataclass(
    "NewerFitOptions",
    [
        ("label_smoothing", float, option(0.0, "Pull the targets toward their mean by this share.", metavar="SHARE")),
        ("progress_file", str, option("", "Also append progress lines to FILE.", metavar="FILE", role=Role.RUN)),
    ],
    bases=(FitOptions,),
    frozen=True,
)


@pytest.fixture
def newer_fit_options() -> type[FitOptions]:
    """FitOptions with one identity option and one run option added, as a later release would have it."""
    return NewerFitOptions
