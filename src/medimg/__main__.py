"""``python -m medimg``: the same command-line interface as the ``medimg`` script."""

from medimg.cli.main import run

if __name__ == "__main__":
    run()
