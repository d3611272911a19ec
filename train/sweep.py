"""Sweeps: one ``fit`` per configuration of a grid of options, resumable after a kill.

Every configuration is a run folder under the sweep folder, named after its grid
values (``head=bilstm,lr=0.001``), written by ``train.fit.fit`` exactly as ``fit``
writes one. A run whose ``metrics.json`` (written last) is present and readable is
finished and never touched again; any other folder of the sweep is half-written
and is replaced. The sweep folder also holds ``sweep.json`` (the resolved
SweepOptions) and a lock, so two sweeps never write into one folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache.lock import CacheLock
from cache.schema import DEFAULT_CACHE
from common.errors import OptionError, TraitcacheError
from common.files import write_atomically
from common.options import Role, build, flatten, leaf_fields, named, option, roles
from train.config import SET_JOINER, FitOptions, parse_features, parse_seeds
from train.run import is_finished, open_run, selection_split_of, training_split_of

SWEEP_FILE = "sweep.json"
SEARCHES = ("grid", "random")
# Why the sweep sets the fit options of these roles itself, for every configuration.
SET_BY_ROLE = {
    Role.PLACE: "every configuration reads the sweep's cache and gets its own folder in the sweep's out",
    Role.RUN: "a sweep prints one line per configuration and never replaces a finished run",
}
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
SWEEP_VERBOSE = 0  # Keras output per fit: the sweep prints one line per finished configuration instead
# List options that can still be grid axes: the items of one value are joined by SET_JOINER
# (features=face:resnet50+audio:pyaa,face:vgg16+audio:egemaps is two configurations).
JOINED_AXES = ("features",)
UNSAFE_IN_NAMES = ("/", ",", "=", os.sep)  # a value becomes part of a folder name


def set_by_sweep() -> dict[str, str]:
    """Fit options the sweep sets itself, with why: neither grid axes nor fixed values.

    Those of role PLACE or RUN, and those SweepOptions declares itself (its ``seeds``).
    """
    own = leaf_fields(SweepOptions)
    reasons = {}
    for name, role in roles(FitOptions).items():
        if role in SET_BY_ROLE:
            reasons[name] = SET_BY_ROLE[role]
        elif name in own:
            reasons[name] = f"every configuration takes the sweep's own `{name}`"
    return reasons


def not_axes() -> dict[str, str]:
    """Fit options that cannot be grid axes, with why: those the sweep sets, and lists (but ``JOINED_AXES``)."""
    lists = {
        name: f"its value is a list; give it as the fixed value `{name}` for every configuration"
        for name, (_, kind) in leaf_fields(FitOptions).items()
        if typing.get_origin(kind) is tuple and name not in JOINED_AXES
    }
    return {**lists, **set_by_sweep()}


def grid_axes() -> dict[str, type]:
    """Fit options that can be grid axes, with their types."""
    excluded = not_axes()
    return {name: kind for name, (_, kind) in leaf_fields(FitOptions).items() if name not in excluded}


def fixed_options() -> list[str]:
    """Fit options that ``sweep`` takes as fixed values: all but those it sets itself."""
    excluded = set_by_sweep()
    return [name for name in leaf_fields(FitOptions) if name not in excluded]


def _parse_value(name: str, kind: type, text: str):
    text = text.strip()
    if name in JOINED_AXES:
        return parse_features(text)
    if kind is bool:
        if text.lower() not in BOOLEAN_WORDS:
            raise OptionError("grid", f"{name}: {text!r} is not a boolean; use true or false")
        return BOOLEAN_WORDS[text.lower()]
    try:
        value = kind(text)
    except ValueError:
        raise OptionError("grid", f"{name}: {text!r} is not {'an' if kind is int else 'a'} {kind.__name__}") from None
    if kind is str and (not value or any(mark in value for mark in UNSAFE_IN_NAMES)):
        raise OptionError(
            "grid", f"{name}: {text!r} cannot name a folder (empty, or holds one of {' '.join(UNSAFE_IN_NAMES)})"
        )
    return value


def parse_grid(entries: list[str]) -> tuple[tuple[str, tuple], ...]:
    """``OPTION=V1,V2`` entries -> ((option, values), ...), typed as FitOptions declares.

    Option names take dashes or underscores (``batch-size`` = ``batch_size``).

    Raises
    ------
    common.errors.OptionError
        Of ``grid``: an entry without ``=``, an option that is not a fit option (the
        valid ones are listed), a value of the wrong type, a repeated option or value.
    """
    axes, excluded = grid_axes(), not_axes()
    grid: dict[str, tuple] = {}
    for entry in entries:
        name, separator, values = entry.partition("=")
        name = name.strip().replace("-", "_")
        if not separator or not values.strip():
            raise OptionError("grid", f"{entry!r}: expected OPTION=V1,V2,... such as lr=1e-3,1e-4")
        if name in excluded:
            raise OptionError("grid", f"{name}: not a grid axis; {excluded[name]}")
        if name not in axes:
            raise OptionError("grid", f"{name}: no fit option of that name; grid axes are: {', '.join(axes)}")
        if name in grid:
            raise OptionError("grid", f"{name}: given twice; list all its values in one entry {name}=V1,V2")
        parsed = tuple(_parse_value(name, axes[name], text) for text in values.split(","))
        if len(set(parsed)) != len(parsed):
            raise OptionError("grid", f"{name}: a value is repeated in {values!r}")
        grid[name] = parsed
    return tuple(grid.items())


@dataclass(frozen=True)
class SweepOptions:
    """Everything that decides a sweep.

    Attributes
    ----------
    out : str
        Sweep folder (``runs/<name>``); one run folder per configuration inside.
    grid : tuple of (str, tuple)
        Fit option -> values (``parse_grid``).
    fixed : tuple of (str, value)
        Fit option -> one value for every configuration (``fit``'s own flags given to
        ``sweep``); every option neither here nor in the grid keeps its ``fit`` default.
    seeds : tuple of int
        Seeds of every configuration (``fit --seeds``); empty: ``fit``'s single seed.
    search_seed : int
        Seeds the random draw, so a rerun draws the same configurations and resumes.
    """

    out: str  # the command line's required --out
    cache: str = option(DEFAULT_CACHE, "Cache folder every run reads.", metavar="DIR")
    # The command line gives the grid as repeated --grid OPTION=V1,V2 entries.
    grid: tuple[tuple[str, tuple], ...] = dataclasses.field(default=(), metadata={"parse": parse_grid})
    seeds: tuple[int, ...] = option(
        (),
        "Comma-separated seeds of every configuration, e.g. 1,2,3: reported as mean ± std.",
        metavar="N,N,...",
        parse=parse_seeds,
    )
    search: str = option(
        "grid", "grid: every configuration; random: --trials of them, drawn with --search-seed.", metavar="grid|random"
    )
    trials: int = option(0, "Configurations a random search draws (0: all).", metavar="N")
    search_seed: int = option(
        0, "Seed of the random draw; the same seed draws the same configurations, so a rerun resumes.", metavar="N"
    )
    jobs: int = option(
        1, "Configurations fitted at once, each in its own process with its share of the cores.", metavar="N"
    )
    # The command line gives these as fit's own flags (--epochs 40) beside the --grid axes.
    fixed: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        checks = [
            ("search", self.search in SEARCHES, f"must be one of {', '.join(SEARCHES)}, got {self.search!r}"),
            ("trials", self.trials >= 0, f"must be at least 0, got {self.trials}"),
            (
                "trials",
                self.search == "random" or self.trials == 0,
                f"must stay 0 unless search is random, got {self.trials}",
            ),
            ("jobs", self.jobs >= 1, f"must be at least 1, got {self.jobs}"),
            (
                "seeds",
                not (self.seeds and "seed" in dict(self.grid)),
                "and a grid axis seed both set the seeds; give one of them",
            ),
        ]
        for name, passed, problem in checks:
            if not passed:
                raise OptionError(name, problem)
        fixable = fixed_options()
        unknown = [name for name, _ in self.fixed if name not in fixable]
        if unknown:
            raise OptionError(
                unknown[0], "cannot be fixed for a sweep; " + set_by_sweep().get(unknown[0], "no fit option")
            )
        both = sorted(dict(self.grid).keys() & dict(self.fixed).keys())
        if both:
            raise OptionError(
                "grid",
                f"{both[0]}: also given as the fixed value `{both[0]}` {dict(self.fixed)[both[0]]!r}; give it once, as a grid axis or as a fixed value",
            )
        build(FitOptions, dict(self.fixed))  # a bad fixed value is named by its own option
        for values in configurations(self):
            self.fit_options(values)  # every configuration must be valid before any runs

    def to_dict(self) -> dict:
        return {
            **flatten(self),
            "grid": {name: list(values) for name, values in self.grid},
            "seeds": list(self.seeds),
            "fixed": {name: list(value) if isinstance(value, tuple) else value for name, value in self.fixed},
        }

    @classmethod
    def from_flags(cls, flags: Any, given: Iterable[str]) -> SweepOptions:
        """The options of a command line parsed into a ``sweep_flags()`` object.

        Parameters
        ----------
        flags
            A ``sweep_flags()`` instance.
        given : iterable of str
            The options the user gave; of the fit options, only these are fixed.
        """
        given = set(given)
        fixed = tuple((name, getattr(flags, name)) for name in fixed_options() if name in given)
        return build(cls, {**flatten(flags), "fixed": fixed})

    def fit_options(self, values: dict) -> FitOptions:
        """The FitOptions of one configuration (``values``: option -> value).

        Raises
        ------
        common.errors.OptionError
            Of ``grid``: the configuration is not a valid fit (its option and problem named).
        """
        own = {"cache": self.cache, "out": str(Path(self.out) / folder_name(values)), "seeds": self.seeds}
        try:
            return build(FitOptions, {**own, "verbose": SWEEP_VERBOSE, **dict(self.fixed), **values})
        except OptionError as error:
            raise OptionError("grid", f"configuration {folder_name(values)}: {error}") from error


def sweep_flags() -> type:
    """The dataclass ``sweep``'s command line is built from: SweepOptions' options and every fit option that can vary.

    Its fields carry their own help and defaults (``common.command.with_flags``); ``SweepOptions.from_flags``
    turns an instance into SweepOptions, fixing the fit options the user gave.
    """
    hints = typing.get_type_hints(SweepOptions)
    own = [
        (field.name, hints[field.name], dataclasses.field(default=field.default, metadata=field.metadata))
        for field in dataclasses.fields(SweepOptions)
        if field.name != "fixed"
    ]
    fit = [
        (name, kind, dataclasses.field(default=field.default, metadata=field.metadata))
        for name, (field, kind) in leaf_fields(FitOptions).items()
        if name in fixed_options()
    ]
    return dataclasses.make_dataclass("SweepFlags", own + fit, frozen=True)


def folder_name(values: dict) -> str:
    """``option=value,...`` in FitOptions field order (so the order of --grid flags does not matter)."""
    order = list(leaf_fields(FitOptions))
    parts = [
        f"{name}={repr(value) if isinstance(value, float) else SET_JOINER.join(value) if isinstance(value, tuple) else value}"
        for name, value in sorted(values.items(), key=lambda item: order.index(item[0]))
    ]
    return ",".join(parts) or "defaults"


def configurations(options: SweepOptions) -> list[dict]:
    """Option -> value per configuration: the whole grid, or a seeded draw of ``trials`` of it."""
    names = [name for name, _ in options.grid]
    sizes = [len(values) for _, values in options.grid]
    total = int(np.prod(sizes)) if sizes else 1
    if options.search == "grid" or not options.trials or options.trials >= total:
        picks: Iterator[int] | np.ndarray = iter(range(total))
    else:
        picks = np.random.default_rng(options.search_seed).choice(total, size=options.trials, replace=False)
    result = []
    for pick in picks:
        digits = np.unravel_index(int(pick), sizes) if sizes else ()
        result.append({name: values[digit] for name, (_, values), digit in zip(names, options.grid, digits)})
    return result


def _mismatch(folder: Path, planned: FitOptions) -> str | None:
    """How a finished run differs from the planned configuration, or None."""
    # Rebuilt, so that options added since the run was made count as their defaults.
    finished = open_run(folder)
    saved = type(planned).from_dict(finished.options.to_dict()).to_dict()
    wanted = planned.to_dict()
    # Only the options that decide the numbers (the cache is matched by its resolved path).
    differences = [
        f"{name}: {saved[name]!r} -> {wanted[name]!r}"
        for name in named(type(planned), Role.IDENTITY)
        if saved[name] != wanted[name]
    ]
    cache = finished.cache
    if cache != str(Path(planned.cache).resolve()):
        differences.append(f"cache: {cache} -> {Path(planned.cache).resolve()}")
    return "; ".join(differences) or None


def plan(options: SweepOptions) -> tuple[list[FitOptions], list[FitOptions]]:
    """Split the configurations into finished runs and runs to do.

    Raises
    ------
    common.errors.OptionError
        Of ``out``: a finished run in the sweep folder was made with other options (another
        cache or seeds): it would be neither redone nor comparable.
    """
    finished, to_do = [], []
    for values in configurations(options):
        planned = options.fit_options(values)
        folder = Path(planned.out)
        if is_finished(folder):
            difference = _mismatch(folder, planned)
            if difference:
                raise OptionError(
                    "out",
                    f"{folder}: a finished run with other options than this sweep's ({difference}); choose another folder",
                )
            finished.append(planned)
        else:
            to_do.append(planned)
    return finished, to_do


def _fit_one(options: FitOptions, threads: int | None) -> dict:
    """Fit one configuration (in a worker process when ``threads`` is set); a result record, never an exception for bad data."""
    if threads is not None:
        # Each of the sweep's processes gets its share of the cores; TensorFlow reads
        # these before its first operation, and GPU memory is taken only as needed.
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    from train.fit import fit

    started = time.perf_counter()
    try:
        # A folder a killed sweep left half-written is replaced, except the seeds it had finished.
        metrics = fit(options, echo=lambda line: None, resume=True)
    except TraitcacheError as error:
        return {"out": options.out, "error": str(error), "seconds": time.perf_counter() - started}
    return {"out": options.out, "metrics": metrics, "seconds": time.perf_counter() - started}


def _summary(result: dict) -> str:
    """One line per finished configuration, every score beside its baseline."""
    name = Path(result["out"]).name
    if "error" in result:
        return f"{name}: failed: {result['error']}"
    metrics = result["metrics"]
    selection, training = selection_split_of({}, metrics), training_split_of(metrics, "train")
    shown = [selection] + [
        split
        for split, entry in metrics.items()
        if isinstance(entry, dict) and "mean_accuracy" in entry and split not in (selection, training)
    ]
    scores = ", ".join(
        f"{split} {metrics[split]['mean_accuracy']:.4f} (baseline {metrics[split]['baseline_mean_accuracy']:.4f})"
        for split in shown
        if split in metrics
    )
    return f"{name}: {scores} in {result['seconds']:.0f} s"


def _results(to_do: list[FitOptions], jobs: int) -> Iterator[dict]:
    if jobs == 1 or len(to_do) == 1:
        for options in to_do:
            yield _fit_one(options, None)
        return
    from joblib import Parallel, delayed

    workers = min(jobs, len(to_do))
    threads = max(1, (os.cpu_count() or 1) // workers)
    yield from Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")(
        delayed(_fit_one)(options, threads) for options in to_do
    )


def sweep(options: SweepOptions, echo: Callable[[str], None] = print) -> list[dict]:
    """Fit every configuration that has no finished run yet, then nothing else.

    Parameters
    ----------
    options : SweepOptions
    echo : callable
        Receives the plan, one line per finished configuration and failures.

    Returns
    -------
    list of dict
        Per configuration fitted now: ``out``, ``seconds``, and ``metrics`` or
        ``error`` (the reason a run could not be made; the others go on).

    Raises
    ------
    common.errors.OptionError
        Of ``out``: a finished run disagrees with the sweep's options.
    common.errors.CacheError
        Another sweep is writing into the same folder.
    """
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    with CacheLock(out, what="sweep folder"):
        finished, to_do = plan(options)
        write_atomically(out / SWEEP_FILE, json.dumps(options.to_dict(), indent=1) + "\n")
        seeds = f" x seeds {','.join(map(str, options.seeds))}" if options.seeds else ""
        echo(
            f"sweep {out}: {len(finished) + len(to_do)} configurations{seeds}; {len(finished)} finished before, {len(to_do)} to fit with {options.jobs} job(s)"
        )
        results = []
        for index, result in enumerate(_results(to_do, options.jobs), 1):
            results.append(result)
            echo(f"[{index}/{len(to_do)}] {_summary(result)}")
        return results
