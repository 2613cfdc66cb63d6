"""Command-line tools of the project, run from the repository root as ``python -m scripts.<name>``."""
