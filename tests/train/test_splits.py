"""train.splits: split names, source videos and the hold-out, on a real cache."""

import numpy as np
import pytest

from train.config import FitOptions
from train.dataset import DataError
from train.splits import HOLDOUT_SPLIT, SplitNameError, partition, resolve_splits, source_ids


def test_partition_uses_named_splits_and_reports_the_others(labelled_data):
    parts = partition(labelled_data.splits, FitOptions())
    assert not parts.held_out
    assert list(parts.named()) == ["train", "validation", "test"]
    assert parts.roles() == {"train": "train", "validation": "selection", "test": "report"}
    assert len(parts.selection) == 10


def test_selecting_on_another_split_reports_every_split_under_its_own_name(labelled_data):
    parts = partition(labelled_data.splits, FitOptions(validation_split="test"))
    named = parts.named()
    assert parts.selection_name == "test" and parts.selection is labelled_data.splits["test"]
    assert set(named) == {"train", "validation", "test"}
    assert named["validation"] is labelled_data.splits["validation"] and named["test"] is labelled_data.splits["test"]
    assert parts.roles() == {"train": "train", "test": "selection", "validation": "report"}


@pytest.mark.parametrize(
    ("train_split", "validation_split", "flag"),
    [("train", "validaton", "validation_split 'validaton'"), ("trian", "validation", "train_split 'trian'")],
)
def test_a_split_name_the_cache_lacks_is_an_error_naming_the_splits_it_has(
    labelled_data, train_split, validation_split, flag
):
    with pytest.raises(
        SplitNameError,
        match=f"{flag} names no labelled split; the cache's labelled splits are: test, train, validation",
    ):
        partition(labelled_data.splits, FitOptions(train_split=train_split, validation_split=validation_split))


def test_only_the_default_split_names_fall_back(labelled_data):
    assert resolve_splits(["data"], "train", "validation") == ("data", None)
    assert resolve_splits(["train", "test"], "train", "validation") == ("train", None)
    assert resolve_splits(["train", "test"], "train", "test") == ("train", "test")
    with pytest.raises(SplitNameError, match="also the training split"):
        resolve_splits(["train", "test"], "train", "train")
    with pytest.raises(SplitNameError, match="train_split 'data'"):
        resolve_splits(["train", "test"], "data", "validation")


def test_single_labelled_split_holds_out_a_seeded_recorded_fraction(labelled_data):
    only = {"train": labelled_data.splits["train"]}
    parts = partition(only, FitOptions(holdout_seed=7))
    again = partition(only, FitOptions(holdout_seed=7))
    other = partition(only, FitOptions(holdout_seed=8))
    assert parts.held_out and parts.selection_name == HOLDOUT_SPLIT
    assert len(parts.selection) == 6 and len(parts.train) == 24
    assert list(parts.named()) == ["train", HOLDOUT_SPLIT]
    assert set(parts.selection.video_ids).isdisjoint(parts.train.video_ids)
    assert list(parts.selection.video_ids) == list(again.selection.video_ids)
    assert list(parts.selection.video_ids) != list(other.selection.video_ids)


def clips_of_sources(split, clips_per_source):
    """The split with ChaLearn-style ids: ``source-NN.00C.mp4``, ``clips_per_source`` clips per source."""
    ids = np.array(
        [f"source-{row // clips_per_source:02d}.{row % clips_per_source:03d}.mp4" for row in range(len(split))]
    )
    return type(split)(ids, split.visual, split.audio, split.face, split.labels)


def test_holdout_keeps_every_clip_of_a_source_on_one_side(labelled_data):
    train = clips_of_sources(labelled_data.splits["train"], 3)  # 10 sources of 3 clips
    for seed in range(5):
        parts = partition({"train": train}, FitOptions(holdout_seed=seed))
        held, kept = (set(source_ids(split.video_ids, ".")) for split in (parts.selection, parts.train))
        assert len(held) == 2 and len(kept) == 8 and held.isdisjoint(kept)
        assert len(parts.selection) == 6 and len(parts.train) == 24
    draws = {tuple(partition({"train": train}, FitOptions(holdout_seed=seed)).selection.video_ids) for seed in range(5)}
    assert len(draws) > 1, "the hold-out should depend on its seed"


def test_source_delimiter_is_an_option(labelled_data):
    train = clips_of_sources(labelled_data.splits["train"], 3)
    assert list(source_ids(train.video_ids[:4], ".")) == ["source-00", "source-00", "source-00", "source-01"]
    assert list(source_ids(train.video_ids[:2], "-")) == ["source", "source"]
    assert list(source_ids(train.video_ids[:2], "")) == list(train.video_ids[:2])
    each_its_own = partition({"train": train}, FitOptions(source_delimiter=""))
    assert len(set(source_ids(each_its_own.selection.video_ids, "."))) > 2, (
        "without grouping, clips of one source land on both sides"
    )
    with pytest.raises(DataError, match="1 source video"):
        partition({"train": train}, FitOptions(source_delimiter="-"))


def test_training_split_without_validation_holds_out_but_never_uses_test(labelled_data):
    parts = partition({"train": labelled_data.splits["train"], "test": labelled_data.splits["test"]}, FitOptions())
    assert parts.held_out and set(parts.others) == {"test"}


def test_partition_refuses_unusable_data(labelled_data):
    with pytest.raises(DataError, match="no labelled videos"):
        partition({}, FitOptions())
    with pytest.raises(
        SplitNameError, match="train_split 'train' names no labelled split; the cache's labelled splits are: a, b"
    ):
        partition({"a": labelled_data.splits["train"], "b": labelled_data.splits["test"]}, FitOptions())
    with pytest.raises(SplitNameError, match="split named 'holdout'"):
        partition({"train": labelled_data.splits["train"], "holdout": labelled_data.splits["test"]}, FitOptions())
