"""extract/config.py: option checks, the cache identity and its round trip."""

from __future__ import annotations

import dataclasses

import pytest

from cache.manifest import config_hash
from cache.reader import CacheReader
from cache.synthetic import random_record, write_random_cache
from cache.writer import CacheWriter
from common.errors import CacheError, OptionError
from common.options import Role, flatten, named, option, replace
from extract.config import ExtractOptions

# ExtractOptions as a later release that adds two options would define it: each new option
# is its one field, whose role (and, for one that decides the numbers, the value that gives
# the old numbers) sits in its own definition.
NewerExtractOptions = dataclasses.make_dataclass(
    "NewerExtractOptions",
    [
        ("denoise", bool, option(False, "Denoise the sound track first.", legacy=(False,))),
        ("progress_every", int, option(10, "Report progress every N videos.", metavar="N", role=Role.RUN)),
    ],
    bases=(ExtractOptions,),
    frozen=True,
)


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
    assert not set(named(ExtractOptions, Role.RUN)) & set(base.feature_config())
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


def test_an_added_extraction_option_is_placed_by_its_own_role():
    assert named(NewerExtractOptions, Role.RUN) == [*named(ExtractOptions, Role.RUN), "progress_every"]
    assert named(NewerExtractOptions, Role.IDENTITY) == [*named(ExtractOptions, Role.IDENTITY), "denoise"]
    for change in ({}, {"frames": 6, "sampling": "random"}, {"runtime": "keras-mixed"}):
        older = ExtractOptions.from_dict(change)
        newer = NewerExtractOptions.from_dict({**change, "progress_every": 3})
        assert config_hash(newer.feature_config()) == config_hash(older.feature_config())
        # A config recorded before the options existed reads as their defaults.
        assert NewerExtractOptions.from_dict(older.feature_config()).feature_config() == older.feature_config()
    denoised = NewerExtractOptions.from_dict({"denoise": True}).feature_config()
    assert denoised == {**ExtractOptions().feature_config(), "denoise": True}


def test_a_cache_built_before_an_option_existed_keeps_its_identity(tiny_options, tmp_path):
    cache = write_random_cache(tmp_path / "cache", [0, 1], config=tiny_options.feature_config())
    newer = NewerExtractOptions.from_dict({**flatten(tiny_options), "progress_every": 1})
    assert CacheReader(cache).config_hash == config_hash(newer.feature_config())
    with CacheWriter(cache, newer.feature_config(), newer.videos_per_shard) as writer:
        writer.add(random_record(2))
    assert CacheReader(cache).index.num_videos() == 3
    with pytest.raises(CacheError, match="different extraction config.*denoise"):
        with CacheWriter(cache, replace(newer, denoise=True).feature_config(), newer.videos_per_shard):
            pass
