"""``python -m asyncmig``: the same as the ``asyncmig`` console script."""

from asyncmig.cli import main

if __name__ == "__main__":  # worker processes import this module without running it
    raise SystemExit(main())
