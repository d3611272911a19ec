"""extract/config.py: option checks, the cache identity and its round trip."""

from __future__ import annotations

import pytest

from cache.errors import OptionError
from cache.options import flatten, replace
from extract.config import RUN_ONLY_FIELDS, ExtractOptions


@pytest.mark.parametrize(
    "change",
    [
        {"frames": 0},
        {"crop_size": 16},
        {"sampling": "edges"},
        {"scale_factor": 1.0},
        {"audio_step": 0.0},
        {"audio_window": -0.05},
        {"audio_rate": 4000},
        {"face_margin": -0.1},
        {"batch_size": 0},
        {"videos_per_shard": 0},
        {"min_face": 0.0},
        {"min_neighbors_floor": 11},
        {"runtime": "onnx"},
        {"backend": "spark"},
    ],
)
def test_invalid_options_are_refused_naming_the_option(change):
    (name,) = change
    with pytest.raises(OptionError) as refused:
        ExtractOptions.from_dict(change)
    assert refused.value.option == name and str(refused.value).startswith(f"{name} ")


def test_each_option_has_one_flat_name_and_keeps_it_in_the_recorded_options():
    options = ExtractOptions.from_dict(
        {"frames": 6, "min_face": 0.2, "audio_mode": "window", "batch_size": 8, "jobs": 2}
    )
    assert (options.decode.frames, options.faces.min_face, options.audio.audio_mode) == (6, 0.2, "window")
    assert (options.embed.batch_size, options.jobs) == (8, 2)
    assert ExtractOptions.from_dict(flatten(options)) == options


def test_speed_options_do_not_change_the_cache_identity():
    base = ExtractOptions.from_dict({"weights": "none"})
    faster = replace(base, jobs=2, backend="dask", videos_per_shard=8, batch_size=64)
    assert base.feature_config() == faster.feature_config()
    assert not set(RUN_ONLY_FIELDS) & set(base.feature_config())
    assert base.feature_config() != replace(base, frames=16).feature_config()


def test_a_weights_file_is_identified_by_its_digest(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"first")
    options = ExtractOptions.from_dict({"weights": str(path)})
    first = options.resolved().feature_config()
    path.write_bytes(b"second")
    assert options.resolved().feature_config()["weights_sha256"] != first["weights_sha256"]


def test_a_missing_weights_file_is_refused_naming_the_option(tmp_path):
    missing = tmp_path / "missing.weights.h5"
    with pytest.raises(OptionError, match=f"^weights {missing}: no such file"):
        ExtractOptions.from_dict({"weights": str(missing)}).resolved()


def test_recorded_config_rebuilds_the_same_options():
    options = ExtractOptions.from_dict(
        {"frames": 6, "frames_per_segment": 2, "sampling": "random", "weights": "none", "crop_size": 64}
    )
    rebuilt = ExtractOptions.from_dict(options.feature_config())
    assert rebuilt == options
