"""``python -m rhfs`` is the ``rhfs`` command."""

from rhfs.cli import main

raise SystemExit(main())
