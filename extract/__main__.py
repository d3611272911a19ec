import sys

from extract.cli import ADD_COMMAND, add_app, app

# `python -m extract add CACHE ...` adds feature sets; anything else is an extraction of
# its inputs (a folder literally named "add" is passed as ./add).
if sys.argv[1:2] == [ADD_COMMAND]:
    add_app(args=sys.argv[2:], prog_name=f"python -m extract {ADD_COMMAND}")
else:
    app(prog_name="python -m extract")
