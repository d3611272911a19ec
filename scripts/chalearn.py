"""``make chalearn``: the ChaLearn protocol (``train.protocol``) from the command line."""

from __future__ import annotations

import typer

from common.command import reports_errors, with_flags
from train.protocol import ProtocolOptions, run_protocol

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120})


@app.command()
@reports_errors
@with_flags(ProtocolOptions)
def chalearn(
    data: list[str] = typer.Argument(
        ..., metavar="DATA...", help="ChaLearn's folder holding train/, validation/, test/ (or SPLIT=PATH entries)."
    ),
    labels: list[str] = typer.Option(..., metavar="FILE", help="Annotation file: ChaLearn .pkl or CSV (repeatable)."),
    groups: list[str] = typer.Option(
        ..., metavar="FILE", help="Groups file: ChaLearn's eth_gender_annotations_*.csv or a video_id CSV (repeatable)."
    ),
    options: ProtocolOptions = None,
) -> None:
    """Extract, train every head with every seed, ensemble the best, compare on test and audit per group.

    Writes REPORT/report.md beside compare.json and audit.json. Run it again after a failure or a kill: finished
    steps are skipped. A bad option or groups file is refused before any work (exit 2); a failed step exits 1.
    """
    run_protocol(options, echo=typer.echo)


if __name__ == "__main__":
    app()
