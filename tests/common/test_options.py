"""common.options: one flat name per option, steps nested, round trips through flat dicts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

from common.errors import OptionError
from common.options import Role, build, flatten, identity, leaf_fields, named, option, replace, roles, step


@dataclass(frozen=True)
class Faces:
    detect_height: int = option(240, "Frame height for detection.", metavar="PIXELS")
    min_face: float = option(0.125, "Smallest face, fraction of the height.")

    def __post_init__(self):
        if self.detect_height < 32:
            raise OptionError("detect_height", f"must be at least 32, got {self.detect_height}")


@dataclass(frozen=True)
class Stage:
    frames: int = option(10, "Segments per video.")
    faces: Faces = step(Faces)
    seeds: tuple[int, ...] = option((), "Seeds.")
    scheduler: str | None = option(None, "Address.", role=Role.RUN)


def test_leaf_fields_open_the_steps_in_field_order():
    assert list(leaf_fields(Stage)) == ["frames", "detect_height", "min_face", "seeds", "scheduler"]
    field, kind = leaf_fields(Stage)["detect_height"]
    assert (
        kind is int
        and field.metadata["help"] == "Frame height for detection."
        and field.metadata["metavar"] == "PIXELS"
    )


def test_flatten_and_build_round_trip_through_json():
    options = Stage(frames=4, faces=Faces(detect_height=120), seeds=(1, 2))
    flat = flatten(options)
    assert flat == {"frames": 4, "detect_height": 120, "min_face": 0.125, "seeds": (1, 2), "scheduler": None}
    assert build(Stage, flat) == options
    assert build(Stage, json.loads(json.dumps(flat))) == dataclasses.replace(options, seeds=[1, 2])


def test_build_ignores_unknown_names_and_defaults_missing_ones():
    assert build(Stage, {"min_face": 0.5, "written_by_a_newer_version": 1}) == Stage(faces=Faces(min_face=0.5))
    assert build(Stage, {}) == Stage()


def test_replace_changes_by_flat_name_and_refuses_unknown_names():
    changed = replace(Stage(), detect_height=64, frames=3)
    assert changed == Stage(frames=3, faces=Faces(detect_height=64))
    assert Stage() == Stage(frames=10)  # the original is untouched
    with pytest.raises(TypeError, match="no option detect_hieght"):
        replace(Stage(), detect_hieght=64)


def test_a_step_validates_its_own_options_naming_the_field():
    with pytest.raises(OptionError) as raised:
        build(Stage, {"detect_height": 8})
    assert str(raised.value) == "detect_height must be at least 32, got 8"
    assert raised.value.command_line_message() == "--detect-height must be at least 32, got 8"


def test_one_name_in_two_steps_is_refused():
    @dataclass(frozen=True)
    class Clash:
        faces: Faces = step(Faces)
        detect_height: int = option(1, "Again.")

    with pytest.raises(TypeError, match="detect_height is defined twice"):
        leaf_fields(Clash)


@dataclass(frozen=True)
class Placed:
    stage: Stage = step(Stage)
    out: str = option("runs/a", "Where.", role=Role.PLACE)
    logs: bool = option(False, "Also logs.", role=Role.EXTRA)
    precision: str = option("float32", "Arithmetic.", legacy=("float32", "tf32"))


def test_each_option_declares_its_role_and_identity_is_the_default():
    assert roles(Placed) == {
        "frames": Role.IDENTITY,
        "detect_height": Role.IDENTITY,
        "min_face": Role.IDENTITY,
        "seeds": Role.IDENTITY,
        "scheduler": Role.RUN,
        "out": Role.PLACE,
        "logs": Role.EXTRA,
        "precision": Role.IDENTITY,
    }
    assert named(Placed, Role.RUN, Role.PLACE) == ["scheduler", "out"]
    assert named(Placed, Role.IDENTITY) == ["frames", "detect_height", "min_face", "seeds", "precision"]


def test_identity_holds_the_options_that_decide_the_numbers_and_skips_legacy_values():
    base = Placed()
    assert identity(base) == {"frames": 10, "detect_height": 240, "min_face": 0.125, "seeds": ()}
    elsewhere = replace(base, scheduler="tcp://host:8786", out="runs/b", logs=True, precision="tf32")
    assert identity(elsewhere) == identity(base)
    assert identity(replace(base, precision="bfloat16")) == {**identity(base), "precision": "bfloat16"}
    assert identity(replace(base, min_face=0.25))["min_face"] == 0.25
