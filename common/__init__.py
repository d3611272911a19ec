"""What every stage shares: the error family, option fields, command-line flags, the quiet start-up and atomic files.

Needs only the standard library, click and typer; never imports TensorFlow at import time.
"""
