"""``python -m sciimg`` runs the command line."""

from sciimg.cli import app

app(prog_name="sciimg")
