"""common.command: flags built from option fields, errors turned into one line and an exit status."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from common.command import reports_errors, with_flags
from common.errors import MAKE_ENVIRONMENT, CacheError, ExitCode, OptionError, TraitcacheError
from common.options import option, step


def parse_seeds(text: str) -> tuple[int, ...]:
    if "-" in text:
        raise OptionError("seeds", f"{text!r}: no negative seeds; see `frames`")
    return tuple(int(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Decode:
    frames: int = option(10, "T, equal segments per video.", metavar="N")

    def __post_init__(self):
        if self.frames < 1:
            raise OptionError("frames", f"must be at least 1, got {self.frames}")


@dataclass(frozen=True)
class Stage:
    decode: Decode = step(Decode)
    keep_crops: bool = option(True, "Store the face crops.", flag="--keep-crops/--no-crops")
    seeds: tuple[int, ...] = option((), "Comma-separated seeds.", metavar="N,N,...", parse=parse_seeds)
    scheduler: str | None = option(None, "Dask scheduler address.")


def command_app(received: list) -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode=None)

    @app.command()
    @reports_errors
    @with_flags(Stage)
    def main(
        path: Path = typer.Argument(..., help="A folder."),
        fail: bool = typer.Option(False, "--fail", help="Raise a cache error."),
        options: Stage = None,
    ) -> None:
        if fail:
            raise CacheError(f"{path}: not a cache")
        received.append((path, options))

    return app


def test_every_option_gets_its_flag_help_and_default():
    result = CliRunner().invoke(command_app([]), ["--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for flag, help_text in [
        ("--frames N", "T, equal segments per video.  [default: 10]"),
        ("--keep-crops / --no-crops", "Store the face crops.  [default: keep-crops]"),
        ("--seeds N,N,...", "Comma-separated seeds."),
        ("--scheduler", "Dask scheduler address."),
        ("--fail", "Raise a cache error."),
    ]:
        assert any(line.strip().startswith(flag) and help_text in line for line in lines), (flag, result.output)


def test_flags_are_built_into_the_options_object():
    received = []
    result = CliRunner().invoke(
        command_app(received), ["data", "--frames", "3", "--no-crops", "--seeds", "1,2", "--scheduler", "tcp://x:1"]
    )
    assert result.exit_code == 0, result.output
    assert received == [(Path("data"), Stage(Decode(3), False, (1, 2), "tcp://x:1"))]
    CliRunner().invoke(command_app(received), ["data"])
    assert received[-1] == (Path("data"), Stage())


def test_an_option_error_names_the_flag_with_the_usage_status():
    result = CliRunner().invoke(command_app([]), ["data", "--frames", "0"])
    assert result.exit_code == ExitCode.USAGE == 2
    assert result.output == "error: --frames must be at least 1, got 0\n"


def test_unparsable_flag_text_is_a_click_usage_error_naming_the_flag():
    result = CliRunner().invoke(command_app([]), ["data", "--seeds", "1,x"])
    assert result.exit_code == 2 and "Invalid value for --seeds" in result.output
    result = CliRunner().invoke(command_app([]), ["data", "--seeds", "-1"])
    assert result.exit_code == 2 and "Invalid value for --seeds: '-1': no negative seeds; see --frames" in result.output


def test_a_library_error_is_one_line_and_its_exit_code():
    result = CliRunner().invoke(command_app([]), ["data", "--fail"])
    assert result.exit_code == CacheError.exit_code == ExitCode.USAGE
    assert result.output == "error: data: not a cache\n"


def test_an_error_class_can_carry_another_exit_code():
    class SomeFailed(TraitcacheError):
        exit_code = ExitCode.PARTIAL

    app = typer.Typer(add_completion=False)

    @app.command()
    @reports_errors
    def main() -> None:
        raise SomeFailed("2 of 5 failed")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1 and result.output == "error: 2 of 5 failed\n"


def test_an_option_without_help_is_refused():
    @dataclass(frozen=True)
    class Bare:
        frames: int = 10

    with pytest.raises(TypeError, match="frames has no help"):
        with_flags(Bare)(lambda options: None)


@dataclass(frozen=True)
class Gathering:
    members: tuple[str, ...]
    out: str
    grid: tuple[str, ...] = dataclasses.field(default=(), metadata={"parse": lambda entries: tuple(sorted(entries))})
    weighting: str = option("equal", "How members weigh.")

    def __post_init__(self):
        object.__setattr__(self, "members", tuple(self.members))
        if len(self.members) < 2:
            raise OptionError("members", f"must be at least two, got {len(self.members)}")


def test_arguments_named_like_options_go_into_the_options_object():
    received = []
    app = typer.Typer(add_completion=False, rich_markup_mode=None)

    @app.command()
    @reports_errors
    @with_flags(Gathering)
    def main(
        members: list[str] = typer.Argument(..., metavar="RUN..."),
        out: str = typer.Option(..., help="Folder to write."),
        grid: list[str] = typer.Option([], help="Entries."),
        options: Gathering = None,
    ) -> None:
        received.append(options)

    result = CliRunner().invoke(app, ["a", "b", "--out", "o", "--grid", "z", "--grid", "y", "--weighting", "w"])
    assert result.exit_code == 0, result.output
    assert received == [Gathering(("a", "b"), "o", ("y", "z"), "w")]
    assert "--members" not in CliRunner().invoke(app, ["--help"]).output
    refused = CliRunner().invoke(app, ["a", "--out", "o"])
    assert refused.exit_code == 2 and "must be at least two, got 1" in refused.output


def test_options_mentioned_in_a_problem_become_flags_on_the_command_line_only():
    error = OptionError("out", "runs/a: holds a run; pass `overwrite` to replace it, or run `pip install x`")
    assert str(error) == "out runs/a: holds a run; pass `overwrite` to replace it, or run `pip install x`"
    assert error.command_line_message() == (
        "--out runs/a: holds a run; pass --overwrite to replace it, or run `pip install x`"
    )


def test_under_make_mentioned_options_also_name_make_variables(monkeypatch):
    error = OptionError("weights", "imagenet: not cached; pass `weights` /path/to/file, or `weights` none, or `frames`")
    monkeypatch.delenv(MAKE_ENVIRONMENT, raising=False)
    plain = "--weights imagenet: not cached; pass --weights /path/to/file, or --weights none, or --frames"
    assert error.command_line_message() == plain
    monkeypatch.setenv(MAKE_ENVIRONMENT, "EXTRACT_FLAGS")
    assert error.command_line_message() == (
        plain + " (through make: WEIGHTS=... for --weights, EXTRACT_FLAGS=--frames)"
    )
    monkeypatch.setenv(MAKE_ENVIRONMENT, "TRAIN_FLAGS")
    assert OptionError("out", "runs/a: holds a run; pass `overwrite`").command_line_message() == (
        "--out runs/a: holds a run; pass --overwrite (through make: TRAIN_FLAGS=--overwrite)"
    )
