"""Options of the training stage: one frozen dataclass whose fields declare their own flags."""

from __future__ import annotations

from dataclasses import dataclass

from cache.schema import DEFAULT_CACHE, LABEL_NAMES, TRAITS
from common.errors import OptionError
from common.options import Role, build, flatten, named, option

HEADS = ("seed", "bilstm", "attention", "visual", "audio")
# Feature sets are named SOURCE:EXTRACTOR (extract.featuresets); train checks only the form
# and the source, so that it needs no extractor's library: the cache says which sets it holds.
VISUAL_SOURCES = ("face", "scene")
AUDIO_SOURCE = "audio"
DEFAULT_FEATURES = ("face:resnet50", "audio:pyaa")  # the sets every cache holds, and every run before --features
# Between the sets of one value: "," already separates a list flag's names, and a --grid axis's values.
SET_JOINER = "+"
TRAIN_SPLIT = "train"  # default train_split; when absent, a cache's only labelled split is fitted on
VALIDATION_SPLIT = "validation"  # default validation_split; when absent, a share of the training videos is held out
# Options that decide the numbers but name a run on their own (compare shows them in columns
# of their own), so they are not among its changed options.
NAMED_APART = ("head", "seed", "seeds", "features")
# Options that must be at least 1: layer widths and patiences.
POSITIVE_COUNTS = (
    "visual_units",
    "visual_projection",
    "audio_units",
    "lstm_units",
    "attention_units",
    "patience",
    "lr_patience",
)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``; empty parts are skipped.

    Raises
    ------
    ValueError
        A part that is not an integer.
    """
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 1,2,3, got {text!r}") from None


def parse_features(text: str) -> tuple[str, ...]:
    """``"face:vgg16,audio:egemaps"`` (or joined by ``+``, as in a ``--grid`` value) -> the set names."""
    return tuple(part.strip() for part in text.replace(SET_JOINER, ",").split(",") if part.strip())


def feature_source(name: str) -> str:
    """The source of a set name: ``face`` of ``face:vgg16``."""
    return name.partition(":")[0]


def parse_targets(text: str) -> tuple[str, ...]:
    """``"openness,interview"`` -> ``("openness", "interview")``; empty parts are skipped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class FitOptions:
    """Everything that decides how a head is trained from a cache.

    Defaults are the original project's values where it had them (Adam 1e-4,
    batch 8, MSE, 300 epochs cut by early stopping, Dense 1024 -> 128, dropout 0.2,
    audio Dense 32, LSTM 10 units, EarlyStopping 5, ReduceLROnPlateau 3 / 0.2).
    Each field's help is its ``--help`` line; what needs more words is here.

    Attributes
    ----------
    seeds : tuple of int
        When given, the run is repeated once per seed (``seed`` is then unused) and
        the metrics report mean and standard deviation.
    train_split, validation_split : str
        Split names to fit on and to select / early-stop on. A name the cache lacks
        is an error, except the defaults: without a ``train`` split a cache's only
        labelled split is fitted on, and without a ``validation`` split a share of
        the training videos is held out (reported as ``holdout``).
    targets : tuple of str
        The labels the head predicts, in this order, among LABEL_NAMES: the five
        traits (the default, the ChaLearn metric) and ChaLearn's ``interview``.
        Videos lacking a label of one of them are left out of fitting and scoring.
    holdout_seed : int
        Seeds the hold-out draw; kept apart from ``seed`` so that repeated seeds
        share one validation set.
    source_delimiter : str
        A video's source (the recording its clip was cut from) is the part of its id
        before the first ``source_delimiter``: ChaLearn's ``_01AyUz9J9I.002.mp4`` is
        clip 2 of ``_01AyUz9J9I``. A hold-out keeps all clips of a source on one side.
        Empty: every video is its own source.
    """

    cache: str = option(DEFAULT_CACHE, "Cache folder to train from.", metavar="DIR", role=Role.PLACE)
    out: str = option("runs/seed-head", "Run folder to write (runs/<name>).", metavar="DIR", role=Role.PLACE)
    head: str = option("seed", f"Head: {', '.join(HEADS)}.", metavar="NAME")
    epochs: int = option(300, "Most epochs; early stopping usually ends sooner.", metavar="N")
    lr: float = option(1e-4, "Adam learning rate.", metavar="RATE")
    batch_size: int = option(8, "Videos per training step.", metavar="N")
    seed: int = option(0, "Seed of a single run (weights, dropout, shuffling, frame picks).", metavar="N")
    seeds: tuple[int, ...] = option(
        (),
        "Comma-separated seeds, e.g. 1,2,3: one run per seed, reported as mean and std.",
        metavar="N,N,...",
        parse=parse_seeds,
    )
    targets: tuple[str, ...] = option(
        TRAITS,
        f"Comma-separated labels to predict, among {', '.join(LABEL_NAMES)} (default the five traits).",
        metavar="NAME,...",
        parse=parse_targets,
    )
    features: tuple[str, ...] = option(
        DEFAULT_FEATURES,
        "Comma-separated feature sets the head reads, SOURCE:EXTRACTOR (e.g. face:vgg16,audio:egemaps);"
        " two visual sets are joined per frame.",
        metavar="SET,...",
        parse=parse_features,
        legacy=(DEFAULT_FEATURES,),
    )
    visual_units: int = option(1024, "Width of the first per-frame Dense on the face embedding.", metavar="N")
    visual_projection: int = option(128, "Width of the second (linear) per-frame Dense.", metavar="N")
    dropout: float = option(0.2, "Dropout after the visual projection.", metavar="RATE")
    audio_units: int = option(32, "Width of the per-segment Dense on the audio features.", metavar="N")
    lstm_units: int = option(10, "LSTM units (per direction for bilstm).", metavar="N")
    attention_units: int = option(16, "Scoring width of the attention head.", metavar="N")
    patience: int = option(5, "EarlyStopping patience.", metavar="EPOCHS")
    lr_patience: int = option(3, "ReduceLROnPlateau patience.", metavar="EPOCHS")
    lr_factor: float = option(0.2, "ReduceLROnPlateau factor.", metavar="FACTOR")
    min_lr: float = option(5e-7, "ReduceLROnPlateau floor.", metavar="RATE")
    train_split: str = option(
        TRAIN_SPLIT, "Split to fit on; the default falls back to a cache's only labelled split.", metavar="NAME"
    )
    validation_split: str = option(
        VALIDATION_SPLIT,
        "Split that selects the best epoch and early-stops; without the default split, a share of the training"
        " videos is held out.",
        metavar="NAME",
    )
    validation_fraction: float = option(
        0.2,
        "Share of the training split's source videos held out when there is no validation split.",
        metavar="SHARE",
    )
    holdout_seed: int = option(0, "Seed of that hold-out draw.", metavar="N")
    source_delimiter: str = option(
        ".",
        "A video's source is its id up to the first TEXT (ChaLearn: _01AyUz9J9I.002.mp4 -> _01AyUz9J9I); a hold-out"
        " keeps each source's clips on one side. Empty: each video is its own source.",
        metavar="TEXT",
    )
    mixed_precision: bool = option(
        False, "Compute in float16 (mixed_float16 policy).", flag="--mixed-precision/--no-mixed-precision"
    )
    tensorboard: bool = option(
        False, "Also write TensorBoard logs under OUT/logs.", flag="--tensorboard/--no-tensorboard", role=Role.EXTRA
    )
    overwrite: bool = option(False, "Replace a run already in OUT.", flag="--overwrite/--no-overwrite", role=Role.RUN)
    verbose: int = option(
        2, "Keras output: 0 silent, 1 progress bar, 2 a line per epoch.", metavar="0|1|2", role=Role.RUN
    )

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in self.seeds))
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "features", tuple(self.features))
        malformed = [
            name
            for name in self.features
            if feature_source(name) not in (*VISUAL_SOURCES, AUDIO_SOURCE) or not name.partition(":")[2]
        ]
        unknown = [target for target in self.targets if target not in LABEL_NAMES]
        checks = [
            ("head", self.head in HEADS, f"must be one of {', '.join(HEADS)}, got {self.head!r}"),
            ("epochs", self.epochs >= 1, f"must be at least 1, got {self.epochs}"),
            ("lr", self.lr > 0, f"must be positive, got {self.lr}"),
            ("batch_size", self.batch_size >= 1, f"must be at least 1, got {self.batch_size}"),
            ("seeds", len(set(self.seeds)) == len(self.seeds), f"must not repeat a seed, got {self.seeds}"),
            ("targets", bool(self.targets), f"must name at least one of {', '.join(LABEL_NAMES)}"),
            ("targets", not unknown, f"must be among {', '.join(LABEL_NAMES)}, got {', '.join(unknown)}"),
            (
                "targets",
                len(set(self.targets)) == len(self.targets),
                f"must not repeat a label, got {','.join(self.targets)}",
            ),
            ("features", bool(self.features), f"must name at least one set, e.g. {','.join(DEFAULT_FEATURES)}"),
            (
                "features",
                not malformed,
                f"{', '.join(malformed)}: expected SOURCE:EXTRACTOR with SOURCE one of"
                f" {', '.join((*VISUAL_SOURCES, AUDIO_SOURCE))}, e.g. face:vgg16",
            ),
            (
                "features",
                len(set(self.features)) == len(self.features),
                f"must not repeat a set, got {','.join(self.features)}",
            ),
            (
                "features",
                sum(feature_source(name) == AUDIO_SOURCE for name in self.features) <= 1,
                f"names more than one audio set ({','.join(self.features)}); a head reads one",
            ),
            (
                "features",
                self.head == "visual" or any(feature_source(name) == AUDIO_SOURCE for name in self.features),
                f"head {self.head} needs an audio set and {','.join(self.features)} has none; add one"
                f" (e.g. audio:pyaa) or choose head visual",
            ),
            (
                "features",
                self.head == "audio" or any(feature_source(name) in VISUAL_SOURCES for name in self.features),
                f"head {self.head} needs a visual set and {','.join(self.features)} has none; add one"
                f" (e.g. face:resnet50) or choose head audio",
            ),
            ("dropout", 0.0 <= self.dropout < 1.0, f"must be in [0, 1), got {self.dropout}"),
            (
                "validation_fraction",
                0.0 < self.validation_fraction < 1.0,
                f"must be in (0, 1), got {self.validation_fraction}",
            ),
            ("lr_factor", 0.0 < self.lr_factor < 1.0, f"must be in (0, 1), got {self.lr_factor}"),
            ("verbose", self.verbose in (0, 1, 2), f"must be 0, 1 or 2, got {self.verbose}"),
        ]
        checks += [
            (name, getattr(self, name) >= 1, f"must be at least 1, got {getattr(self, name)}")
            for name in POSITIVE_COUNTS
        ]
        for name, passed, problem in checks:
            if not passed:
                raise OptionError(name, problem)

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """The seeds to train with: ``seeds`` when given, else ``(seed,)``."""
        return self.seeds or (self.seed,)

    def to_dict(self) -> dict:
        """JSON-able dict of every option (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in flatten(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> FitOptions:
        """Rebuild options saved by ``to_dict`` (unknown keys are ignored)."""
        return build(cls, values)

    def changed(self) -> dict:
        """The options that decide the numbers and differ from the defaults, except those that
        name a run on their own (``NAMED_APART``)."""
        default = type(self)().to_dict()
        shown = [name for name in named(type(self), Role.IDENTITY) if name not in NAMED_APART]
        return {name: value for name, value in self.to_dict().items() if name in shown and value != default[name]}
