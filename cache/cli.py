"""``python -m cache info|verify|export|labels|show|remove|prune``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cache.command import PlainHelp, reports_errors
from cache.errors import CacheError, ExitCode
from cache.labels import attach_labels
from cache.lock import lock_holder
from cache.manifest import plural
from cache.remove import prune_missing, remove_videos
from cache.report import describe, export_csv
from cache.verify import repair, verify

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Inspect, check, label and prune a traitcache feature cache.",
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)


def cache_argument():
    """The CACHE argument every command takes."""
    return typer.Argument(..., metavar="CACHE", help="Cache folder.", show_default=False)


@app.command(cls=PlainHelp)
@reports_errors
def info(
    cache_dir: Path = cache_argument(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Videos per split, dimensions, face-found rate, config and failures; says when a run is writing."""
    try:
        summary = describe(cache_dir)
    except CacheError as error:
        holder = lock_holder(cache_dir) if cache_dir.is_dir() else None
        if holder:
            raise CacheError(
                f"{error} (a run, {holder}, is creating it now: try again when it has written a shard)"
            ) from error
        raise
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
    for index, found in enumerate(summary["feature_sets"]):
        where = "in the shards" if found["bytes"] is None else f"{found['bytes']:,} bytes"
        typer.echo(
            f"{'sets' if index == 0 else '':<12}{found['name']:<24}{found['dimension']:>6}-d  "
            f"{found['videos']}/{summary['videos']} videos  {where}  identity {found['identity']}"
        )
    typer.echo(f"config      {summary['config_hash']}  weights={summary['config'].get('weights', '?')}")
    if summary["config"].get("weights") == "none":
        typer.echo(
            "warning     embeddings come from random ResNet50 weights (--weights none): fine for tests, meaningless for research"
        )
    typer.echo("            " + json.dumps(summary["config"], sort_keys=True))
    typer.echo(f"failures    {len(summary['failures'])}")
    for failure in summary["failures"]:
        typer.echo(f"  {failure['path']}: {failure['reason']}")


@app.command("verify", cls=PlainHelp)
@reports_errors
def verify_command(
    cache_dir: Path = cache_argument(),
    fix: bool = typer.Option(
        False,
        "--repair",
        help="Delete damaged shards and move shards of another config to CACHE/foreign/, so the next `make features` redoes their videos.",
    ),
) -> None:
    """Check every shard against the index (digest, size, HDF5 checksums, config hash); exit 1 if anything is wrong."""
    problems = verify(cache_dir)
    for problem in problems:
        typer.echo(f"{problem.path}: {problem.reason}", err=True)
    if not problems:
        typer.echo(f"{cache_dir}: ok")
        return
    if fix:
        repaired = repair(cache_dir, problems)
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
    raise typer.Exit(ExitCode.PARTIAL)


@app.command(cls=PlainHelp)
@reports_errors
def export(
    cache_dir: Path = cache_argument(),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="CSV file to write."),
) -> None:
    """One CSV row per video: video_id, split, labels, fraction of frames with a face."""
    rows = export_csv(cache_dir, out)
    typer.echo(f"wrote {rows} rows to {out}")


@app.command(cls=PlainHelp)
@reports_errors
def labels(
    cache_dir: Path = cache_argument(),
    files: list[Path] = typer.Argument(
        ..., metavar="FILE...", help="ChaLearn .pkl or CSV label files.", show_default=False
    ),
    replace: bool = typer.Option(False, "--replace", help="Drop the labels already attached instead of merging."),
) -> None:
    """Attach or replace labels without decoding any video."""
    attached = attach_labels(cache_dir, files, replace=replace)
    # Labels of videos not (yet) cached are kept, but say so: a count far from the
    # cache's size usually means the wrong label file.
    outside = attached.labelled - attached.matched
    typer.echo(
        f"{attached.path}: labels for {plural(attached.labelled, 'video')} {'replaced' if replace else 'merged'}; "
        f"{attached.matched} of the {plural(attached.cached, 'cached video')} {'is' if attached.matched == 1 else 'are'} among them, "
        f"{plural(outside, 'labelled id')} {'is' if outside == 1 else 'are'} not in the cache"
    )
    if attached.hint:
        typer.echo(f"warning: no cached video has labels from these files; {attached.hint}", err=True)


@app.command(cls=PlainHelp)
@reports_errors
def show(
    cache_dir: Path = cache_argument(),
    video_ids: list[str] = typer.Argument(
        ...,
        metavar="VIDEO_ID...",
        help="Videos to show, a row each (`python -m cache export` lists the ids).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="Image file to write, e.g. sheet.png."),
    frames: bool = typer.Option(
        False,
        "--frames",
        help="Also draw each detected face box on the full frame, decoded again from the source video.",
    ),
) -> None:
    """A contact sheet of face crops: each tile shows its time, framed green where the face was detected in that
    frame, orange where it was borrowed from the nearest frame."""
    from cache.show import contact_sheet  # matplotlib loads only for this command

    warnings = contact_sheet(cache_dir, video_ids, out, with_frames=frames)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {out}: {plural(len(video_ids), 'video')}")


@app.command(cls=PlainHelp)
@reports_errors
def remove(
    cache_dir: Path = cache_argument(),
    video_ids: list[str] = typer.Argument(
        ..., metavar="VIDEO_ID...", help="Videos to drop (`python -m cache export` lists the ids).", show_default=False
    ),
) -> None:
    """Drop videos from the cache (shards are not rewritten: the index forgets them); an extraction that finds
    their files again brings them back."""
    left = remove_videos(cache_dir, video_ids)
    typer.echo(f"{cache_dir}: removed {plural(len(set(video_ids)), 'video')}; {plural(left, 'video')} left")


@app.command(cls=PlainHelp)
@reports_errors
def prune(
    cache_dir: Path = cache_argument(),
    missing: bool = typer.Option(
        False, "--missing", help="Drop the videos whose source file is gone (ghosts of renamed or deleted files)."
    ),
) -> None:
    """Drop the videos whose source file is gone, such as the old name of a renamed file."""
    gone = prune_missing(cache_dir, missing)
    if not gone:
        typer.echo(f"{cache_dir}: nothing to prune: the source file of every cached video exists")
        return
    for video in gone:
        typer.echo(f"removed {video.video_id} ({video.split}): {video.source} is gone")
    typer.echo(f"{cache_dir}: removed {plural(len(gone), 'video')} whose source file is gone")
