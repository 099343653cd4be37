"""``python -m medimg``: the same command-line interface as the ``medimg`` script."""

from medimg.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
