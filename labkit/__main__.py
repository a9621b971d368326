"""``python -m labkit``: the same command line as the ``labkit`` console script (:mod:`labkit.cli`)."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line itself is being imported
    print("labkit: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
