"""Options of the extraction stage: one options object per step, and the run's own."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from cache.manifest import file_digest
from common.errors import OptionError
from common.options import Role, build, identity, option, step
from extract.audio import AudioOptions
from extract.embed import EmbedOptions
from extract.faces import FaceOptions
from extract.featuresets import DEFAULT_SETS, feature_sets
from extract.video import DecodeOptions

BACKENDS = ("loky", "dask")


def check_parallelism(backend: str, jobs: int) -> None:
    """Refuse a ``--backend`` or ``--jobs`` that no run can use (extraction's and ``add``'s)."""
    if backend not in BACKENDS:
        raise OptionError("backend", f"must be one of {BACKENDS}, got {backend!r}")
    if jobs < 0:
        raise OptionError("jobs", f"must be 0 (all cores) or more, got {jobs}")


def worker_count(jobs: int) -> int:
    """Parallel workers ``--jobs`` asks for: 0 means all cores."""
    return jobs or os.cpu_count() or 1


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides how a video becomes cached features, and how the run goes.

    Each step gets its own options whole (``options.decode``, ``options.faces``,
    ``options.audio``, ``options.embed``). ``seed`` serves two steps: mixed with each
    video's content hash it seeds random sampling, and it draws the random weights of
    ``weights="none"``. The rest is about the run: with ``backend="dask"`` and no
    ``scheduler`` a local cluster is started. Every option keeps one flat name, its
    flag and its key in ``config.json`` and ``options.json``.
    """

    decode: DecodeOptions = step(DecodeOptions)
    seed: int = option(0, "Seed of random sampling and of --weights none.", metavar="N")
    faces: FaceOptions = step(FaceOptions)
    embed: EmbedOptions = step(EmbedOptions)
    audio: AudioOptions = step(AudioOptions)
    keep_crops: bool = option(True, "Store the face crops in the cache.", flag="--keep-crops/--no-crops")
    # Kept sources never change the cached numbers: a cache keeps its identity whether they are stored or not.
    keep_audio: bool = option(
        True,
        "Store the resampled mono sound track (int16), from which audio sets can be added later.",
        flag="--keep-audio/--no-audio",
        role=Role.EXTRA,
    )
    keep_frames: bool = option(
        False,
        "Store the sampled whole frames letterboxed into crop-size squares, from which scene sets can be added later.",
        flag="--keep-frames/--no-frames",
        role=Role.EXTRA,
    )
    # Which sets the cache gets beside the default ones never changes the default sets' numbers.
    features: str = option(
        ",".join(DEFAULT_SETS),
        "Feature sets to compute (SOURCE:EXTRACTOR, comma-separated); the defaults are always in the shards.",
        metavar="SETS",
        role=Role.EXTRA,
    )
    jobs: int = option(0, "Parallel decoding workers; 0 = all cores.", metavar="N", role=Role.RUN)
    backend: str = option("loky", "loky | dask.", metavar="BACKEND", role=Role.RUN)
    scheduler: str | None = option(
        None, "Dask scheduler address; without it a local cluster is started.", metavar="ADDRESS", role=Role.RUN
    )
    videos_per_shard: int = option(64, "Videos per HDF5 shard.", metavar="N", role=Role.RUN)
    one_split: bool = option(
        False,
        "Extract a folder whose subfolders are named like splits (train/, test/) into one split anyway.",
        role=Role.RUN,
    )

    def __post_init__(self):
        stored = {"face": ("keep_crops", self.keep_crops), "scene": ("keep_frames", self.keep_frames)}
        stored["audio"] = ("keep_audio", self.keep_audio)
        for chosen in feature_sets(self.features):
            flag, kept = stored[chosen.source]
            if chosen.name not in DEFAULT_SETS and not kept:
                raise OptionError("features", f"names {chosen.name}, which is computed from what `{flag}` stores")
        check_parallelism(self.backend, self.jobs)
        if self.videos_per_shard < 1:
            raise OptionError("videos_per_shard", f"must be at least 1, got {self.videos_per_shard}")

    @property
    def workers(self) -> int:
        return worker_count(self.jobs)

    def resolved(self) -> ExtractOptions:
        """Options with a weights file path made absolute (so it can be found again).

        Raises
        ------
        OptionError
            When ``weights`` names a file that does not exist.
        """
        return dataclasses.replace(self, embed=self.embed.resolved())

    def feature_config(self) -> dict:
        """The options that decide the cached numbers, by flat name: the cache's identity
        (``common.options.identity``: the options of role IDENTITY, each left out at its legacy values)."""
        config = identity(self)
        if self.embed.weights_file is not None:
            config["weights_sha256"] = file_digest(self.embed.weights_file)
        return config

    @classmethod
    def from_dict(cls, config: dict) -> ExtractOptions:
        """Rebuild options from flat values, such as a recorded config (unknown keys are ignored)."""
        return build(cls, config)
