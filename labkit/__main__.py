"""``python -m labkit``: the same command line as the ``labkit`` console script (:mod:`labkit.cli`)."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line itself is being imported
    print("labkit: interrupted", file=sys.stderr)
    sys.excepthook = lambda *args: None  # end by SIGINT, as Python does, without a traceback
    raise

raise SystemExit(main())
