"""extract/config.py: option checks, the cache identity and its round trip."""

from __future__ import annotations

import dataclasses

import pytest

from extract.config import RUN_ONLY_FIELDS, ExtractOptions


@pytest.mark.parametrize(
    "change,flag",
    [
        ({"frames": 0}, "--frames"),
        ({"crop_size": 16}, "--crop-size"),
        ({"sampling": "edges"}, "--sampling"),
        ({"scale_factor": 1.0}, "--scale-factor"),
        ({"audio_step": 0.0}, "--audio-step"),
        ({"audio_rate": 4000}, "--audio-rate"),
        ({"face_margin": -0.1}, "--face-margin"),
        ({"batch_size": 0}, "--batch-size"),
        ({"min_face": 0.0}, "--min-face"),
        ({"backend": "spark"}, "--backend"),
    ],
)
def test_invalid_options_are_refused_naming_the_flag(change, flag):
    with pytest.raises(ValueError, match=flag):
        ExtractOptions(**change)


def test_speed_options_do_not_change_the_cache_identity():
    base = ExtractOptions(weights="none")
    faster = dataclasses.replace(base, jobs=2, backend="dask", videos_per_shard=8, batch_size=64)
    assert base.feature_config() == faster.feature_config()
    assert not set(RUN_ONLY_FIELDS) & set(base.feature_config())
    assert base.feature_config() != dataclasses.replace(base, frames=16).feature_config()


def test_a_weights_file_is_identified_by_its_digest(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"first")
    first = ExtractOptions(weights=str(path)).resolved().feature_config()
    path.write_bytes(b"second")
    assert ExtractOptions(weights=str(path)).resolved().feature_config()["weights_sha256"] != first["weights_sha256"]


def test_recorded_config_rebuilds_the_same_options():
    options = ExtractOptions(frames=6, frames_per_segment=2, sampling="random", weights="none", crop_size=64)
    rebuilt = ExtractOptions.from_dict(options.feature_config())
    assert rebuilt.feature_config() == options.feature_config()
