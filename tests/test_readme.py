"""README's module map lists exactly the modules of the package."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_layout_lists_every_module():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed = set()
    for line in block.splitlines():
        m = re.match(r"\s+(?:the codec core|the lab)?\s*([a-z_]+(?:, [a-z_]+)?)\s{2,}\S", line)
        if m and not line.lstrip().startswith("weights/"):
            listed.update(n.strip() for n in m.group(1).split(","))
    modules = {p.stem for p in (ROOT / "labkit").glob("*.py")} - {"__init__", "__main__"}
    assert listed == modules, f"missing from README: {sorted(modules - listed)}; not in the tree: {sorted(listed - modules)}"
