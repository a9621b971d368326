"""README claims that a file can check: the module map lists exactly the package's modules, and the course table is its result file."""
import json
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


def test_course_table_matches_its_result_file():
    """The course128 table (ResAE / AE2 / matched JPEG per b) is the result file's curves, rounded."""
    curves = json.loads((ROOT / "benchmarks/results/bench_rd_course128.json").read_text())["curves"]
    text = (ROOT / "README.md").read_text()
    section = text.split("**On the course's own images.**", 1)[1].split("More figures:", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d \|", line)]
    expected = []
    for i, b in enumerate(curves["resae"]["b"]):
        cells = [f"{curves[m]['bpp'][i]:.3f} / {curves[m]['ssim'][i]:.3f}" for m in ("resae", "ae2", "jpeg-matched")]
        expected.append(f"| {b} | " + " | ".join(cells) + " |")
    assert rows == expected
