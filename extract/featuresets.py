"""Feature-set names (``SOURCE:EXTRACTOR``), their dimensions and their identities.

A feature set is what one extractor computes from one source a cache keeps:
``face`` crops and whole-frame ``scene`` images go through a visual backbone
(``extract.backbones``), the ``audio`` sound track through pyAudioAnalysis
(``pyaa``, ``extract.audio``) or openSMILE (``egemaps``, ``compare``,
``extract.smile``). Its identity is a short hash over exactly the options that
decide its numbers (:func:`describe`), so that two sets computed with the same
identity can share a cache and a different one never passes for them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cache.manifest import config_hash, file_digest
from cache.schema import AUDIO_DIM
from common.errors import OptionError
from extract.backbones import BACKBONES, check_side
from extract.embed import NAMED_WEIGHTS, WeightsError
from extract.smile import SMILE_SETS

VISUAL_SOURCES = ("face", "scene")
AUDIO_SOURCE = "audio"
SOURCES = (*VISUAL_SOURCES, AUDIO_SOURCE)
PYAA = "pyaa"  # pyAudioAnalysis' 68 short-term features, today's audio set
AUDIO_EXTRACTORS = {PYAA: AUDIO_DIM, **{name: dimension for name, (_, dimension) in SMILE_SETS.items()}}
DEFAULT_SETS = ("face:resnet50", "audio:pyaa")  # what a cache written before named sets holds
SEPARATOR = ":"


@dataclass(frozen=True)
class FeatureSet:
    """One named feature set: an extractor applied to a source."""

    source: str
    extractor: str

    @property
    def name(self) -> str:
        """``SOURCE:EXTRACTOR``, e.g. ``face:vgg16``."""
        return f"{self.source}{SEPARATOR}{self.extractor}"

    @property
    def visual(self) -> bool:
        """Computed by a backbone from images (face crops or whole frames)."""
        return self.source in VISUAL_SOURCES

    @property
    def dimension(self) -> int:
        """Values per row: per frame for visual sets, per segment for audio sets."""
        return BACKBONES[self.extractor].dimension if self.visual else AUDIO_EXTRACTORS[self.extractor]


def _extractors(source: str) -> tuple[str, ...]:
    return tuple(BACKBONES) if source in VISUAL_SOURCES else tuple(AUDIO_EXTRACTORS)


FEATURE_SETS = tuple(FeatureSet(source, extractor) for source in SOURCES for extractor in _extractors(source))
NAMES = tuple(feature_set.name for feature_set in FEATURE_SETS)


def feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``.

    Raises
    ------
    OptionError
        Of ``features``, for a name that is not ``SOURCE:EXTRACTOR`` with a known
        source and an extractor of that source: one line with the closest valid
        name when there is one, and every valid name.
    """
    source, separator, extractor = name.strip().partition(SEPARATOR)
    if separator and source in SOURCES and extractor in _extractors(source):
        return FeatureSet(source, extractor)
    if not separator:
        problem = f"{name!r} is not SOURCE:EXTRACTOR"
    elif source not in SOURCES:
        problem = f"{name!r} has an unknown source {source!r}"
    else:
        problem = f"{name!r} names no {source} extractor {extractor!r}"
    close = _closest(source, extractor) if separator else _closest("", source)
    suggestion = f" (did you mean {close}?)" if close else ""
    raise OptionError("features", f"{problem}{suggestion}; valid sets: {', '.join(NAMES)}")


def _closest(source: str, extractor: str) -> str | None:
    """The valid name nearest a mistyped one: the closest extractor, under the closest source that has it."""
    extractors = difflib.get_close_matches(extractor.lower(), [*BACKBONES, *AUDIO_EXTRACTORS], n=1)
    if not extractors:
        return None
    sources = difflib.get_close_matches(source.lower(), SOURCES, n=1)
    return next(
        f"{option}{SEPARATOR}{extractors[0]}" for option in (*sources, *SOURCES) if extractors[0] in _extractors(option)
    )


def feature_sets(names: str) -> tuple[FeatureSet, ...]:
    """Feature sets from a comma-separated list, as ``--features`` takes them.

    Raises
    ------
    OptionError
        Of ``features``, for an invalid name (see ``feature_set``), an empty list or a name given twice.
    """
    parsed = tuple(feature_set(name) for name in names.split(",") if name.strip())
    if not parsed:
        raise OptionError("features", f"names no feature set; expected e.g. {','.join(DEFAULT_SETS)}")
    repeated = sorted({chosen.name for chosen in parsed if parsed.count(chosen) > 1})
    if repeated:
        raise OptionError("features", f"names {', '.join(repeated)} more than once; name each set once")
    return parsed


FILE_IDENTITY = "sha256:"  # prefix of a weights file's identity: its content, not its path


def weights_identity(weights: str) -> str:
    """What identifies a backbone's weights: ``imagenet``, ``none``, or ``sha256:`` of a weights file's bytes.

    A file's identity is its content, so moving or renaming it keeps a set's
    identity and changing its bytes changes it.

    Raises
    ------
    WeightsError
        When ``weights`` is neither named weights nor an existing file.
    """
    if weights in NAMED_WEIGHTS:
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"{weights}: no such file; expected imagenet, none, or a weights file (.h5 or .weights.h5)")
    return FILE_IDENTITY + file_digest(path)


def describe(
    chosen: FeatureSet,
    *,
    weights: str = "imagenet",
    side: int = 224,
    seed: int = 0,
    audio_rate: int = 16000,
    audio_window: float = 0.050,
    audio_step: float = 0.025,
    audio_mode: str = "mean",
) -> dict:
    """The options that decide a set's numbers, and only those.

    Every option any set may depend on is accepted; the descriptor keeps a set's
    own. An option added later must join a descriptor only when it differs from
    the value that reproduces the earlier numbers, so that existing identities
    stay valid.

    Parameters
    ----------
    chosen : FeatureSet
        The set.
    weights : str
        A ``weights_identity`` (``imagenet``, ``none`` or ``sha256:...``), not a path:
        visual sets.
    side : int
        Pixels of the square images the backbone sees: visual sets.
    seed : int
        Seeds random weights: visual sets with ``none`` weights only.
    audio_rate : int
        Hz of the sound track: audio sets.
    audio_window, audio_step : float
        Seconds: ``audio:pyaa`` averaging windows per segment (``audio_mode`` mean) only.
    audio_mode : str
        ``mean`` or ``window`` (``extract.audio.AudioOptions``): ``audio:pyaa`` only.

    Returns
    -------
    dict
        JSON-able, e.g. ``{"set": "face:vgg16", "weights": "imagenet", "side": 224}``.
    """
    descriptor = {"set": chosen.name}
    if chosen.visual:
        check_side(side)
        descriptor |= {"weights": weights, "side": side}
        if weights == "none":
            descriptor["seed"] = seed
        return descriptor
    descriptor["audio_rate"] = audio_rate
    if chosen.extractor == PYAA:
        descriptor["audio_mode"] = audio_mode
        # One window per segment takes its span from the segment, not from these.
        if audio_mode == "mean":
            descriptor |= {"audio_window": audio_window, "audio_step": audio_step}
    return descriptor


def identity(descriptor: dict) -> str:
    """A set's identity: a short stable hash of its ``describe`` descriptor (16 hex digits)."""
    return config_hash(descriptor)
