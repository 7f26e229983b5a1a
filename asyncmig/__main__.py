"""``python -m asyncmig``: the same as the ``asyncmig`` console script."""

from asyncmig.cli import main

raise SystemExit(main())
