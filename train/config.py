"""Options of the training stage: one frozen dataclass, mapped one-to-one onto CLI flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

HEADS = ("seed", "bilstm", "attention", "visual", "audio")
TRAIN_SPLIT = "train"  # default --train-split; when absent, a cache's only labelled split is fitted on
VALIDATION_SPLIT = "validation"  # default --validation-split; when absent, a share of the training videos is held out


@dataclass(frozen=True)
class FitOptions:
    """Everything that decides how a head is trained from a cache.

    Defaults are the original project's values where it had them (Adam 1e-4,
    batch 8, MSE, 300 epochs cut by early stopping, Dense 1024 -> 128, dropout 0.2,
    audio Dense 32, LSTM 10 units, EarlyStopping 5, ReduceLROnPlateau 3 / 0.2).

    Attributes
    ----------
    cache : str
        Cache folder to read.
    out : str
        Run folder to write (``runs/<name>``).
    head : str
        One of HEADS.
    epochs : int
        Upper bound on epochs; early stopping usually ends sooner.
    lr : float
        Adam learning rate.
    batch_size : int
        Videos per training step.
    seed : int
        Seeds weights, dropout, shuffling and frame picks of a single run.
    seeds : tuple of int
        When given, the run is repeated once per seed (``seed`` is then unused) and
        the metrics report mean and standard deviation.
    visual_units, visual_projection : int
        Widths of the two per-frame Dense layers on the face embedding.
    dropout : float
        Dropout rate after the visual projection.
    audio_units : int
        Width of the per-segment Dense layer on the audio features.
    lstm_units : int
        Units of the (per-direction) LSTM.
    attention_units : int
        Width of the scoring layer of the ``attention`` head.
    patience : int
        Epochs without validation improvement before stopping.
    lr_patience, lr_factor, min_lr : int, float, float
        ReduceLROnPlateau settings.
    train_split, validation_split : str
        Split names to fit on and to select / early-stop on. A name the cache lacks
        is an error, except the defaults: without a ``train`` split a cache's only
        labelled split is fitted on, and without a ``validation`` split a share of
        the training videos is held out (reported as ``holdout``).
    validation_fraction : float
        Fraction of the training split's source videos held out for selection when
        the cache has no labelled validation split.
    holdout_seed : int
        Seeds that hold-out draw; kept apart from ``seed`` so that repeated seeds
        share one validation set.
    source_delimiter : str
        A video's source (the recording its clip was cut from) is the part of its id
        before the first ``source_delimiter``: ChaLearn's ``_01AyUz9J9I.002.mp4`` is
        clip 2 of ``_01AyUz9J9I``. A hold-out keeps all clips of a source on one side.
        Empty: every video is its own source.
    mixed_precision : bool
        Compute in float16 with float32 variables (``mixed_float16`` policy).
    tensorboard : bool
        Also write TensorBoard logs under ``<out>/logs``.
    overwrite : bool
        Replace an existing run in ``out``.
    verbose : int
        Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.
    """

    cache: str = "cache"
    out: str = "runs/seed-head"
    head: str = "seed"
    epochs: int = 300
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    seeds: tuple[int, ...] = ()
    visual_units: int = 1024
    visual_projection: int = 128
    dropout: float = 0.2
    audio_units: int = 32
    lstm_units: int = 10
    attention_units: int = 16
    patience: int = 5
    lr_patience: int = 3
    lr_factor: float = 0.2
    min_lr: float = 5e-7
    train_split: str = TRAIN_SPLIT
    validation_split: str = VALIDATION_SPLIT
    validation_fraction: float = 0.2
    holdout_seed: int = 0
    source_delimiter: str = "."
    mixed_precision: bool = False
    tensorboard: bool = False
    overwrite: bool = False
    verbose: int = 2

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in self.seeds))
        checks = [
            (self.head in HEADS, f"--head must be one of {', '.join(HEADS)}, got {self.head!r}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (len(set(self.seeds)) == len(self.seeds), f"--seeds must not repeat a seed, got {self.seeds}"),
            (0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}"),
            (
                0.0 < self.validation_fraction < 1.0,
                f"--validation-fraction must be in (0, 1), got {self.validation_fraction}",
            ),
            (0.0 < self.lr_factor < 1.0, f"--lr-factor must be in (0, 1), got {self.lr_factor}"),
            (self.verbose in (0, 1, 2), f"--verbose must be 0, 1 or 2, got {self.verbose}"),
        ]
        widths = (
            "visual_units",
            "visual_projection",
            "audio_units",
            "lstm_units",
            "attention_units",
            "patience",
            "lr_patience",
        )
        checks += [
            (getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
            for name in widths
        ]
        for passed, message in checks:
            if not passed:
                raise ValueError(message)

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """The seeds to train with: ``seeds`` when given, else ``(seed,)``."""
        return self.seeds or (self.seed,)

    def to_dict(self) -> dict:
        """JSON-able dict of every option (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict) -> FitOptions:
        """Rebuild options saved by ``to_dict`` (unknown keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def changed(self) -> dict:
        """Options that differ from the defaults, except where and with which seed."""
        default = FitOptions()
        skip = {"cache", "out", "head", "seed", "seeds", "overwrite", "verbose", "tensorboard"}
        return {
            name: value
            for name, value in self.to_dict().items()
            if name not in skip and value != default.to_dict()[name]
        }
