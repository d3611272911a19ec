"""The run folder: what ``fit`` writes and ``evaluate``, ``predict``, ``compare`` read.

A run folder (``runs/<name>``) holds ``options.json`` (the resolved FitOptions),
``run.json`` (the cache's extraction config and hash; ``train_split``,
``selection_split``, ``report_splits`` with their videos and source videos; seeds,
versions, warnings), ``normalization.npz``, ``model.keras``, ``history.csv``,
``metrics.json`` (per split, with its ``role``: train, selection or report),
``curves.png`` and ``training_videos.json`` (the videos fitted on, with their content hashes); ``holdout.json`` when the selection videos were held out of the
training split; a run of several seeds also holds one such folder per seed.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.errors import TraitcacheError
from cache.manifest import config_differences, write_atomically
from cache.quiet import start_keras
from cache.schema import OPTIONS_FILE
from train.config import FitOptions
from train.dataset import CacheShape
from train.normalization import Normalization

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
NORMALIZATION_FILE = "normalization.npz"
HOLDOUT_FILE = "holdout.json"
TRAINING_FILE = "training_videos.json"  # id -> content hash of every video fitted on: evaluate's leak check
SEED_FOLDER = "seed-{seed}"
RANDOM_WEIGHTS = "none"  # extraction --weights value meaning an untrained ResNet50


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


class RecordedCache:
    """What a run or ensemble folder's ``run.json`` (``info``) records of the cache it was trained on."""

    info: dict

    @property
    def extraction_config(self) -> dict:
        return self.info["extraction_config"]

    @property
    def shape(self) -> CacheShape:
        """T and k of the cache, as run.json recorded them."""
        return CacheShape(int(self.info["frames"]), int(self.info["frames_per_segment"]))


@dataclass(frozen=True)
class Run(RecordedCache):
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

    @property
    def label_mean(self) -> np.ndarray:
        """(k,) the training split's mean label: the run's baseline prediction."""
        return self.normalization.label_mean

    @property
    def targets(self) -> tuple[str, ...]:
        """The labels the run predicts, in its output order."""
        return self.options.targets

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

    def check_cache(self, config: dict, config_hash: str, cache: Path) -> None:
        """Refuse a cache built with another extraction config, naming the differences."""
        if config_hash != self.info["config_hash"]:
            differences = "; ".join(config_differences(self.extraction_config, config))
            raise RunError(
                f"{cache} was built with a different extraction config than run {self.path} was trained on (run -> cache: {differences}); use a cache built with the run's options"
            )


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
