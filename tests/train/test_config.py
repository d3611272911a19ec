"""train/config.py: fit options, and a run's changed options derived from each option's role."""

from __future__ import annotations

import pytest

from common.errors import OptionError
from common.options import identity
from train.config import DEFAULT_FEATURES, FitOptions, parse_features


def test_changed_options_are_those_that_decide_the_numbers_except_the_ones_named_apart():
    assert FitOptions().changed() == {}
    elsewhere = FitOptions(cache="c", out="runs/x", tensorboard=True, overwrite=True, verbose=0)
    assert elsewhere.changed() == {}
    assert FitOptions(head="bilstm", seed=4, seeds=(1, 2), lr=1e-3, targets=("openness",)).changed() == {
        "lr": 1e-3,
        "targets": ["openness"],
    }


def test_an_added_fit_option_counts_among_the_changed_ones_by_its_role(newer_fit_options):
    newer = newer_fit_options(label_smoothing=0.1, progress_file="progress.txt", dropout=0.3)
    assert newer.changed() == {"dropout": 0.3, "label_smoothing": 0.1}
    # A run saved before the options existed reads as their defaults: nothing more changed.
    older = FitOptions(dropout=0.3)
    assert newer_fit_options.from_dict(older.to_dict()).changed() == older.changed()


def test_a_head_needing_a_source_the_sets_lack_is_refused_naming_the_head_and_the_sets():
    with pytest.raises(OptionError, match=r"^features head seed needs an audio set and face:vgg16,scene:resnet50 has"):
        FitOptions(head="seed", features=("face:vgg16", "scene:resnet50"))
    with pytest.raises(OptionError, match=r"^features head attention needs a visual set and audio:egemaps has none"):
        FitOptions(head="attention", features=("audio:egemaps",))
    with pytest.raises(OptionError, match="more than one audio set"):
        FitOptions(features=("face:vgg16", "audio:pyaa", "audio:egemaps"))
    with pytest.raises(OptionError, match="vgg16: expected SOURCE:EXTRACTOR"):
        FitOptions(features=("vgg16", "audio:pyaa"))
    assert FitOptions(head="visual", features=("face:vgg16",)).features == ("face:vgg16",)
    assert FitOptions(head="audio", features=("audio:egemaps",)).features == ("audio:egemaps",)


def test_the_default_sets_keep_the_identity_of_runs_recorded_before_features():
    before = {"head": "audio", "lr": 0.001}  # an options.json written before the option existed
    assert FitOptions.from_dict(before).features == DEFAULT_FEATURES
    assert "features" not in identity(FitOptions.from_dict(before))
    chosen = FitOptions.from_dict({**before, "features": ["face:vgg16", "audio:egemaps"]})
    assert identity(chosen)["features"] == ("face:vgg16", "audio:egemaps")
    assert "features" not in chosen.changed()  # compare shows the sets in a column of their own
    assert parse_features("face:vgg16,audio:egemaps") == parse_features("face:vgg16+audio:egemaps")
