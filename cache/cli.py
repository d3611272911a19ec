"""``python -m cache info|verify|export|labels|show``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cache.errors import CacheError, LabelError
from cache.labels import load_label_file, merge_tables, write_labels
from cache.lock import CacheLock, lock_holder
from cache.manifest import Index, check_cache_folder, plural
from cache.report import describe, export_csv
from cache.schema import CONFIG_FILE, INDEX_FILE
from cache.verify import repair, verify

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Inspect, check and label a traitcache feature cache."
)

EXIT_DAMAGED = 1  # verify found problems
EXIT_USAGE = 2  # not a cache, bad label file


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(EXIT_USAGE)


@app.command()
def info(
    cache_dir: Path = typer.Argument(..., help="Cache folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Videos per split, dimensions, face-found rate, config and failures; says when a run is writing."""
    try:
        summary = describe(cache_dir)
    except CacheError as error:
        holder = lock_holder(cache_dir) if cache_dir.is_dir() else None
        _fail(
            CacheError(f"{error} (a run, {holder}, is creating it now: try again when it has written a shard)")
            if holder
            else error
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    typer.echo(f"cache       {cache_dir}")
    if summary["run_in_progress"]:
        typer.echo(
            f"run         in progress ({summary['run_in_progress']}): the counts below are the videos finished so far"
        )
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items()) or "none"
    typer.echo(
        f"videos      {summary['videos']} ({splits}) in {plural(summary['shards'], 'shard')}, {summary['labelled']} labelled"
    )
    typer.echo(
        f"frames      T={summary['frames']} x k={summary['frames_per_segment']}, embeddings {summary['embedding_dim']}-d, audio {summary['audio_dim']}-d"
    )
    rate = summary["face_found_rate"]
    if rate is None:
        typer.echo("faces       -")
    else:
        typer.echo(f"faces       found in {rate:.1%} of frames; look at them with")
        typer.echo(f"            python -m cache show {cache_dir} VIDEO_ID... --out sheet.png")
    typer.echo(f"config      {summary['config_hash']}  weights={summary['config'].get('weights', '?')}")
    if summary["config"].get("weights") == "none":
        typer.echo(
            "warning     embeddings come from random ResNet50 weights (--weights none): fine for tests, meaningless for research"
        )
    typer.echo("            " + json.dumps(summary["config"], sort_keys=True))
    typer.echo(f"failures    {len(summary['failures'])}")
    for failure in summary["failures"]:
        typer.echo(f"  {failure['path']}: {failure['reason']}")


@app.command("verify")
def verify_command(
    cache_dir: Path = typer.Argument(..., help="Cache folder."),
    fix: bool = typer.Option(
        False,
        "--repair",
        help="Delete damaged shards and move shards of another config to CACHE/foreign/, so the next `make features` redoes their videos.",
    ),
) -> None:
    """Check every shard against the index (digest, size, HDF5 checksums, config hash); exit 1 if anything is wrong."""
    try:
        check_cache_folder(cache_dir)
        if not (cache_dir / INDEX_FILE).exists() and not (cache_dir / CONFIG_FILE).exists():
            raise CacheError(f"{cache_dir}: not a cache (no {INDEX_FILE} or {CONFIG_FILE})")
        # A run's own temporary and not-yet-indexed files would read as damage.
        holder = lock_holder(cache_dir)
        if holder:
            raise CacheError(
                f"{cache_dir}: a run ({holder}) is writing to this cache; verify it when the run has ended"
            )
        problems = verify(cache_dir)
    except CacheError as error:
        _fail(error)
    for problem in problems:
        typer.echo(f"{problem.path}: {problem.reason}", err=True)
    if not problems:
        typer.echo(f"{cache_dir}: ok")
        return
    if fix:
        try:
            repaired = repair(cache_dir, problems)
        except CacheError as error:
            _fail(error)
        for path in repaired.moved:
            typer.echo(f"moved foreign shard to {path}")
        dropped = plural(repaired.dropped_videos, "video")
        typer.echo(
            f"{cache_dir}: repaired {plural(len(problems), 'problem')}, {dropped} to re-extract: run the same `make features` again"
        )
        return
    typer.echo(
        f"{cache_dir}: {plural(len(problems), 'problem')}; run `python -m cache verify {cache_dir} --repair`, then `make features` to re-extract them",
        err=True,
    )
    raise typer.Exit(EXIT_DAMAGED)


@app.command()
def export(
    cache_dir: Path = typer.Argument(..., help="Cache folder."),
    out: Path = typer.Option(..., "--out", help="CSV file to write."),
) -> None:
    """One CSV row per video: video_id, split, labels, fraction of frames with a face."""
    try:
        rows = export_csv(cache_dir, out)
    except CacheError as error:
        _fail(error)
    except OSError as error:
        _fail(CacheError(f"{out}: cannot write ({error.strerror})"))
    typer.echo(f"wrote {rows} rows to {out}")


@app.command()
def labels(
    cache_dir: Path = typer.Argument(..., help="Cache folder."),
    files: list[Path] = typer.Argument(..., help="ChaLearn .pkl or CSV label files."),
    replace: bool = typer.Option(False, "--replace", help="Drop the labels already attached instead of merging."),
) -> None:
    """Attach or replace labels without decoding any video."""
    try:
        check_cache_folder(cache_dir)
        if not (cache_dir / CONFIG_FILE).exists():
            raise CacheError(f"{cache_dir}: not a cache (no {CONFIG_FILE})")
        table = merge_tables([load_label_file(path) for path in files])
        # An extraction writes labels too; the lock keeps the two from interleaving.
        with CacheLock(cache_dir):
            path = write_labels(cache_dir, table, replace=replace)
        cached = {entry.video_ids[row] for entry, row in Index.load(cache_dir).live()}
    except (CacheError, LabelError) as error:
        _fail(error)
    except OSError as error:
        _fail(CacheError(f"{cache_dir}: cannot write labels ({error.strerror})"))
    # Labels of videos not (yet) cached are kept for a later extraction, but say so:
    # a count far from the cache's size usually means the wrong label file.
    matched = len(cached.intersection(table))
    outside = len(table) - matched
    typer.echo(
        f"{path}: labels for {plural(len(table), 'video')} {'replaced' if replace else 'merged'}; "
        f"{matched} of the {plural(len(cached), 'cached video')} {'is' if matched == 1 else 'are'} among them, "
        f"{plural(outside, 'labelled id')} {'is' if outside == 1 else 'are'} not in the cache"
    )


@app.command()
def show(
    cache_dir: Path = typer.Argument(..., help="Cache folder."),
    video_ids: list[str] = typer.Argument(
        ..., metavar="VIDEO_ID", help="Videos to show, a row each (`python -m cache export` lists the ids)."
    ),
    out: Path = typer.Option(..., "--out", help="Image file to write, e.g. sheet.png."),
    frames: bool = typer.Option(
        False,
        "--frames",
        help="Also draw each detected face box on the full frame, decoded again from the source video.",
    ),
) -> None:
    """A contact sheet of face crops: each tile shows its time, framed green where the face was detected in that
    frame, orange where it was borrowed from the nearest frame."""
    from cache.show import contact_sheet  # matplotlib loads only for this command

    try:
        warnings = contact_sheet(cache_dir, video_ids, out, with_frames=frames)
    except CacheError as error:
        _fail(error)
    except OSError as error:
        _fail(CacheError(f"{out}: cannot write ({error.strerror})"))
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {out}: {plural(len(video_ids), 'video')}")
