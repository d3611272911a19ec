"""train/config.py: fit options, and a run's changed options derived from each option's role."""

from __future__ import annotations

import dataclasses

from common.options import Role, option
from train.config import FitOptions

# FitOptions as a later release that adds two options would define it.
NewerFitOptions = dataclasses.make_dataclass(
    "NewerFitOptions",
    [
        ("label_smoothing", float, option(0.0, "Pull the targets toward their mean by this share.", metavar="SHARE")),
        ("progress_file", str, option("", "Also append progress lines to FILE.", metavar="FILE", role=Role.RUN)),
    ],
    bases=(FitOptions,),
    frozen=True,
)


def test_changed_options_are_those_that_decide_the_numbers_except_the_ones_named_apart():
    assert FitOptions().changed() == {}
    elsewhere = FitOptions(cache="c", out="runs/x", tensorboard=True, overwrite=True, verbose=0)
    assert elsewhere.changed() == {}
    assert FitOptions(head="bilstm", seed=4, seeds=(1, 2), lr=1e-3, targets=("openness",)).changed() == {
        "lr": 1e-3,
        "targets": ["openness"],
    }


def test_an_added_fit_option_counts_among_the_changed_ones_by_its_role():
    newer = NewerFitOptions(label_smoothing=0.1, progress_file="progress.txt", dropout=0.3)
    assert newer.changed() == {"dropout": 0.3, "label_smoothing": 0.1}
    # A run saved before the options existed reads as their defaults: nothing more changed.
    older = FitOptions(dropout=0.3)
    assert NewerFitOptions.from_dict(older.to_dict()).changed() == older.changed()
