"""Run and ensemble folders: the one place that writes them and reads them back.

A run folder (``runs/<name>``) holds ``options.json`` (the resolved FitOptions),
``run.json`` (the cache's extraction config and hash; ``train_split``,
``selection_split``, ``report_splits`` with their videos and source videos; seeds,
versions, warnings), ``normalization.npz``, ``model.keras``, ``history.csv``,
``predictions.csv``, ``metrics.json`` (per split, with its ``role``: train,
selection or report), ``curves.png`` and ``training_videos.json`` (the videos fitted
on, with their content hashes); ``holdout.json`` when the selection videos were held
out of the training split; a run of several seeds also holds one such folder per seed.

An ensemble folder holds ``ensemble.json`` (the resolved EnsembleOptions, member
folders and weights), ``run.json`` (the members' common extraction config, as a
run's), ``predictions.csv`` and ``metrics.json``; it refers to its members' folders
instead of copying their models.

``open_folder`` opens either as a ``RunFolder``: ``evaluate``, ``predict``, ``audit``,
``compare``, ``sweep`` and ``ensemble`` use that interface and never ask which kind
they hold. ``FolderWriter`` is the one writer: it refuses or replaces what ``out``
holds, and writes ``metrics.json`` last, the file whose presence marks a finished
folder.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from cache.manifest import config_differences
from cache.schema import OPTIONS_FILE
from common.errors import OptionError, TraitcacheError
from common.files import write_atomically
from common.quiet import start_keras
from train.config import FitOptions
from train.dataset import CacheShape, SplitData
from train.inference import predict_split
from train.normalization import Normalization

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
NORMALIZATION_FILE = "normalization.npz"
HOLDOUT_FILE = "holdout.json"
TRAINING_FILE = "training_videos.json"  # id -> content hash of every video fitted on: evaluate's leak check
ENSEMBLE_FILE = "ensemble.json"
SEED_FOLDER = "seed-{seed}"
RANDOM_WEIGHTS = "none"  # extraction --weights value meaning an untrained ResNet50
DEFAULT_SELECTION_SPLIT = "validation"  # runs written before run.json named their selection split chose on it


class RunError(TraitcacheError):
    """A run folder is missing, incomplete, or does not fit the cache it is used with."""


def write_json(path: Path, value) -> None:
    """Write JSON atomically: a killed run never leaves half a metrics.json, the file `sweep` takes as "finished"."""
    write_atomically(path, json.dumps(value, indent=1, sort_keys=False) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"{path.parent}: not a finished run (no {path.name}); train one with `python -m train fit`"
        ) from None
    except json.JSONDecodeError as error:
        raise RunError(f"{path}: not valid JSON ({error})") from error


def weights_warning(extraction_config: dict) -> str | None:
    """The warning every report carries when embeddings came from random weights."""
    if extraction_config.get("weights") == RANDOM_WEIGHTS:
        return "warning: this cache's face embeddings came from --weights none (a random ResNet50); its scores say nothing about real faces"
    return None


def _roles(metrics: dict) -> dict[str, str]:
    return {name: entry["role"] for name, entry in metrics.items() if isinstance(entry, dict) and "role" in entry}


def selection_split_of(info: dict, metrics: dict) -> str:
    """The split that selected a run's model: the one metrics.json gives the role
    ``selection``, else run.json's or metrics.json's ``selection_split``, else validation."""
    selected = [name for name, role in _roles(metrics).items() if role == "selection"]
    if selected:
        return selected[0]
    for source in (info, metrics):
        if isinstance(source.get("selection_split"), str):
            return source["selection_split"]
    return DEFAULT_SELECTION_SPLIT


def training_split_of(metrics: dict, default: str) -> str:
    """The split a run was fitted on: the one metrics.json gives the role ``train``, else ``default``."""
    return next((name for name, role in _roles(metrics).items() if role == "train"), default)


def run_record(cache: str, config_hash: str, extraction_config: dict, shape: CacheShape, **fields) -> dict:
    """The contents of a run.json: the cache trained on, its shape, ``fields``, and the random-weights warning."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cache": cache,
        "config_hash": config_hash,
        "extraction_config": extraction_config,
        "frames": shape.frames,
        "frames_per_segment": shape.frames_per_segment,
        **fields,
        "warning": weights_warning(extraction_config),
    }


class RunFolder:
    """What runs and ensembles share: the cache they were trained on, their scores, and their predictions.

    Subclasses hold ``path`` and ``info`` (the contents of run.json) and say what
    they predict (``targets``, ``label_mean``, ``predict``), what they were fitted on
    (``training_splits``, ``training_videos``) and how ``compare`` describes them.
    """

    path: Path
    info: dict
    kind: str  # "run" or "ensemble", as messages and compare name it
    trained_by: str  # who was trained on the cache, for check_cache's message
    rebuild_with: str  # whose options a matching cache is built with

    @property
    def extraction_config(self) -> dict:
        return self.info["extraction_config"]

    @property
    def shape(self) -> CacheShape:
        """T and k of the cache, as run.json recorded them."""
        return CacheShape(int(self.info["frames"]), int(self.info["frames_per_segment"]))

    @property
    def cache(self) -> str:
        """The cache folder trained on (empty for folders that predate the record)."""
        return self.info.get("cache", "")

    @property
    def config_hash(self) -> str:
        return self.info.get("config_hash", "")

    @property
    def created(self) -> str:
        return self.info.get("created", "")

    @property
    def random_weights(self) -> bool:
        """Whether the cache's face embeddings came from an untrained ResNet50."""
        return self.info.get("extraction_config", {}).get("weights") == RANDOM_WEIGHTS

    @property
    def warning(self) -> str | None:
        """The random-weights warning of run.json, if any."""
        return self.info.get("warning")

    @cached_property
    def metrics(self) -> dict:
        """Contents of metrics.json: split -> scores, with each split's ``role``."""
        return read_json(self.path / METRICS_FILE)

    @property
    def selection_split(self) -> str:
        """The split the model (or the members' models) was selected on."""
        return selection_split_of(self.info, self.metrics)

    def check_cache(self, config: dict, config_hash: str, cache: Path) -> None:
        """Refuse a cache built with another extraction config, naming the differences."""
        if config_hash != self.info["config_hash"]:
            differences = "; ".join(config_differences(self.extraction_config, config))
            raise RunError(
                f"{cache} was built with a different extraction config than {self.trained_by} "
                f"({self.kind} -> cache: {differences}); use a cache built with {self.rebuild_with}"
            )


@dataclass(frozen=True)
class Run(RunFolder):
    """A finished run, opened for evaluation or prediction.

    Attributes
    ----------
    path : Path
    options : FitOptions
    info : dict
        Contents of run.json.
    normalization : Normalization
    """

    path: Path
    options: FitOptions
    info: dict
    normalization: Normalization
    kind = "run"
    rebuild_with = "the run's options"

    @property
    def trained_by(self) -> str:
        return f"run {self.path} was trained on"

    @property
    def label_mean(self) -> np.ndarray:
        """(k,) the training split's mean label: the run's baseline prediction."""
        return self.normalization.label_mean

    @property
    def targets(self) -> tuple[str, ...]:
        """The labels the run predicts, in its output order."""
        return self.options.targets

    @property
    def training_splits(self) -> tuple[str, ...]:
        return (training_split_of(self.metrics, self.options.train_split),)

    @property
    def head(self) -> str:
        return self.options.head

    @property
    def features(self) -> tuple[str, ...]:
        """The feature sets the head reads (the default sets for a run recorded before sets had names)."""
        return self.options.features

    @property
    def feature_sets(self) -> dict[str, dict]:
        """Set name -> ``identity`` and ``options`` of each added set the run read, as the cache described them."""
        return self.info.get("feature_sets", {})

    @property
    def seeds(self) -> list[int]:
        return list(self.options.run_seeds)

    @property
    def shown_options(self) -> dict:
        """The options ``compare`` shows: those changed from their defaults."""
        return self.options.changed()

    @property
    def prediction_folders(self) -> list[Path]:
        """The folders whose predictions.csv the run's scores average: one per seed, or the run itself."""
        seeds = self.options.run_seeds
        return [self.path / SEED_FOLDER.format(seed=seed) for seed in seeds] if len(seeds) > 1 else [self.path]

    def summary_lines(self) -> list[str]:
        """What ``evaluate`` says of the model it scores."""
        if "selected_seed" not in self.info:
            return []
        return [
            f"scoring the model of seed {self.info['selected_seed']}, the best of seeds {', '.join(map(str, self.info['seeds']))} on validation"
        ]

    def training_videos(self) -> dict[str, str] | None:
        """Video id -> content hash of every video fitted on; None when the run predates that record."""
        if not (self.path / TRAINING_FILE).exists():
            return None
        return read_json(self.path / TRAINING_FILE)["videos"]

    def load_model(self):
        """The trained head, loaded in Keras safe mode (no arbitrary code)."""
        keras = start_keras()
        import train.keras_objects  # noqa: F401  registers the custom objects a head may hold

        path = self.path / MODEL_FILE
        if not path.exists():
            raise RunError(f"{self.path}: no {MODEL_FILE}; the run did not finish")
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except ValueError as error:
            # Safe mode refuses lambdas and unregistered code, and Keras reports a
            # truncated archive as "file not found": both arrive as ValueError.
            raise RunError(
                f"{path}: cannot load the model in Keras safe mode ({error}); it is damaged, truncated or not saved by `python -m train fit`: train the run again"
            ) from error
        except (zipfile.BadZipFile, OSError) as error:
            raise RunError(
                f"{path}: model file is damaged ({error}); train the run again with `python -m train fit`"
            ) from error

    def predict(self, splits: dict[str, SplitData]) -> dict[str, np.ndarray]:
        """Split -> (N, k) float32 predictions of the run's model (loaded once), from the run's sets among each
        split's ``sets``."""
        model = self.load_model()
        return {
            name: predict_split(model, split.reading(self.features), self.normalization, self.shape)
            for name, split in splits.items()
        }


def weighted_label_mean(members: tuple[Run, ...] | list[Run], weights: np.ndarray) -> np.ndarray:
    """(k,) float64 the members' training means, weighted by (M,) ``weights``: an ensemble's baseline prediction."""
    return weights @ np.stack([member.label_mean for member in members]).astype(np.float64)


@dataclass(frozen=True)
class Ensemble(RunFolder):
    """A finished ensemble, opened for evaluation or prediction.

    Attributes
    ----------
    path : Path
    recorded : dict
        Contents of ensemble.json.
    info : dict
        Contents of the ensemble's run.json.
    """

    path: Path
    recorded: dict
    info: dict
    kind = "ensemble"
    rebuild_with = "their options"

    @property
    def trained_by(self) -> str:
        return f"ensemble {self.path}'s members were trained on"

    @cached_property
    def members(self) -> tuple[Run, ...]:
        """The member runs, opened.

        Raises
        ------
        RunError
            A member is gone, or was trained again after the ensemble was built.
        """
        members = []
        for member in self.recorded["members"]:
            opened = open_run(Path(member["path"]))
            if opened.info.get("created") != member["created"]:
                raise RunError(
                    f"{self.path}: member {member['path']} was trained again after the ensemble was built; build it again with `python -m train ensemble`"
                )
            members.append(opened)
        return tuple(members)

    @property
    def weights(self) -> np.ndarray:
        """(M,) float64, summing to 1."""
        return np.array([member["weight"] for member in self.recorded["members"]], dtype=np.float64)

    @property
    def label_mean(self) -> np.ndarray:
        """(k,) the ensemble's baseline prediction (``weighted_label_mean``)."""
        return weighted_label_mean(self.members, self.weights)

    @property
    def targets(self) -> tuple[str, ...]:
        """The labels the members predict (``build_ensemble`` refuses members with other ones)."""
        return self.members[0].targets

    @property
    def training_splits(self) -> tuple[str, ...]:
        return tuple(self.recorded.get("train_splits", []))

    @property
    def head(self) -> str:
        return "ensemble"

    @property
    def features(self) -> tuple[str, ...]:
        """Every set a member reads, each once, in the members' order (members may read different sets).

        Read from the members' recorded options without opening them, so that ``compare`` still lists an
        ensemble whose member was trained again or moved (a member gone adds no set).
        """
        recorded = [Path(member["path"]) / OPTIONS_FILE for member in self.recorded["members"]]
        return tuple(
            dict.fromkeys(
                name for path in recorded if path.exists() for name in FitOptions.from_dict(read_json(path)).features
            )
        )

    @property
    def feature_sets(self) -> dict[str, dict]:
        """The members' ``feature_sets``, joined."""
        return {name: entry for member in self.members for name, entry in member.feature_sets.items()}

    @property
    def seeds(self) -> list[int]:
        return []

    @property
    def shown_options(self) -> dict:
        return {"weighting": self.recorded["weighting"], "members": len(self.recorded["members"])}

    @property
    def prediction_folders(self) -> list[Path]:
        return [self.path]

    def summary_lines(self) -> list[str]:
        return [
            "ensemble of "
            + ", ".join(f"{member.path} (weight {weight:.3f})" for member, weight in zip(self.members, self.weights))
        ]

    def training_videos(self) -> dict[str, str] | None:
        """Video id -> content hash of every video a member fitted on; None when a member predates that record."""
        videos: dict[str, str] = {}
        for member in self.members:
            trained = member.training_videos()
            if trained is None:
                return None
            videos.update(trained)
        return videos

    def predict(self, splits: dict[str, SplitData]) -> dict[str, np.ndarray]:
        """Split -> (N, k) float32: the members' predictions, weighted (each model loaded once)."""
        per_member = [member.predict(splits) for member in self.members]
        return {
            name: np.tensordot(self.weights, np.stack([predicted[name] for predicted in per_member]), axes=1).astype(
                np.float32
            )
            for name in splits
        }


def open_run(path: Path) -> Run:
    """Open a finished run folder.

    Raises
    ------
    RunError
        The folder lacks options, run info or normalisation statistics.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder")
    options = FitOptions.from_dict(read_json(path / OPTIONS_FILE))
    info = read_json(path / RUN_FILE)
    normalization_path = path / NORMALIZATION_FILE
    if not normalization_path.exists():
        raise RunError(f"{path}: no {NORMALIZATION_FILE}; the run did not finish")
    return Run(path, options, info, Normalization.load(normalization_path))


def open_folder(path: Path, members: bool = True) -> Run | Ensemble:
    """Open a run folder, or an ensemble folder (it holds ENSEMBLE_FILE).

    Parameters
    ----------
    path : Path
    members : bool
        Open an ensemble's member runs now, refusing one that is gone or was trained
        again; ``compare``, which reads only the ensemble's own records, passes False.

    Raises
    ------
    RunError
        Not a finished run or ensemble, or (with ``members``) a member is unusable.
    """
    path = Path(path)
    if not (path / ENSEMBLE_FILE).exists():
        return open_run(path)
    ensemble = Ensemble(path, read_json(path / ENSEMBLE_FILE), read_json(path / RUN_FILE))
    if members:
        ensemble.members  # noqa: B018  opened now, so that a stale ensemble is refused before any work
    return ensemble


def is_finished(folder: Path) -> bool:
    """A run whose metrics.json, run.json and options.json are all there and readable."""
    try:
        return all(
            isinstance(json.loads((folder / name).read_text(encoding="utf-8")), dict)
            for name in (METRICS_FILE, RUN_FILE, OPTIONS_FILE)
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


@dataclass(frozen=True)
class FolderWriter:
    """Writes one run or ensemble folder.

    Attributes
    ----------
    path : Path
        The folder (``--out``).
    kind : str
        ``run`` or ``ensemble``: what the folder is to hold.
    """

    path: Path
    kind: str

    @property
    def marker(self) -> str:
        """The file that says a folder holds this kind."""
        return ENSEMBLE_FILE if self.kind == "ensemble" else OPTIONS_FILE

    @property
    def named(self) -> str:
        """The kind with its article, as messages say it."""
        return f"an {self.kind}" if self.kind == "ensemble" else f"a {self.kind}"

    def refuse_existing(self, overwrite: bool) -> None:
        """Refuse a file, a folder holding something else, or one of this kind without ``overwrite``.

        Raises
        ------
        common.errors.OptionError
            Of ``out`` (a refusal: nothing is done).
        """
        out = self.path
        if out.is_file():
            raise OptionError("out", f"{out}: is a file, not {self.named} folder; choose another folder")
        if not (out.exists() and any(out.iterdir())):
            return
        if not (out / self.marker).exists():
            held = next(
                (
                    kind
                    for marker, kind in ((OPTIONS_FILE, "a run"), (ENSEMBLE_FILE, "an ensemble"))
                    if (out / marker).exists()
                ),
                f"no {self.kind}",
            )
            raise OptionError("out", f"{out}: folder is not empty and holds {held}; choose another folder")
        if not overwrite:
            raise OptionError(
                "out", f"{out}: already holds {self.named}; pass `overwrite` to replace it or choose another folder"
            )

    def clear(self, keep: tuple[Path, ...] = ()) -> None:
        """Remove what ``refuse_existing`` allowed to be replaced, except the paths in ``keep``, and make the folder."""
        if self.path.exists():
            for path in self.path.iterdir():
                if path in keep:
                    continue
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, value) -> None:
        """Write one JSON file of the folder (not metrics.json: ``finish`` writes it)."""
        write_json(self.path / name, value)

    def write_record(self, record: dict) -> None:
        """Write run.json (``run_record``)."""
        self.write(RUN_FILE, record)

    def finish(self, metrics: dict) -> None:
        """Write metrics.json, the last file: its presence marks a finished folder."""
        write_json(self.path / METRICS_FILE, metrics)
