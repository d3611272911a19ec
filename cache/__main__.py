from cache.cli import app

app(prog_name="python -m cache")
