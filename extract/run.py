"""Extract videos into a cache: check that the run can start, skip or reuse what is
cached, featurise the rest in parallel and append it to shards."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from cache.labels import (
    label_file_warnings,
    labelled_count,
    load_label_file,
    merge_tables,
    read_label_table,
    write_labels,
)
from cache.manifest import check_cache_folder, config_hash, plural, write_failures
from cache.reader import CacheReader
from cache.remove import ghost_ids, ghost_warning
from cache.schema import OPTIONS_FILE, VideoRecord
from cache.sets import stored_sets
from cache.writer import CacheWriter
from common.errors import TraitcacheError
from common.files import write_atomically
from common.options import flatten
from extract.config import ExtractOptions
from extract.embed import check_runtime, imagenet_weights_path, inference_function, loading_line, resolve_runtime
from extract.faces import load_cascade
from extract.featuresets import DEFAULT_SETS, FILE_IDENTITY, feature_sets
from extract.inputs import Failure, VideoJob, check_inputs, discover, identify
from extract.interrupt import deferred_interrupt
from extract.parallel import embeds_in_workers, featurize_jobs

# The libraries that produce the cached numbers: their versions are recorded in each shard.
EXTRACTION_LIBRARIES = ("tensorflow", "keras", "openvino", "opencv-python-headless", "av", "pyAudioAnalysis", "numpy")


@dataclass(frozen=True)
class Summary:
    """What one extraction run did.

    Attributes
    ----------
    extracted : int
        Videos decoded and featurised by this run.
    copied : int
        Byte-identical copies of those, recorded under their own names without decoding again.
    reused : int
        Videos whose content was already cached under another name or split (renamed
        or moved copies), re-recorded without decoding.
    skipped : int
        Videos already cached under the same name, split and content.
    """

    extracted: int
    copied: int
    reused: int
    skipped: int
    failures: list[Failure]
    cached: int
    failures_file: Path | None
    interrupted: bool = False
    labelled: int = 0  # cached videos that have labels
    warnings: tuple[str, ...] = ()  # label files that label no cached video, ghosts of renamed files

    def line(self) -> str:
        text = (
            f"{self.extracted} extracted, {plural(self.copied, 'identical copy', 'identical copies')}, "
            f"{self.reused} reused, {self.skipped} already cached, {len(self.failures)} failed"
        )
        if self.failures:
            text += f": see {self.failures_file}"
        return text + f" ({plural(self.cached, 'video')} in the cache, {self.labelled} labelled)"


def check_ready(options: ExtractOptions) -> None:
    """Everything a run needs that can be missing, checked before the cache is touched.

    Raises
    ------
    FaceError
        The Haar cascade cannot be loaded.
    WeightsError
        The ImageNet weights are neither cached nor downloadable.
    RuntimeUnavailableError
        The requested ResNet50 runtime is not installed or not supported here.
    """
    load_cascade()
    check_runtime(options.embed.runtime)
    if options.embed.weights == "imagenet":
        imagenet_weights_path()


def extraction_versions() -> dict[str, str]:
    """Versions of the installed libraries that produce the cached numbers."""
    versions = {}
    for name in EXTRACTION_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass(frozen=True)
class _Plan:
    """How each input job is served: decoded, copied from a job decoded in this run,
    re-recorded from the cache, or skipped."""

    to_extract: list[VideoJob]
    copies: dict[str, list[VideoJob]]  # path of a job to extract -> later jobs with the same bytes
    from_cache: list[VideoJob]
    skipped: int


def _plan(jobs: list[VideoJob], writer: CacheWriter) -> _Plan:
    cached = {
        entry.video_ids[row]: (entry.content_hashes[row], entry.splits[row]) for entry, row in writer.index.live()
    }
    known = {content_hash for content_hash, _ in cached.values()}
    to_extract: dict[str, VideoJob] = {}  # by content hash
    copies: dict[str, list[VideoJob]] = {}
    from_cache = []
    skipped = 0
    for job in jobs:
        if cached.get(job.video_id) == (job.content_hash, job.split):
            skipped += 1
        elif job.content_hash in known:
            from_cache.append(job)
        elif job.content_hash in to_extract:
            copies.setdefault(to_extract[job.content_hash].path, []).append(job)
        else:
            to_extract[job.content_hash] = job
    return _Plan(list(to_extract.values()), copies, from_cache, skipped)


def _load_model(options: ExtractOptions, show_progress: bool) -> None:
    """Start ResNet50 where the crops are embedded, after a line saying so: its start-up
    takes long enough (and slows the first videos enough) to need an explanation."""
    in_workers = embeds_in_workers(options)
    if show_progress:
        line = loading_line(options.embed.runtime)
        tqdm.write(f"each Dask worker is {line}" if in_workers else line, file=sys.stderr)
    if not in_workers:
        inference_function(options.embed.weights, options.faces.crop_size, options.seed, options.embed.runtime)


def _renamed(record: VideoRecord, job: VideoJob) -> VideoRecord:
    return dataclasses.replace(record, video_id=job.video_id, split=job.split, source=job.path)


def _add_sets(cache_dir: Path, options: ExtractOptions, show_progress: bool) -> list[str]:
    """Compute, for the videos just cached, the sets asked for and every set the cache holds
    beside its shards; returns warnings (the cached videos stay, whatever fails here)."""
    from extract.adding import AddOptions, add_sets

    # Sets held with a weights file cannot be recomputed without that file: only named weights are.
    named = options.embed.weights if options.embed.weights in ("imagenet", "none") else "imagenet"
    by_weights: dict[str, list[str]] = {}
    for chosen in feature_sets(options.features):
        if chosen.name not in DEFAULT_SETS:
            by_weights.setdefault(named, []).append(chosen.name)
    warnings = []
    for found in stored_sets(cache_dir):
        weights = found.descriptor["options"].get("weights", named)
        if weights.startswith(FILE_IDENTITY):
            warnings.append(
                f"{found.name} was computed with a weights file: add it to the new videos with `python -m extract add {cache_dir} --features {found.name} --weights FILE`"
            )
        elif found.name not in by_weights.get(weights, []):
            by_weights.setdefault(weights, []).append(found.name)
    for weights, names in by_weights.items():
        added = AddOptions(features=",".join(names), weights=weights, jobs=1)
        try:
            add_sets(cache_dir, added, show_progress)
        except TraitcacheError as error:
            warnings.append(f"{','.join(names)} not added to the new videos: {error.command_line_message()}")
    return warnings


def extract_to_cache(
    inputs: list[str], cache_dir: Path, label_files: list[Path], options: ExtractOptions, show_progress: bool = True
) -> Summary:
    """Extract every input video not yet cached into ``cache_dir``.

    Nothing is written before the run can really start: options, label files,
    input paths, the cache folder, the Haar cascade, the runtime and the weights
    are checked first. Videos are
    identified by content: one already cached under the same name and split is
    skipped; one cached under another name or split (a renamed or moved copy) is
    re-recorded from the cache without decoding; byte-identical files under several
    names are decoded once and recorded under each name.
    """
    options = options.resolved()
    label_tables = {path: load_label_file(path) for path in label_files}
    labels = merge_tables(list(label_tables.values()))
    check_inputs(inputs, options.one_split)
    check_cache_folder(cache_dir)
    check_ready(options)
    videos, failures = discover(inputs)
    with tqdm(total=len(videos), desc="hashing", unit="video", disable=not show_progress, leave=False) as progress:
        jobs, unreadable = identify(videos, progress)
    failures += unreadable
    config = options.feature_config()
    extracted = copied = 0
    with CacheWriter(cache_dir, config, options.videos_per_shard, extraction_versions()) as writer:
        plan = _plan(jobs, writer)
        ghosts: set[str] = set()
        if plan.from_cache:
            reader = CacheReader(cache_dir)
            for job in plan.from_cache:
                record = reader.record(job.content_hash)
                ghosts |= ghost_ids([(record, job.video_id)])
                writer.add(_renamed(record, job))
        with (
            deferred_interrupt(show_progress) as stop,
            tqdm(total=len(plan.to_extract), desc="extracting", unit="video", disable=not show_progress) as progress,
        ):
            if plan.to_extract:
                _load_model(options, show_progress)
                progress.reset()  # the bar's rate and time left count from the first video, not the start-up
            for result in featurize_jobs(plan.to_extract, options, stop):
                if isinstance(result, Failure):
                    failures += [result] + [
                        Failure(copy.path, f"identical to {result.path}: {result.reason}")
                        for copy in plan.copies.get(result.path, [])
                    ]
                else:
                    writer.add(result)
                    extracted += 1
                    for copy in plan.copies.get(result.source, []):
                        writer.add(_renamed(result, copy))
                        copied += 1
                progress.update(1)
            interrupted = stop.requested
        writer.flush()
        cached = writer.index.num_videos()
        # Still under the writer's lock, so no other run or `cache labels` interleaves.
        if labels:
            write_labels(cache_dir, labels)
        cached_ids = {entry.video_ids[row] for entry, row in writer.index.live()}
        warnings = label_file_warnings(label_tables, cached_ids)
        if ghosts:
            warnings.append(ghost_warning(len(ghosts), cache_dir))
        labelled = labelled_count(read_label_table(cache_dir), cached_ids)
        failures_file = write_failures(cache_dir, [(failure.path, failure.reason) for failure in failures])
        resolved = {
            **flatten(options),
            "runtime_used": resolve_runtime(options.embed.runtime)
            if not embeds_in_workers(options)
            else "chosen by each worker",
            "config_hash": config_hash(config),
            "inputs": inputs,
            "labels": [str(path) for path in label_files],
        }
        write_atomically(Path(cache_dir) / OPTIONS_FILE, json.dumps(resolved, indent=1))
    if not interrupted:
        warnings += _add_sets(cache_dir, options, show_progress)
    return Summary(
        extracted,
        copied,
        len(plan.from_cache),
        plan.skipped,
        failures,
        cached,
        failures_file,
        interrupted,
        labelled,
        tuple(warnings),
    )
