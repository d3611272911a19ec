"""``python -m extract``, with TensorFlow's start-up notices filtered from stderr (see cache/stderr_filter.py)."""

from cache.stderr_filter import quiet_startup

quiet_startup()  # before the CLI is imported, so that nothing has imported TensorFlow yet

from extract.cli import app  # noqa: E402

app(prog_name="python -m extract")
