"""``python -m labkit``: see :mod:`labkit.cli`."""
from .cli import main

raise SystemExit(main())
