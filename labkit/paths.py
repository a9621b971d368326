"""Where labkit keeps things (one place, importable without torch or the compiled coder)."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
#: Shipped checkpoints: weights/<name>/{model.pt, config.json, history.json}.
WEIGHTS_DIR = PACKAGE_DIR / "weights"
