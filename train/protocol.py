"""The ChaLearn protocol in one command (``make chalearn``): extract, sweep, ensemble, compare, audit, report.

Every step runs the project's own commands (``python -m extract``, ``python -m train
sweep``, ``python -m train ensemble``) or library functions (compare, audit), and the
report folder ends up holding ``compare.json``, ``audit.json`` and ``report.md``: the
published ChaLearn results beside the user's rows, and the audit of the ensemble.

Resumable: ``protocol.json`` in the report folder records, per finished step, a digest
of what decided it (videos, label and groups files, options, the runs' scores). A step
whose digest is unchanged and whose outputs are present is skipped, so a second run
redoes nothing finished; a changed input redoes that step and those after it. Inside a
step, extraction and sweeps resume by themselves.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cache.manifest import file_digest, plural
from cache.schema import DEFAULT_CACHE
from common.errors import ExitCode, OptionError, TraitcacheError
from common.files import write_atomically
from common.options import option
from train.audit import AUDIT_FILE, MIN_GROUP_VIDEOS, AuditOptions, audit, format_audit
from train.bootstrap import BOOTSTRAP_RESAMPLES
from train.compare import add_groups, collect_runs, runs_json
from train.config import HEADS, FitOptions, parse_seeds
from train.groups import read_groups
from train.metrics import format_number
from train.run import METRICS_FILE, open_folder
from train.sweep import folder_name, parse_grid

PROTOCOL_FILE = "protocol.json"
REPORT_FILE = "report.md"
COMPARE_FILE = "compare.json"
RUNS_FOLDER = "runs"  # the sweep: one folder per head
ENSEMBLE_FOLDER = "ensemble"  # beside the sweep, not in it: a sweep replaces folders it did not write
SPLITS = ("train", "validation", "test")  # ChaLearn's, as folder names under DATA
REPORT_SPLIT = "test"
# Published mean accuracies on ChaLearn First Impressions V2's test split.
PUBLISHED = (
    ("predict the training mean", 0.8814),
    ("DCC", 0.9109),
    ("BU-NKU", 0.9130),
    ("NJU-LAMDA", 0.9130),
)


def _parse_heads(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


class ProtocolError(TraitcacheError):
    """A step of the protocol failed; finished steps are kept and the same command resumes."""

    def __init__(self, message: str, exit_code: int = ExitCode.PARTIAL):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ProtocolOptions:
    """Everything that decides a ChaLearn protocol run.

    Attributes
    ----------
    data : tuple of str
        One folder holding ``train/``, ``validation/``, ``test/``, or ``SPLIT=PATH`` entries.
    labels, groups : tuple of str
        Annotation files (ChaLearn's pickles or CSV) and groups files (``train.groups``).
    cache, report : str
        Cache folder; report folder (runs, ensemble, compare.json, audit.json, report.md).
    weights, extract_flags : str
        ResNet50 weights and further ``python -m extract`` flags.
    heads : tuple of str
        Heads to train, each with every seed.
    seeds : tuple of int
    epochs : int
    fit_settings : str
        Fit options every head gets, ``OPTION=VALUE`` separated by spaces (one value each).
    ensemble_size : int
        How many of the best runs (by their selection split) the ensemble averages.
    resamples, min_group : int
        Bootstrap resamples; videos a group needs in the audit.
    """

    data: tuple[str, ...]  # the command line's arguments DATA...
    labels: tuple[str, ...] = option((), "Annotation file: ChaLearn .pkl or CSV (repeatable).", metavar="FILE")
    groups: tuple[str, ...] = option(
        (), "Groups file: ChaLearn's eth_gender_annotations_*.csv or a video_id CSV (repeatable).", metavar="FILE"
    )
    cache: str = option(DEFAULT_CACHE, "Cache folder.", metavar="DIR")
    report: str = option("reports/chalearn", "Report folder: runs, ensemble, compare, audit, report.md.", metavar="DIR")
    weights: str = option("imagenet", "ResNet50 weights: imagenet | none | PATH.", metavar="WEIGHTS")
    extract_flags: str = option("", "Further `python -m extract` flags, e.g. '--jobs 4'.", metavar="FLAGS")
    heads: tuple[str, ...] = option(HEADS, "Comma-separated heads to train.", metavar="NAME,...", parse=_parse_heads)
    seeds: tuple[int, ...] = option(
        (1, 2, 3, 4, 5), "Comma-separated seeds of every head.", metavar="N,...", parse=parse_seeds
    )
    epochs: int = option(FitOptions.epochs, "Most epochs per fit.", metavar="N")
    fit_settings: str = option(
        "",
        "Fit options every head gets, as OPTION=VALUE separated by spaces, e.g. 'lr=1e-4 batch_size=16'.",
        metavar="TEXT",
    )
    ensemble_size: int = option(3, "Best runs the ensemble averages (by their selection split).", metavar="N")
    resamples: int = option(BOOTSTRAP_RESAMPLES, "Bootstrap resamples for intervals and p-values.", metavar="N")
    min_group: int = option(MIN_GROUP_VIDEOS, "Videos a group needs to be read in the audit.", metavar="N")

    def __post_init__(self):
        for name in ("data", "labels", "groups", "heads", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [head for head in self.heads if head not in HEADS]
        checks = [
            ("labels", bool(self.labels), "is required: name ChaLearn's annotation files"),
            ("groups", bool(self.groups), "is required: name ChaLearn's eth_gender_annotations_*.csv"),
            ("heads", bool(self.heads) and not unknown, f"must name heads among {', '.join(HEADS)}, got {unknown}"),
            ("seeds", bool(self.seeds), "must name at least one seed"),
            ("ensemble_size", self.ensemble_size >= 2, f"must be at least 2, got {self.ensemble_size}"),
        ]
        for name, valid, problem in checks:
            if not valid:
                raise OptionError(name, problem)
        AuditOptions(run=".", groups=self.groups, resamples=self.resamples, min_group=self.min_group)
        self.grid()

    def grid(self) -> tuple[list[str], dict]:
        """The sweep's ``--grid`` entries, and the fixed fit options (typed) that name its run folders.

        Raises
        ------
        OptionError
            A setting that is no fit option, or gives several values.
        """
        entries = [f"epochs={self.epochs}", *shlex.split(self.fit_settings)]
        fixed = {}
        for name, values in parse_grid(entries):
            if name == "head" or len(values) != 1:
                raise OptionError("fit_settings", f"{name}: give one value of an option other than head")
            fixed[name] = values[0]
        return ["head=" + ",".join(self.heads), *entries], fixed


def split_folders(data: tuple[str, ...]) -> dict[str, Path]:
    """split -> folder: ``SPLIT=PATH`` entries, or the SPLITS found under one folder.

    Raises
    ------
    OptionError
        No train or test folder.
    """
    if len(data) == 1 and "=" not in data[0]:
        folders = {split: Path(data[0]) / split for split in SPLITS if (Path(data[0]) / split).is_dir()}
    else:
        folders = {}
        for entry in data:
            split, _, path = entry.partition("=")
            if not path:
                raise OptionError("data", f"{entry!r}: expected SPLIT=PATH when naming several folders")
            folders[split] = Path(path)
    missing = [split for split in ("train", REPORT_SPLIT) if split not in folders or not folders[split].is_dir()]
    if missing:
        raise OptionError(
            "data",
            f"{' '.join(data)}: no {' or '.join(missing)} folder; pass ChaLearn's folder holding train/ and test/",
        )
    return folders


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _videos_stamp(folders: dict[str, Path]) -> list:
    """Every file under the split folders with its size and change time: a new or edited video changes it."""
    return [
        (split, str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
        for split, folder in sorted(folders.items())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def _metrics_digests(folders: list[Path]) -> dict[str, str]:
    return {str(folder): file_digest(folder / METRICS_FILE) for folder in folders if (folder / METRICS_FILE).exists()}


class Protocol:
    """The steps and their record; ``run`` does what is not finished."""

    def __init__(self, options: ProtocolOptions, echo: Callable[[str], None]):
        self.options = options
        self.echo = echo
        self.report = Path(options.report)
        self.record_path = self.report / PROTOCOL_FILE
        self.record = self._read_record()

    def _read_record(self) -> dict:
        """The finished steps' digests; an unreadable record only costs re-checking (extraction and sweeps resume)."""
        try:
            return json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.echo(f"warning: {self.record_path} is damaged; every step is checked again")
            return {}

    def _step(self, name: str, stamp, outputs: list[Path], work: Callable[[], None]) -> bool:
        """Run ``work`` unless the record holds ``stamp`` for ``name`` and every output exists; True when it ran."""
        digest = _digest(stamp)
        if self.record.get(name) == digest and all(path.exists() for path in outputs):
            self.echo(f"{name}: up to date, skipped")
            return False
        self.echo(f"{name}: running")
        work()
        self.record[name] = digest
        write_atomically(self.record_path, json.dumps(self.record, indent=1) + "\n")
        return True

    def _command(self, name: str, arguments: list[str]) -> None:
        command = [sys.executable, "-m", *arguments]
        self.echo("$ " + shlex.join(command))
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0:
            raise ProtocolError(
                f"{name} failed (exit {completed.returncode}; reason above); fix it and run the same command again:"
                " finished steps are kept",
                ExitCode.USAGE if completed.returncode == ExitCode.USAGE else ExitCode.PARTIAL,
            )

    def run(self) -> None:
        options = self.options
        folders = split_folders(options.data)
        read_groups(options.groups)  # a bad groups file is refused before hours of work
        missing = [path for path in options.labels if not Path(path).is_file()]
        if missing:
            raise OptionError("labels", f"{', '.join(missing)}: no such file; pass ChaLearn's annotation pickles")
        self.report.mkdir(parents=True, exist_ok=True)
        cache = Path(options.cache)
        extract_stamp = {
            "videos": _videos_stamp(folders),
            "labels": [file_digest(Path(path)) for path in options.labels],
            "flags": [options.weights, options.extract_flags, str(cache.resolve())],
        }
        self._step(
            "extraction",
            extract_stamp,
            [cache],
            lambda: self._command(
                "extraction",
                [
                    "extract",
                    *(f"{split}={folder}" for split, folder in folders.items()),
                    "--cache",
                    str(cache),
                    *(text for path in options.labels for text in ("--labels", path)),
                    "--weights",
                    options.weights,
                    *shlex.split(options.extract_flags),
                ],
            ),
        )
        runs = self.report / RUNS_FOLDER
        entries, fixed = options.grid()
        head_runs = [runs / folder_name({"head": head, **fixed}) for head in options.heads]
        self._step(
            "sweep",
            {
                "extraction": self.record["extraction"],
                "options": [entries, options.seeds],
            },
            [folder / METRICS_FILE for folder in head_runs],
            lambda: self._command(
                "sweep",
                [
                    "train",
                    "sweep",
                    "--cache",
                    str(cache),
                    "--out",
                    str(runs),
                    *(text for entry in entries for text in ("--grid", entry)),
                    "--seeds",
                    ",".join(map(str, options.seeds)),
                    "--resamples",
                    str(options.resamples),
                ],
            ),
        )
        best = self._best_runs(head_runs)
        ensemble = self.report / ENSEMBLE_FOLDER
        if len(best) >= 2:
            self._step(
                "ensemble",
                _metrics_digests(best),
                [ensemble / METRICS_FILE],
                lambda: self._command(
                    "ensemble", ["train", "ensemble", *map(str, best), "--out", str(ensemble), "--overwrite"]
                ),
            )
        if len(best) < 2:
            self.echo(f"ensemble: one run only, none built; the audit reads {best[0]}")
        audited = ensemble if len(best) >= 2 else best[0]
        outputs = [self.report / name for name in (COMPARE_FILE, AUDIT_FILE, REPORT_FILE)]
        report_stamp = {
            "runs": _metrics_digests([*head_runs, ensemble]),
            "groups": [file_digest(Path(path)) for path in options.groups],
            "options": [options.resamples, options.min_group, str(audited)],
        }
        self._step("report", report_stamp, outputs, lambda: self._write_report(audited))
        self.echo(f"report: {self.report / REPORT_FILE}")

    def _best_runs(self, head_runs: list[Path]) -> list[Path]:
        """The ``ensemble_size`` best runs by mean accuracy on the split that selected each one."""

        def selection_score(folder: Path) -> float:
            run = open_folder(folder)
            return run.metrics[run.selection_split]["mean_accuracy"]

        return sorted(head_runs, key=selection_score, reverse=True)[: self.options.ensemble_size]

    def _write_report(self, audited: Path) -> None:
        options = self.options
        comparison = collect_runs(self.report, options.resamples)
        add_groups(comparison, read_groups(options.groups), options.resamples, options.min_group)
        result = audit(
            AuditOptions(
                run=str(audited),
                groups=options.groups,
                split=REPORT_SPLIT,
                out=str(self.report / AUDIT_FILE),
                resamples=options.resamples,
                min_group=options.min_group,
            ),
            echo=lambda line: None,
        )
        write_atomically(self.report / COMPARE_FILE, runs_json(comparison) + "\n")
        write_atomically(self.report / REPORT_FILE, markdown_report(comparison.rows, result, options))


def markdown_report(rows: list[dict], audited: dict, options: ProtocolOptions) -> str:
    """The report: published results beside the user's rows on the test split, then the audit.

    Parameters
    ----------
    rows : list of dict
        ``train.compare.collect_runs`` rows (with ``add_groups``' figures).
    audited : dict
        ``train.audit.audit``'s result.
    options : ProtocolOptions
    """
    lines = [
        "# ChaLearn First Impressions V2: results",
        "",
        f"Mean accuracy (1 - MAE over the five traits) on the {REPORT_SPLIT} split. Published rows as reported;"
        " this protocol's rows with a bootstrap 95% interval over videos, a paired bootstrap p-value against the"
        " best run, and each run's own predict-the-training-mean baseline.",
        f"Heads {', '.join(options.heads)}; seeds {', '.join(map(str, options.seeds))} (mean ± std over seeds);"
        f" weights {options.weights}.",
        "",
        "| system | test mean accuracy | 95% CI | baseline | p vs best | worst group (acc) | largest gap (p) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} (published) | {value:.4f} | - | - | - | - | - |" for name, value in PUBLISHED]
    for row in rows:
        entry = row["splits"].get(REPORT_SPLIT)
        if entry is None:
            continue
        interval = entry["ci95"]
        groups = entry.get("groups") or {}
        worst = (
            f"{groups['worst_group']} ({groups['worst_accuracy']:.4f})"
            if groups.get("worst_group") is not None
            else "-"
        )
        gap = (
            f"{groups['largest_gap']:.4f} (p {format_number(groups['gap_p_value'])})"
            if groups.get("largest_gap") is not None
            else "-"
        )
        lines.append(
            f"| {row['run']} ({row['head']}) | {format_number(entry['mean_accuracy'], entry['mean_accuracy_std'])}"
            f" | {'-' if interval is None else f'[{interval[0]:.4f}, {interval[1]:.4f}]'}"
            f" | {format_number(entry['baseline_mean_accuracy'])}"
            f" | {'best' if row is rows[0] else format_number(entry['p_value_vs_best'], missing='-')}"
            f" | {worst} | {gap} |"
        )
    if any(row["random_weights"] for row in rows):
        lines += [
            "",
            "Embeddings from `--weights none` (a random ResNet50): these scores say nothing about real faces.",
        ]
    lines += [
        "",
        f"## Audit of {audited['run']} ({plural(audited['n'], 'video')} of {audited['split']})",
        "",
        "```",
        format_audit(audited),
        "```",
        "",
        "Files: `compare.json` (every run, every split), `audit.json` (every group's figures).",
    ]
    return "\n".join(lines) + "\n"


def run_protocol(options: ProtocolOptions, echo: Callable[[str], None] = print) -> Path:
    """Run every unfinished step; returns the report file.

    Raises
    ------
    OptionError, GroupsError
        Before any work (exit 2).
    ProtocolError
        A step failed; the steps before it are kept.
    """
    Protocol(options, echo).run()
    return Path(options.report) / REPORT_FILE
