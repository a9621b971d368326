"""README claims that a file can check: the module map, the course table, the generated results block and the prose around it, the decoder-speed claims and the Python example."""
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


def _readme_words() -> str:
    """README.md with every run of whitespace as one space (prose wraps anywhere)."""
    return " ".join((ROOT / "README.md").read_text().split())


def test_results_block_is_generated_from_the_committed_metrics():
    """The block between the results markers is what `make figures` writes from figures/metrics.json."""
    from labkit import report

    text = (ROOT / "README.md").read_text()
    metrics = json.loads((ROOT / "figures" / "metrics.json").read_text())
    assert report.README_START in text and report.update_readme(text, metrics["evaluate"]) == text


def test_results_prose_quotes_the_committed_metrics():
    """The hand-written sentences under the results block read their numbers from metrics.json."""
    metrics = json.loads((ROOT / "figures" / "metrics.json").read_text())["evaluate"]
    head = metrics["summary"]["headline"]
    bd = {(r["test"], r["anchor"]): r for r in metrics["bd_rate"]}
    b1, b2, b3, floor = head["b1"], head["b2"], head["b3"], head["jpeg_floor"]

    def pct(v: float) -> str:
        return f"{v:+.0f} %".replace("-", "−")

    quotes = [
        f"SSIM {b2['resae_ssim']:.3f} against {b2['jpeg_ssim']:.3f} with JPEG at {b2['jpeg_bits_ratio']:.1f}× ResAE's bits, "
        f"and {b3['resae_ssim']:.3f} against {b3['jpeg_ssim']:.3f} at {b3['jpeg_bits_ratio']:.1f}×",
        f"its smallest files (q={floor['quality']}) average {floor['mean_bpp']:.3f} bpp, {b1['jpeg_bits_ratio']:.1f}× ResAE's",
        f"it reaches SSIM {b1['jpeg_ssim']:.3f} against ResAE's {b1['resae_ssim']:.3f}",
        f"ahead of optimized JPEG and JPEG 2000 ({pct(bd['resae', 'jpeg-opt']['bd_rate_ssim_pct'])} and "
        f"{pct(bd['resae', 'jpeg2000']['bd_rate_ssim_pct'])})",
        f"their BD-rates are {pct(bd['resae', 'webp']['bd_rate_ssim_pct'])} and {pct(bd['resae', 'avif']['bd_rate_ssim_pct'])}",
        "where the curves overlap, " + " and ".join(
            f"{bd['resae', a]['ssim_overlap'][0]:.3f}–{bd['resae', a]['ssim_overlap'][1]:.3f}" for a in ("webp", "avif")),
        f"than AE2 (BD-rate {bd['resae', 'ae2']['bd_rate_psnr_pct']:+.1f} %) and than optimized JPEG "
        f"({bd['resae', 'jpeg-opt']['bd_rate_psnr_pct']:+.1f} %)",
    ]
    words = _readme_words()
    missing = [q for q in quotes if q not in words]
    assert not missing, f"README prose does not quote metrics.json: {missing}"


def test_decoder_speed_claims_quote_their_benchmark():
    net = json.loads((ROOT / "benchmarks/results/bench_codec_resae-rd-fast.json").read_text())["networks"]
    words = _readme_words()
    assert f"takes **{net['decoder_over_encoder']:.2f}× the encoder's time per pixel**" in words
    assert (f"decoder does {net['decoder_over_encoder_macs']:.2f}× its encoder's work and takes "
            f"{net['decoder_over_encoder']:.2f}× its time") in words


def test_python_example_runs():
    """The README's Python example runs as written and round-trips an image."""
    text = (ROOT / "README.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["decoded"].shape == scope["image"].shape and isinstance(scope["data"], bytes)
