"""Add feature sets to an existing cache from what it stored, never opening a video.

Face sets are computed from the stored face crops, scene sets from the stored whole
frames, audio sets from the stored sound track. Each (set, shard) pair is one job
that writes its own part file (``cache.sets``): a killed or interrupted run keeps the
finished parts and the same command resumes with the rest.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import h5py
import joblib
import numpy as np
from tqdm import tqdm

from cache.lock import CacheLock
from cache.manifest import plural
from cache.reader import CacheReader, holds, read_sounds
from cache.schema import CROPS_DATASET, DURATION_DATASET, FRAMES_DATASET, SOUND_DATASET, SOURCE_DATASETS
from cache.sets import SHARD_SETS, part_name, set_folder, write_descriptor, write_part
from cache.writer import library_versions
from common.errors import CacheError
from common.files import TEMPORARY_SUFFIX
from common.options import Role, option
from extract.config import ExtractOptions, check_parallelism, worker_count
from extract.featuresets import FeatureSet, describe, feature_sets, identity, weights_identity
from extract.interrupt import deferred_interrupt
from extract.parallel import close_quietly, parallel_backend

# Stored source of each feature-set source, and the extraction flag that stores it.
NEEDS = {
    "face": (CROPS_DATASET, "face crops", "--keep-crops"),
    "scene": (FRAMES_DATASET, "whole frames", "--keep-frames"),
    "audio": (SOUND_DATASET, "sound track", "--keep-audio"),
}
SET_LIBRARIES = ("tensorflow", "keras", "opensmile", "numpy")


@dataclass(frozen=True)
class AddOptions:
    """Which sets to add to a cache, with which weights, and how the run goes."""

    features: str = option("", "Comma-separated sets to add, e.g. face:vgg16,audio:egemaps.", metavar="SETS")
    weights: str = option("imagenet", "Visual sets' backbone weights: imagenet | none | FILE.", metavar="WEIGHTS")
    jobs: int = option(1, "Parallel jobs (one per set and shard); 0 = all cores.", metavar="N", role=Role.RUN)
    backend: str = option("loky", "loky | dask.", metavar="BACKEND", role=Role.RUN)
    scheduler: str | None = option(
        None, "Dask scheduler address; without it a local cluster is started.", metavar="ADDRESS", role=Role.RUN
    )

    def __post_init__(self):
        check_parallelism(self.backend, self.jobs)

    @property
    def workers(self) -> int:
        return worker_count(self.jobs)


@dataclass(frozen=True)
class AddSummary:
    """What one ``add`` run did: videos computed per set, and the sets already there."""

    added: dict[str, int]
    already: tuple[str, ...]
    interrupted: bool = False

    def line(self) -> str:
        parts = [f"{name}: {plural(count, 'video')} added" for name, count in self.added.items()]
        parts += [f"{name}: already there" for name in self.already]
        return "; ".join(parts)


@dataclass(frozen=True)
class _Job:
    chosen: FeatureSet
    folder: Path
    shard: str
    rows: list[int]
    video_ids: list[str]
    content_hashes: list[str]


def _descriptor(chosen: FeatureSet, options: AddOptions, extraction: ExtractOptions) -> dict:
    deciding = describe(
        chosen,
        weights=weights_identity(options.weights) if chosen.visual else "imagenet",
        side=extraction.faces.crop_size,
        seed=extraction.seed,
        audio_rate=extraction.decode.audio_rate,
        audio_window=extraction.audio.audio_window,
        audio_step=extraction.audio.audio_step,
        audio_mode=extraction.audio.audio_mode,
    )
    versions = dict(library_versions())
    for name in SET_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "name": chosen.name,
        "source": chosen.source,
        "extractor": chosen.extractor,
        "dimension": chosen.dimension,
        "identity": identity(deciding),
        "options": deciding,
        "library_versions": versions,
    }


def _check_sources(reader: CacheReader, chosen: tuple[FeatureSet, ...]) -> None:
    """Refuse, before anything is written, a set whose source some shard with current videos did not store."""
    live = [entry for entry, mask in zip(reader.index.shards, reader.index.live_masks()) if any(mask)]
    for entry in live:
        with h5py.File(reader.cache_dir / entry.name, "r") as shard:
            held = {name for name in SOURCE_DATASETS if holds(shard, name)}
        for wanted in chosen:
            dataset, what, flag = NEEDS[wanted.source]
            if dataset not in held or (wanted.source == "audio" and DURATION_DATASET not in held):
                raise CacheError(
                    f"{reader.cache_dir / entry.name}: stores no {what}, which {wanted.name} is computed from; "
                    f"re-extract the videos with {flag} into a new --cache folder (nothing was added)"
                )


def compute_part(cache_dir: Path, job: _Job, weights: str, extraction: ExtractOptions) -> int:
    """Compute one set for the given rows of one shard and write its part file; returns the videos written."""
    from extract.smile import load_library, smile_features

    rows = job.rows
    with h5py.File(Path(cache_dir) / job.shard, "r") as shard:
        if job.chosen.visual:
            images = shard[NEEDS[job.chosen.source][0]][rows]
        else:
            sounds = read_sounds(shard, rows)
            durations = shard[DURATION_DATASET][rows]
            has_audio = shard["has_audio"][rows]
    if job.chosen.visual:
        from extract.backbones import embed_images

        count, frames = images.shape[:2]
        flat = embed_images(images.reshape(-1, *images.shape[2:]), job.chosen.extractor, weights, extraction.seed)
        values = flat.reshape(count, frames, -1).astype(np.float16)
    else:
        load_library()
        values = np.stack(
            [
                smile_features(
                    sound if present else None,
                    extraction.decode.audio_rate,
                    float(duration),
                    extraction.decode.frames,
                    job.chosen.extractor,
                )
                for sound, duration, present in zip(sounds, durations, has_audio)
            ]
        )
    write_part(job.folder / part_name(job.shard), job.video_ids, job.content_hashes, values)
    return len(rows)


def _jobs(reader: CacheReader, chosen: FeatureSet, folder: Path) -> list[_Job]:
    """A job per shard whose current videos the set's part file does not hold yet."""
    jobs = []
    for entry, mask in zip(reader.index.shards, reader.index.live_masks()):
        rows = [row for row, live in enumerate(mask) if live]
        if not rows or (folder / part_name(entry.name)).is_file():
            continue
        jobs.append(
            _Job(
                chosen,
                folder,
                entry.name,
                rows,
                [entry.video_ids[row] for row in rows],
                [entry.content_hashes[row] for row in rows],
            )
        )
    return jobs


def add_sets(cache_dir: Path, options: AddOptions, show_progress: bool = True) -> AddSummary:
    """Add feature sets to every current video of a cache that lacks them, from the stored sources.

    Nothing is written before the run can really start: the set names, the cache, the
    stored sources every set needs, the weights (built into their architecture) and the
    cache lock are checked first.

    Raises
    ------
    OptionError
        An unknown set name, or a weights file that is missing or of another architecture.
    CacheError
        A missing or damaged cache, a source the cache did not store, or a cache an
        extraction holds.
    """
    wanted = feature_sets(options.features)
    reader = CacheReader(cache_dir)
    extraction = ExtractOptions.from_dict(reader.config)
    already = tuple(chosen.name for chosen in wanted if chosen.name in SHARD_SETS)
    chosen = tuple(chosen for chosen in wanted if chosen.name not in SHARD_SETS)
    _check_sources(reader, chosen)
    descriptors = {wanted_set: _descriptor(wanted_set, options, extraction) for wanted_set in chosen}
    if any(not wanted_set.visual for wanted_set in chosen):
        from extract.smile import load_library

        load_library()  # before TensorFlow (see extract.smile)
    for wanted_set in chosen:
        if wanted_set.visual:
            from extract.backbones import build_backbone

            build_backbone(wanted_set.extractor, options.weights, extraction.faces.crop_size, extraction.seed)
    added = {wanted_set.name: 0 for wanted_set in chosen}
    with CacheLock(Path(cache_dir)):
        jobs, folders = [], []
        for wanted_set, descriptor in descriptors.items():
            folders.append(set_folder(cache_dir, wanted_set.name, descriptor["identity"]))
            _remove_temporaries(folders[-1])
            write_descriptor(folders[-1], descriptor)
            jobs += _jobs(reader, wanted_set, folders[-1])
        total = sum(len(job.rows) for job in jobs)
        try:
            with (
                deferred_interrupt(show_progress) as stop,
                tqdm(
                    total=total, desc="adding sets", unit="video", disable=not show_progress, file=sys.stderr
                ) as progress,
                parallel_backend(options) as workers,
            ):
                run = joblib.Parallel(n_jobs=min(workers, max(len(jobs), 1)), return_as="generator")
                results = run(joblib.delayed(compute_part)(cache_dir, job, options.weights, extraction) for job in jobs)
                try:
                    for job in jobs:
                        if stop.requested:
                            break
                        stop.waiting = job.video_ids  # results come in job order: this part is the one awaited
                        progress.update(next(results))
                finally:
                    close_quietly(results)
                interrupted = stop.requested
        finally:
            for folder in folders:  # a stop ends the workers, maybe mid-write
                _remove_temporaries(folder)
    for job in jobs:  # after a stop, workers may have finished parts whose results were not awaited
        if (job.folder / part_name(job.shard)).is_file():
            added[job.chosen.name] += len(job.rows)
    return AddSummary(added, already, interrupted)


def _remove_temporaries(folder: Path) -> None:
    """Remove the half-written part files an ended run left in a set's folder (the cache lock is held)."""
    for stale in folder.glob(f"*{TEMPORARY_SUFFIX}"):
        stale.unlink()
