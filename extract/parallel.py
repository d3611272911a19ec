"""Run the per-video work in parallel (loky processes or a Dask cluster) and turn
its results into cache records, in job order."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

import joblib

from cache.schema import VideoRecord
from extract import interrupt
from extract.batching import CropBatcher
from extract.config import ExtractOptions
from extract.inputs import Failure, VideoJob, discover, make_job
from extract.interrupt import StopRequest, ignore_ctrl_c
from extract.worker import PreparedVideo, prepare_video

VIDEOS_PER_BLOCK_PER_WORKER = 8  # jobs handed to the pool at once: bounds memory, keeps workers busy


def embeds_in_workers(options: ExtractOptions) -> bool:
    """Whether workers embed their own crops (one ResNet50 per worker process).

    On a Dask cluster they do, so that throughput grows with the workers instead of
    being capped by the client. Local loky workers hand their crops to the parent,
    which embeds them in full batches across videos: on one machine the cores are
    shared either way, and one model instead of one per worker saves memory.
    """
    return options.backend == "dask"


@contextlib.contextmanager
def parallel_backend(options: ExtractOptions) -> Iterator[int]:
    """joblib's backend for the run: loky processes, or a Dask cluster on loopback
    (started and stopped here) or at ``options.scheduler``.

    Loky's worker processes and a local cluster's ignore Ctrl-C, which a terminal sends
    to them too: what a Ctrl-C stops is the parent's to decide (``extract.interrupt``);
    a worker interrupted mid-video or mid-part would lose it, and a cluster whose
    workers all died would leave the run waiting for ever.

    Yields
    ------
    int
        Parallel workers the backend offers (cluster threads for Dask).
    """
    if options.backend == "loky":
        with joblib.parallel_config(backend="loky", initializer=ignore_ctrl_c):
            yield options.workers
        return
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if options.scheduler:
            client = stack.enter_context(Client(options.scheduler))
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=options.workers,
                    threads_per_worker=1,
                    host="127.0.0.1",
                    dashboard_address=None,
                    preload=[interrupt.__name__],  # its dask_setup: the workers ignore Ctrl-C
                )
            )
            client = stack.enter_context(Client(cluster))
        stack.enter_context(joblib.parallel_config(backend="dask"))
        yield max(1, sum(client.ncores().values()))


def close_quietly(results: Generator) -> None:
    """End a generator of joblib results, maybe mid-run.

    Abandoning the pool mid-run makes joblib warn about the tasks it drops; a
    requested stop is expected, and the caller says what was dropped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results.close()


def _results(
    jobs: list[VideoJob], options: ExtractOptions, embed_here: bool
) -> Iterator[PreparedVideo | VideoRecord | Failure]:
    # joblib keeps dispatching while finished results wait to be consumed, so when
    # embedding is slower than decoding the backlog (1.5 MB of crops per video)
    # would grow with the data set; feeding jobs in blocks bounds it.
    with parallel_backend(options) as workers, joblib.Parallel(n_jobs=workers, return_as="generator") as parallel:
        block = VIDEOS_PER_BLOCK_PER_WORKER * workers
        for start in range(0, len(jobs), block):
            yield from parallel(
                joblib.delayed(prepare_video)(job, options, embed_here) for job in jobs[start : start + block]
            )


def featurize_jobs(
    jobs: list[VideoJob], options: ExtractOptions, stop: StopRequest | None = None
) -> Iterator[VideoRecord | Failure]:
    """Features of each job's video, in job order (failures as soon as known).

    When ``stop`` is requested, no further video is started: the videos already
    decoded are embedded and yielded, then the generator ends, so a Ctrl-C keeps
    every video whose work is done. Keeps ``stop``'s count of those up to date.
    """
    stop = stop or StopRequest()
    if stop.requested:  # before any video started
        return
    batcher = CropBatcher(options)
    remaining = len(jobs)
    stop.waiting, stop.awaiting = batcher.videos, remaining > 0
    results = _results(jobs, options, embeds_in_workers(options))
    try:
        for result in results:
            remaining -= 1
            stop.awaiting = False
            if isinstance(result, PreparedVideo):
                yield from batcher.add(result)
            else:
                yield result
            if stop.requested:
                break
            stop.awaiting = remaining > 0
    finally:
        close_quietly(results)
    yield from batcher.finish()


def featurize(paths: Iterable[Path], options: ExtractOptions, split: str = "") -> Iterator[VideoRecord | Failure]:
    """Features of video files without any cache (what ``train predict`` uses).

    Unlike a cache, which keeps one record per video_id, every input path gets its
    own result: copies and same-named files in other folders are all featurised.
    """
    videos, failures = discover([str(path) for path in paths])
    jobs = [make_job(path, split) for path, _ in videos]
    yield from failures + [job for job in jobs if isinstance(job, Failure)]
    yield from featurize_jobs([job for job in jobs if isinstance(job, VideoJob)], options)
