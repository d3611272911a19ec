"""``python -m extract INPUT... --cache DIR``: decode and featurise videos once."""

from __future__ import annotations

from pathlib import Path

import typer

from cache.errors import CacheError, LabelError
from cache.stderr_filter import show_startup_messages
from extract.config import ExtractOptions
from extract.embed import RuntimeUnavailableError, WeightsError
from extract.faces import FaceError
from extract.inputs import unused_split_folders
from extract.run import extract_to_cache

EXIT_PARTIAL = 1  # some videos failed; the others are cached
EXIT_USAGE = 2  # nothing was extracted: bad option, label file, weights, locked or mismatched cache
EXIT_INTERRUPTED = 130  # Ctrl-C: finished shards kept, re-run to resume
FAILURES_SHOWN = 5  # failure reasons printed on the terminal; the rest are in failures.csv
DEFAULT_CACHE = Path("features")  # not `cache/`, the name of the Python package beside it

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120})
DEFAULTS = ExtractOptions()


@app.command(help="Extract videos (files or folders; SPLIT=PATH names the split) into an HDF5 feature cache.")
def main(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="[SPLIT=]PATH...",
        help="Video files or folders; SPLIT=PATH sets the split, else the folder's name.",
        show_default=False,
    ),
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache", metavar="FOLDER", help="Cache folder (created if missing)."),
    labels: list[Path] = typer.Option(
        [], "--labels", metavar="FILE", help="ChaLearn annotation .pkl or CSV (video_id + trait columns); repeatable."
    ),
    frames: int = typer.Option(DEFAULTS.frames, "--frames", help="T, equal segments per video."),
    frames_per_segment: int = typer.Option(
        DEFAULTS.frames_per_segment,
        "--frames-per-segment",
        help="k frames stored per segment (training picks one per epoch).",
    ),
    sampling: str = typer.Option(
        DEFAULTS.sampling, "--sampling", help="centre | random (seeded position in each segment)."
    ),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Seed of random sampling and of --weights none."),
    crop_size: int = typer.Option(
        DEFAULTS.crop_size, "--crop-size", help="Side of the square face crop in pixels (32 or more)."
    ),
    face_margin: float = typer.Option(
        DEFAULTS.face_margin, "--face-margin", help="Border around the face box, fraction of its side."
    ),
    detect_height: int = typer.Option(
        DEFAULTS.detect_height, "--detect-height", help="Frame height (pixels) for face detection."
    ),
    min_face: float = typer.Option(
        DEFAULTS.min_face, "--min-face", help="Smallest face searched, as a fraction of the frame height."
    ),
    scale_factor: float = typer.Option(DEFAULTS.scale_factor, "--scale-factor", help="Haar cascade scaleFactor."),
    min_neighbors: int = typer.Option(
        DEFAULTS.min_neighbors, "--min-neighbors", help="Haar cascade minNeighbors, first try."
    ),
    min_neighbors_floor: int = typer.Option(
        DEFAULTS.min_neighbors_floor, "--min-neighbors-floor", help="Lowest minNeighbors tried on a faceless frame."
    ),
    weights: str = typer.Option(
        DEFAULTS.weights,
        "--weights",
        help="imagenet | none (random, for tests) | PATH to ResNet50 include_top=False weights.",
    ),
    runtime: str = typer.Option(
        DEFAULTS.runtime,
        "--runtime",
        help="ResNet50 runtime: auto (keras on a GPU, else openvino if installed) | keras | openvino (float32, same cache) | openvino-bf16 | keras-mixed (faster, a cache config of their own).",
    ),
    audio_rate: int = typer.Option(DEFAULTS.audio_rate, "--audio-rate", help="Hz every sound track is resampled to."),
    audio_window: float = typer.Option(
        DEFAULTS.audio_window, "--audio-window", help="Seconds per short-term audio window."
    ),
    audio_step: float = typer.Option(DEFAULTS.audio_step, "--audio-step", help="Seconds between audio windows."),
    audio_mode: str = typer.Option(
        DEFAULTS.audio_mode,
        "--audio-mode",
        help="mean (of windows per segment) | window (one window per segment, as the original project).",
    ),
    keep_crops: bool = typer.Option(
        DEFAULTS.keep_crops, "--keep-crops/--no-crops", help="Store the face crops in the cache."
    ),
    jobs: int = typer.Option(DEFAULTS.jobs, "--jobs", help="Parallel decoding workers; 0 = all cores."),
    backend: str = typer.Option(DEFAULTS.backend, "--backend", help="loky | dask."),
    scheduler: str = typer.Option(
        DEFAULTS.scheduler, "--scheduler", help="Dask scheduler address; without it a local cluster is started."
    ),
    videos_per_shard: int = typer.Option(
        DEFAULTS.videos_per_shard, "--videos-per-shard", help="Videos per HDF5 shard."
    ),
    batch_size: int = typer.Option(
        DEFAULTS.batch_size, "--batch-size", help="Face crops per ResNet50 batch (gathered across videos)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show TensorFlow's start-up messages (or set TRAITCACHE_VERBOSE=1)."
    ),
) -> None:
    if verbose:
        show_startup_messages()
    try:
        options = ExtractOptions(
            frames=frames,
            frames_per_segment=frames_per_segment,
            sampling=sampling,
            seed=seed,
            crop_size=crop_size,
            face_margin=face_margin,
            detect_height=detect_height,
            min_face=min_face,
            scale_factor=scale_factor,
            min_neighbors=min_neighbors,
            min_neighbors_floor=min_neighbors_floor,
            weights=weights,
            runtime=runtime,
            audio_rate=audio_rate,
            audio_window=audio_window,
            audio_step=audio_step,
            audio_mode=audio_mode,
            keep_crops=keep_crops,
            jobs=jobs,
            backend=backend,
            scheduler=scheduler,
            videos_per_shard=videos_per_shard,
            batch_size=batch_size,
        )
        for warning in unused_split_folders(inputs):
            typer.echo(f"warning: {warning}", err=True)
        summary = extract_to_cache(inputs, cache, labels, options, show_progress=not quiet)
    except (ValueError, CacheError, LabelError, WeightsError, RuntimeUnavailableError, FaceError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from error
    except KeyboardInterrupt as interrupt:
        typer.echo(
            f"stopped at once by a second Ctrl-C: the videos in flight are lost, finished shards are kept in {cache}; run the same command again to resume",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from interrupt
    for failure in summary.failures[:FAILURES_SHOWN]:
        typer.echo(f"failed: {failure.path}: {failure.reason}", err=True)
    if len(summary.failures) > FAILURES_SHOWN:
        typer.echo(f"... and {len(summary.failures) - FAILURES_SHOWN} more in {summary.failures_file}", err=True)
    typer.echo(summary.line())
    if summary.interrupted:
        typer.echo(f"interrupted: finished videos are kept in {cache}; run the same command again to resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failures:
        raise typer.Exit(EXIT_PARTIAL)
