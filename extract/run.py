"""Run the extraction: parallel decode/faces/audio, batched embedding, shards.

Workers (joblib, loky or Dask) decode each video, find and crop its faces and
compute its audio features; they return arrays, never raise for a bad video. The
parent process gathers crops from several videos into large ResNet50 batches
(building the model once) while the workers go on decoding, then appends finished
videos to the cache in input order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import joblib
import numpy as np
from tqdm import tqdm

from cache.labels import load_label_file, merge_tables, write_labels
from cache.manifest import config_hash, write_atomically, write_failures
from cache.reader import CacheReader
from cache.schema import EMBEDDING_DIM, VideoRecord
from cache.writer import CacheWriter
from extract.audio import audio_features
from extract.config import ExtractOptions
from extract.embed import embed
from extract.faces import crop_faces, locate_faces
from extract.inputs import Failure, VideoJob, discover, identify, make_job
from extract.video import VideoError, decode

OPTIONS_FILE = "options.json"  # resolved options of the latest run, beside the shards
VIDEOS_PER_BLOCK_PER_WORKER = 8  # jobs handed to the pool at once: bounds memory, keeps workers busy
# Failures a single video may cause; anything else is a bug and stops the run.
VIDEO_FAILURES = (VideoError, av.error.FFmpegError, cv2.error, OSError, ValueError, MemoryError)


@dataclass(frozen=True)
class PreparedVideo:
    """A video's worker-side results, waiting for its crops to be embedded."""

    job: VideoJob
    crops: np.ndarray  # (T*k, S, S, 3) uint8
    frame_times: np.ndarray  # (T*k,) float32
    face_boxes: np.ndarray  # (T*k, 4) int32
    face_found: np.ndarray  # (T*k,) bool
    audio_features: np.ndarray  # (T, 68) float32
    has_audio: bool


@dataclass(frozen=True)
class Summary:
    """What one extraction run did."""

    extracted: int
    reused: int
    skipped: int
    failures: list[Failure]
    cached: int
    failures_file: Path | None
    interrupted: bool = False

    def line(self) -> str:
        text = f"{self.extracted} extracted, {self.reused} reused, {self.skipped} already cached, {len(self.failures)} failed"
        if self.failures:
            text += f": see {self.failures_file}"
        return text + f" ({self.cached} videos in the cache)"


@functools.cache
def _configure_worker() -> None:
    # Each worker handles one video at a time; OpenCV's own thread pool would only
    # compete with the other workers for the same cores.
    # With --jobs 1 this runs in the parent itself, which keeps OpenCV's threads
    # (the cores are its alone) and its Ctrl-C handler.
    if multiprocessing.parent_process() is None:
        return
    cv2.setNumThreads(1)
    # Ctrl-C in a terminal reaches every process of the group: the parent decides
    # when to stop, so a worker process must not die half way through a video.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def decoder_threads(workers: int) -> int:
    """Decoder threads per worker: the cores shared out, so that parallel workers do
    not oversubscribe them (measured: frame threading in each of 2 workers on 2
    cores was ~8% slower per video than one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a request to stop after the video in hand, so
    that shards and the index are never cut mid-write; a second Ctrl-C stops at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request_stop(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_video(job: VideoJob, options: ExtractOptions) -> PreparedVideo | Failure:
    """Decode, find faces, crop and compute audio features for one video.

    Returns a Failure with a one-line reason instead of raising, so that one bad
    file never cancels the other workers' videos.
    """
    _configure_worker()
    rng = np.random.default_rng([options.seed, int(job.content_hash[:8], 16)]) if options.sampling == "random" else None
    try:
        decoded = decode(Path(job.path), options.frames, options.frames_per_segment, options.sampling, options.audio_rate, rng, decoder_threads(options.workers))
        boxes = locate_faces(decoded.frames, options.detect_height, options.scale_factor, options.min_neighbors, options.min_neighbors_floor, options.min_face)
        crops = crop_faces(decoded.frames, boxes.used, options.face_margin, options.crop_size)
        audio = audio_features(decoded.audio, options.audio_rate, decoded.duration, options.frames, options.audio_window, options.audio_step, options.audio_mode)
    except VIDEO_FAILURES as error:
        return Failure(job.path, str(error).splitlines()[0] if str(error) else type(error).__name__)
    return PreparedVideo(job, crops, decoded.frame_times, boxes.detected, boxes.found, audio, decoded.audio is not None)


@contextlib.contextmanager
def parallel_backend(options: ExtractOptions):
    """joblib's backend for the run: loky processes, or a Dask cluster on loopback
    (started and stopped here) or at ``options.scheduler``."""
    if options.backend == "loky":
        yield
        return
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if options.scheduler:
            client = stack.enter_context(Client(options.scheduler))
        else:
            cluster = stack.enter_context(LocalCluster(n_workers=options.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        stack.enter_context(joblib.parallel_config(backend="dask"))
        del client
        yield


def _prepared(jobs: list[VideoJob], options: ExtractOptions) -> Iterator[PreparedVideo | Failure]:
    # joblib keeps dispatching while finished results wait to be consumed, so when
    # embedding is slower than decoding the backlog (1.5 MB of crops per video)
    # would grow with the data set; feeding jobs in blocks bounds it.
    block = VIDEOS_PER_BLOCK_PER_WORKER * options.workers
    with parallel_backend(options), joblib.Parallel(n_jobs=options.workers, return_as="generator") as parallel:
        for start in range(0, len(jobs), block):
            yield from parallel(joblib.delayed(prepare_video)(job, options) for job in jobs[start : start + block])


def _record(video: PreparedVideo, embeddings: np.ndarray, options: ExtractOptions) -> VideoRecord:
    return VideoRecord(
        video_id=video.job.video_id,
        split=video.job.split,
        content_hash=video.job.content_hash,
        source=video.job.path,
        face_embeddings=embeddings,
        audio_features=video.audio_features,
        frame_times=video.frame_times,
        face_boxes=video.face_boxes,
        face_found=video.face_found,
        has_audio=video.has_audio,
        face_crops=video.crops if options.keep_crops else None,
    )


class _CropBatcher:
    """Embed crops in full ResNet50 batches across video boundaries.

    A video's crops may span two batches: its record is released once all of
    them are embedded, so ResNet50 sees only full batches except the last one.
    """

    def __init__(self, options: ExtractOptions):
        self.options = options
        self.videos: list[PreparedVideo] = []  # waiting, in order
        self.crops: list[np.ndarray] = []  # their crops not yet embedded, in order
        self.embeddings: list[np.ndarray] = []  # embedded crops of the waiting videos

    def _embed(self, count: int) -> None:
        waiting = np.concatenate(self.crops)
        self.crops = [waiting[count:]]
        options = self.options
        self.embeddings.append(embed(waiting[:count], options.weights, options.crop_size, options.seed, options.batch_size))

    def _ready(self) -> Iterator[VideoRecord]:
        embedded = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, EMBEDDING_DIM), np.float16)
        start = 0
        while self.videos and start + len(self.videos[0].crops) <= len(embedded):
            video = self.videos.pop(0)
            yield _record(video, embedded[start : start + len(video.crops)], self.options)
            start += len(video.crops)
        self.embeddings = [embedded[start:]]

    def add(self, video: PreparedVideo) -> Iterator[VideoRecord]:
        self.videos.append(video)
        self.crops.append(video.crops)
        waiting = sum(len(crops) for crops in self.crops)
        if waiting >= self.options.batch_size:
            self._embed(waiting - waiting % self.options.batch_size)
            yield from self._ready()

    def finish(self) -> Iterator[VideoRecord]:
        waiting = sum(len(crops) for crops in self.crops)
        if waiting:
            self._embed(waiting)
        yield from self._ready()


def featurize_jobs(jobs: list[VideoJob], options: ExtractOptions) -> Iterator[VideoRecord | Failure]:
    """Features of each job's video, in job order (failures as soon as known).

    Crops of consecutive videos are embedded together in batches of
    ``options.batch_size``, so ResNet50 (and a GPU) always sees full batches.
    """
    batcher = _CropBatcher(options)
    for result in _prepared(jobs, options):
        if isinstance(result, Failure):
            yield result
        else:
            yield from batcher.add(result)
    yield from batcher.finish()


def featurize(paths: Iterable[Path], options: ExtractOptions, split: str = "") -> Iterator[VideoRecord | Failure]:
    """Features of video files without any cache (what ``train predict`` uses).

    Unlike a cache, which keeps one record per content, every input path gets its
    own result: copies and same-named files in other folders are all featurised.
    """
    videos, failures = discover([str(path) for path in paths])
    jobs = [make_job(path, split) for path, _ in videos]
    yield from failures + [job for job in jobs if isinstance(job, Failure)]
    yield from featurize_jobs([job for job in jobs if isinstance(job, VideoJob)], options)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produce the cached numbers."""
    names = ("tensorflow", "keras", "opencv-python-headless", "av", "pyAudioAnalysis", "numpy")
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _cached_name(location) -> tuple[str, str]:
    entry, row = location
    return entry.video_ids[row], entry.splits[row]


def extract_to_cache(inputs: list[str], cache_dir: Path, label_files: list[Path], options: ExtractOptions, show_progress: bool = True) -> Summary:
    """Extract every input video not yet cached into ``cache_dir``.

    Videos are identified by content: one already cached under the same name and
    split is skipped; one cached under another name or split (a renamed or moved
    copy) is re-recorded from the cache without decoding. Label files are read
    before any decoding so that a bad one fails fast, and attached at the end.
    """
    options = options.resolved()
    labels = merge_tables([load_label_file(path) for path in label_files])
    videos, failures = discover(inputs)
    with tqdm(total=len(videos), desc="hashing", unit="video", disable=not show_progress, leave=False) as progress:
        jobs, unreadable = identify(videos, progress)
    failures += unreadable
    config = options.feature_config()
    extracted = reused = 0
    with CacheWriter(cache_dir, config, options.videos_per_shard, library_versions()) as writer:
        known = writer.known_hashes()
        to_extract = [job for job in jobs if job.content_hash not in known]
        moved = [job for job in jobs if job.content_hash in known and _cached_name(known[job.content_hash]) != (job.video_id, job.split)]
        skipped = len(jobs) - len(to_extract) - len(moved)
        if moved:
            reader = CacheReader(cache_dir)
            for job in moved:
                cached = reader.record(job.content_hash)
                writer.add(dataclasses.replace(cached, video_id=job.video_id, split=job.split, source=job.path))
            reused = len(moved)
        with deferred_interrupt() as stop, tqdm(total=len(to_extract), desc="extracting", unit="video", disable=not show_progress) as progress:
            results = featurize_jobs(to_extract, options)
            for result in results:
                if isinstance(result, Failure):
                    failures.append(result)
                else:
                    writer.add(result)
                    extracted += 1
                progress.update(1)
                if stop.is_set():
                    results.close()
                    break
            interrupted = stop.is_set()
        writer.flush()
        cached = writer.index.num_videos()
        # Still under the writer's lock, so no other run or `cache labels` interleaves.
        if labels:
            write_labels(cache_dir, labels)
        failures_file = write_failures(cache_dir, [(failure.path, failure.reason) for failure in failures])
        resolved = {**dataclasses.asdict(options), "config_hash": config_hash(config), "inputs": inputs, "labels": [str(path) for path in label_files]}
        write_atomically(Path(cache_dir) / OPTIONS_FILE, json.dumps(resolved, indent=1))
    return Summary(extracted, reused, skipped, failures, cached, failures_file, interrupted)
