"""labkit.report and labkit.evaluate.mean_curve on crafted records and curves."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labkit import rd, report
from labkit.evaluate import mean_curve

# an anchor indexed by b whose range ends below the test model's b=3 point on both axes
ANCHOR = {"b": [1, 2, 3], "bpp": [0.1, 0.2, 0.3], "ssim": [0.30, 0.40, 0.50], "psnr": [20.0, 22.0, 24.0]}
TEST = {"b": [1, 2, 3], "bpp": [0.15, 0.35, 0.8], "ssim": [0.45, 0.60, 0.90], "psnr": [21.0, 24.0, 28.0]}


def _row(rows, **match):
    hit = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hit) == 1, (match, rows)
    return hit[0]


def test_criteria_primary_reading_at_the_models_point():
    rows = report.criteria({"resae": TEST, "ae2": ANCHOR}, ["ae2"], bits=[1, 2, 3], tests=["resae"])
    r = _row(rows, b=1)                        # (0.15, 0.45) lies inside the anchor's bpp range
    pts = list(zip(ANCHOR["bpp"], ANCHOR["ssim"]))
    assert r["where"] == "at its b point"
    assert r["dssim_at_equal_bpp"] == pytest.approx(0.45 - rd.quality_at_rate(pts, 0.15))
    assert r["holds"] is True and r["ssim_gain_ok"] is True


def test_criteria_fall_back_to_the_anchors_b_point():
    rows = report.criteria({"resae": TEST, "ae2": ANCHOR}, ["ae2"], bits=[3], tests=["resae"])
    r = _row(rows, b=3)                        # (0.8, 0.9): outside the anchor's bpp and SSIM ranges
    test_pts = list(zip(TEST["bpp"], TEST["ssim"]))
    assert r["where"] == "at anchor's b point"
    # the anchor's own b=3 point (0.3, 0.5) read against the test model's curve
    assert r["dssim_at_equal_bpp"] == pytest.approx(rd.quality_at_rate(test_pts, 0.3) - 0.5)
    assert r["dbits_pct_at_equal_ssim"] == pytest.approx(100 * (rd.rate_at_quality(test_pts, 0.5) / 0.3 - 1))
    assert r["dbits_pct_at_equal_ssim"] < -3 and r["holds"] is True
    # an anchor without b (a classic codec's quality sweep) has no b point: nothing can be read
    sweep = {"quality": [10, 20, 30], "bpp": [0.1, 0.2, 0.3], "ssim": [0.30, 0.40, 0.50], "psnr": [20.0, 22.0, 24.0]}
    r = _row(report.criteria({"resae": TEST, "jpeg": sweep}, ["jpeg"], bits=[3], tests=["resae"]), b=3)
    assert r["where"] == "no overlap" and r["holds"] is None
    assert math.isnan(r["dssim_at_equal_bpp"]) and math.isnan(r["dbits_pct_at_equal_ssim"])


def test_criteria_thresholds_come_from_rd(monkeypatch):
    curves = {"resae": TEST, "ae2": ANCHOR}
    assert _row(report.criteria(curves, ["ae2"], bits=[1], tests=["resae"]), b=1)["holds"] is True
    monkeypatch.setattr(rd, "SSIM_GAIN", 0.5)          # a stricter course: the gain no longer suffices
    monkeypatch.setattr(rd, "BITS_SAVING_PCT", 99.0)
    r = _row(report.criteria(curves, ["ae2"], bits=[1], tests=["resae"]), b=1)
    assert r["ssim_gain_ok"] is False and r["holds"] is False
    assert "+0.5 SSIM" in report.criteria_rule() and "99 %" in report.criteria_rule()


def test_criteria_default_tests_are_the_proposals():
    curves = {"resae": TEST, "resae-rd": TEST, "ae2": ANCHOR, "jpeg-matched": ANCHOR}
    rows = report.criteria(curves, ["ae2"], bits=[1])
    assert sorted(r["test"] for r in rows) == ["resae", "resae-rd"]


def test_bd_rates_state_the_overlap_and_leave_out_slivers():
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    test = {"b": [1, 2, 3, 4, 5], "bpp": list(r), "ssim": [0.5, 0.6, 0.7, 0.8, 0.85], "psnr": [20, 22, 24, 26, 27]}
    same_quality = {"quality": [1, 2, 3, 4, 5], "bpp": list(2 * r), "ssim": test["ssim"], "psnr": test["psnr"]}
    sliver = {"quality": [1, 2, 3, 4, 5], "bpp": list(r), "ssim": [0.84, 0.9, 0.93, 0.95, 0.97],
              "psnr": [40, 42, 44, 46, 48]}
    rows = report.bd_rates({"resae": test, "jpeg": same_quality, "webp": sliver})
    j, w = _row(rows, anchor="jpeg"), _row(rows, anchor="webp")
    assert j["bd_rate_ssim_pct"] == pytest.approx(-50, abs=1e-6) and j["ssim_left_out"] is None
    assert j["ssim_overlap"] == pytest.approx([0.5, 0.85]) and j["ssim_overlap_fraction"] == pytest.approx(1.0)
    assert w["bd_rate_ssim_pct"] is None and "too narrow" in w["ssim_left_out"]
    assert w["ssim_overlap"] == pytest.approx([0.84, 0.85])
    assert w["bd_rate_psnr_pct"] is None and w["psnr_overlap"] is None and "no overlap" in w["psnr_left_out"]
    md = report.bd_markdown(rows)
    assert "overlap too narrow" in md and "0.5–0.85" in md


def test_mean_curve_caps_infinite_psnr_at_100_db():
    recs = [dict(codec="x", b=1, bpp=0.5, psnr=math.inf, ssim=1.0), dict(codec="x", b=1, bpp=1.5, psnr=30.0, ssim=0.5),
            dict(codec="x", b=2, bpp=2.0, psnr=40.0, ssim=0.9), dict(codec="y", b=1, bpp=9.0, psnr=1.0, ssim=0.1)]
    c = mean_curve(recs, "x", by="b")
    assert c == {"b": [1, 2], "bpp": [1.0, 2.0], "psnr": [65.0, 40.0], "ssim": [0.75, 0.9]}


def test_rounded_keeps_six_significant_digits_and_arrays():
    arr = np.arange(4, dtype=np.uint8)
    out = report.rounded({"a": [0.123456789, np.float32(25.123456789)], "r": arr, "inf": math.inf, "n": 7})
    assert out["a"] == [0.123457, 25.1235] and out["r"] is arr and out["inf"] == math.inf and out["n"] == 7
    assert report.rounded(1234567.8) == 1234570.0


def test_jpeg_floor_and_caption():
    sweeps = [dict(codec="jpeg-opt", quality=q, image=i, bpp=bpp) for q, i, bpp in
              ((1, 0, 0.4), (1, 1, 0.5), (5, 0, 0.6), (5, 1, 0.7))] + [dict(codec="webp", quality=0, image=0, bpp=0.1),
                                                                      dict(codec="jpeg", quality=1, image=0, bpp=0.9)]
    assert report.jpeg_floor(sweeps) == {"codec": "jpeg-opt", "quality": 1, "mean_bpp": pytest.approx(0.45),
                                         "min_bpp": 0.4, "max_bpp": 0.5}
    assert report.jpeg_floor(sweeps, "jpeg")["mean_bpp"] == 0.9
    assert report.jpeg_floor([]) is None
    cap = report.jpeg_caption(dict(ssim=0.6, bpp=0.45, quality=3, target_bpp=0.15, matched_to="resae"))
    assert cap == "SSIM 0.600, 0.450 bpp\nq=3: 3.0× ResAE's bits"


def test_grid_keeps_the_seed_view_and_adds_new_proposals():
    assert report.grid_models(["resae", "ae2", "ae1"]) == ["resae", "ae2"]
    assert report.grid_models(["resae", "ae2", "ae1", "resae-rd"]) == ["resae", "resae-rd", "ae2"]


def test_comparison_figure_has_a_column_per_listed_model():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    learned = [dict(codec=m, b=2, image=i, bpp=0.2, ssim=0.7, recon=images[i]) for m in ("resae", "resae-rd", "ae2", "ae1")
               for i in range(3)]
    matched = [dict(codec="jpeg-matched", b=2, image=i, quality=1, bpp=0.45, target_bpp=0.2, ssim=0.6,
                    matched_to="resae", recon=images[i]) for i in range(3)]
    fig = report.comparison_figure(images, learned, matched, 2, n=2, models=["resae", "ae2", "ae1", "resae-rd"],
                                   floor={"quality": 1, "mean_bpp": 0.45})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["RAW", "ResAE", "ResAE-RD", "AE2", "JPEG at ResAE's bpp"]
    assert "q=1: 2.2× ResAE's bits" in fig.axes[4].get_xlabel()
    assert "smallest files (q=1) average 0.45 bpp" in fig._suptitle.get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_rate_table_scales_the_real_rate_by_bit_shares():
    recs = [dict(codec="resae", b=1, bytes=100, bpp=100 * 8 / 4096, header_bytes=22, ideal_bits=600.0)]
    (row,) = report.rate_table(recs)
    assert row["header_bpp"] == pytest.approx(22 * 8 / 4096)
    assert row["ideal_bpp"] == pytest.approx((600 + 22 * 8) / 4096)
    assert row["coder_overhead_pct"] == pytest.approx(100 * (800 / 776 - 1))


def test_training_summary_says_which_epoch_the_validation_is_from(tmp_path):
    import json

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"param_count": 10, "epochs_completed": 12,
                                                            "final_val_psnr": 20.0, "train": {"b_train": 3}}))
    hist = {"epoch": list(range(1, 13)), "val_psnr": [None] * 9 + [20.0, None, None]}
    (row,) = report.training_summary(["m"], tmp_path, {"m": hist})
    assert row["epochs"] == 12 and row["val_psnr"] == 20.0 and row["val_epoch"] == 10
    (row,) = report.training_summary(["gone"], tmp_path, {})
    assert row["params"] is None and row["val_epoch"] is None


def test_context_savings():
    rows = report.context_savings({2: {"entropy (static, pooled)": 1.0, "coded none": 2.0, "coded neighbor": 1.5}})
    assert rows == [{"b": 2, "none bits/sym": 2.0, "neighbor saves %": 25.0}]


def test_results_block_replaces_only_between_markers():
    metrics = {"summary": {"text": "On 1 test images:"}, "criteria": [], "bd_rate": []}
    readme = f"intro\n{report.README_START}\nstale text\n{report.README_END}\noutro\n"
    new = report.update_readme(readme, metrics)
    assert new.startswith("intro\n") and new.endswith("outro\n") and "stale text" not in new
    assert "On 1 test images:" in new and report.criteria_rule() in new
    assert report.update_readme("no markers", metrics) == "no markers"


def test_summary_quotes_the_records_it_is_given():
    learned = [dict(codec=m, b=1, image=i, bpp=bpp, ssim=0.5, psnr=20.0) for m, bpp in (("resae", 0.1), ("ae2", 0.05))
               for i in range(2)]
    matched = [dict(codec="jpeg-matched", b=1, image=i, bpp=0.4 + 0.1 * i, target_bpp=0.1, ssim=0.6, psnr=22.0,
                    matched_to="resae") for i in range(2)]
    crit = [dict(test="resae", anchor="ae2", b=2, holds=True), dict(test="resae", anchor="ae2", b=3, holds=False)]
    bd = [dict(test="resae", anchor="webp", bd_rate_ssim_pct=None, ssim_overlap=[0.8, 0.81], bd_rate_psnr_pct=12.5,
               psnr_overlap=[20.0, 30.0], ssim_left_out="overlap too narrow: the quality overlap covers 9.5 % of ..."),
          dict(test="resae", anchor="avif", bd_rate_ssim_pct=None, bd_rate_psnr_pct=None, ssim_overlap=None,
               psnr_overlap=None, ssim_left_out="too few points: need >= 4 ...", psnr_left_out="no overlap: ...")]
    s = report.summary({}, learned, matched, crit, bd, n_images=2, floor={"quality": 1, "mean_bpp": 0.45,
                                                                         "min_bpp": 0.4, "max_bpp": 0.5},
                       models=["resae", "ae2", "ae1"])
    assert s["headline"]["b1"]["jpeg_bits_ratio"] == pytest.approx(4.5)     # 0.45 / 0.1, ratio of the means
    text = s["text"]
    assert "ResAE 0.100 bpp, SSIM 0.500, PSNR 20.00 dB" in text and "4.5× ResAE's mean bpp" in text
    assert "holds at b = 2; fails at b = 3" in text
    assert "WebP +12.5% (over PSNR 20.0–30.0)" in text
    assert "left out (a BD-rate needs 4 points per curve and an overlap of at least 10 % of the joint range): " \
           "WebP (overlap too narrow), AVIF (too few points)." in text                 # each with its own reason
    assert "AVIF (no overlap)." in text


def test_at_equal_rate_reads_the_anchor_at_the_test_models_bpp():
    curves = {"rd": {"b": [1, 2, 3], "bpp": [0.1, 0.2, 0.4], "ssim": [0.70, 0.78, 0.80], "psnr": [24.0, 26.0, 27.0]},
              "webp": {"quality": [0, 50, 100], "bpp": [0.15, 0.2, 0.6], "ssim": [0.72, 0.76, 0.9],
                       "psnr": [25.0, 26.5, 31.0]}}
    rows = report.at_equal_rate(curves, "rd", "webp", bits=(1, 2, 3))
    assert [r["b"] for r in rows] == [1, 2, 3]
    assert math.isnan(rows[0]["anchor_ssim"])                       # 0.1 bpp: below WebP's range
    assert rows[1]["anchor_ssim"] == pytest.approx(0.76) and rows[1]["dssim"] == pytest.approx(0.02)
    assert rows[1]["dpsnr"] == pytest.approx(-0.5)
    assert 0.76 < rows[2]["anchor_ssim"] < 0.9 and rows[2]["dpsnr"] < 0
    assert report.at_equal_rate(curves, "rd", "avif") == []


def test_b_labels_leave_out_a_model_that_writes_another_listed_models_symbols():
    curves = {name: {"b": [1, 2], "bpp": [0.1, 0.2], "ssim": [0.5, 0.6]} for name in ("resae", "resae-rd", "resae-rd-fast-v1")}
    labels = report.b_labels(curves, ["resae", "resae-rd", "resae-rd-fast-v1", "ae2"])
    assert set(labels) == {"resae", "resae-rd"} and labels["resae"] == ["b=1", "b=2"]
    # without its source in the plot, the fast model is labelled
    assert set(report.b_labels(curves, ["resae", "resae-rd-fast-v1"])) == {"resae", "resae-rd-fast-v1"}


def test_training_summary_counts_a_decoder_fit_in_steps(tmp_path):
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "config.json").write_text(
        '{"param_count": 5, "steps": 42, "train_seconds": 3.0, "device": "cpu (1 thread)", '
        '"final_val_psnr": 27.0, "decoder_fit": {"source": "resae-rd"}}')
    (row,) = report.training_summary(["fast"], tmp_path, {"fast": {"step": [42], "train_loss": [0.01]}})
    assert row["epochs"] == "decoder fit from resae-rd, 42 steps" and row["val_psnr"] == 27.0
    assert row["b_train"] is None and row["finetune_steps"] is None


def test_training_summary_names_every_stage_of_the_shipped_default_model():
    """Epochs of whole training, two whole-model fine-tunes and a decoder continuation: no stage left out or garbled."""
    from labkit.paths import ROOT

    (row,) = report.training_summary(["resae-rd-fast"], ROOT / "labkit" / "weights", {})
    meta = json.loads((ROOT / "labkit" / "weights" / "resae-rd-fast" / "config.json").read_text())
    assert row["epochs"] == f"{meta['epochs_completed']}, + {meta['decoder_continuation']['steps']} decoder steps"
    assert row["finetune_steps"] == meta["finetune"]["steps"] + meta["previous_finetune"]["steps"]
    assert row["b_train"] == "1..5"


def test_rd_curves_keep_every_b_label_inside_the_axes_and_apart():
    """Each "b=" label takes a free spot: inside its panel (a point at the left edge included), and
    no two labels overlap, even where two models' points nearly coincide (ResAE and AE1 at b=1)."""
    import matplotlib.pyplot as plt
    import matplotlib.text

    from labkit import plots

    curves = {"resae": {"b": [1, 2, 3], "bpp": [0.066, 0.198, 0.36], "ssim": [0.508, 0.729, 0.79]},
              "ae1": {"b": [1, 2, 3], "bpp": [0.064, 0.14, 0.28], "ssim": [0.50, 0.62, 0.70]},
              "ae2": {"b": [1, 2, 3], "bpp": [0.061, 0.158, 0.32], "ssim": [0.24, 0.433, 0.54]},
              "resae-rd": {"b": [1, 2], "bpp": [0.001, 0.4], "ssim": [0.4, 0.7]}}
    fig = plots.rd_curves(curves, "ssim", annotate=report.b_labels(curves, list(curves)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = [t for t in ax.texts if isinstance(t, matplotlib.text.Annotation)]
    assert len(texts) == 11
    inside = ax.get_window_extent(renderer).expanded(1.01, 1.01)
    boxes = [t.get_window_extent(renderer) for t in texts]
    for t, box in zip(texts, boxes):
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), t.get_text()
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_headline_table_quotes_the_headline_in_the_reports_order():
    head = {"n_images": 2,
            "b1": {"resae-rd-fast_bpp": 0.05, "resae-rd-fast_psnr": 24.83, "resae-rd-fast_ssim": 0.7126,
                   "ae2_bpp": 0.061, "ae2_psnr": 18.29, "ae2_ssim": 0.24, "resae_bpp": 0.0662,
                   "resae_psnr": 16.195, "resae_ssim": 0.5084, "jpeg_bpp": 0.454, "jpeg_psnr": 21.83,
                   "jpeg_ssim": 0.622, "jpeg_matched_to": "resae", "jpeg_bits_ratio": 6.9},
            "criterion": {"resae-rd-fast_vs_ae2": {"holds_at": [2, 3], "fails_at": [4], "undefined_at": [5]}},
            "bd_rate_ssim_pct": {"resae-rd-fast": {"webp": -23.74, "resae": -62.45, "jpeg": -80.0}},
            "bd_rate_psnr_pct": {"resae-rd-fast": {"webp": None, "resae": -82.1, "jpeg": -80.0}}}
    text = report.headline_table(head)
    lines = text.splitlines()
    assert lines[0] == "Headline numbers on 2 test images (mean per image):"
    rows = [ln.split() for ln in lines[2:6]]
    assert rows[0] == ["1", "ResAE", "0.066", "16.20", "0.508"]            # the seed's model first
    assert rows[1] == ["ResAE-RD-fast", "0.050", "24.83", "0.713"]
    assert rows[2] == ["AE2", "0.061", "18.29", "0.240"]
    assert rows[3] == ["JPEG", "(6.9x", "ResAE's)", "0.454", "21.83", "0.622"]  # JPEG last, with the bits it needed
    assert "Course criterion, ResAE-RD-fast vs AE2: holds at b = 2, 3; fails at b = 4; cannot be read at b = 5" in text
    assert ("BD-rate of ResAE-RD-fast (negative = fewer bits): vs WebP SSIM -23.7 %, PSNR left out; "
            "vs ResAE SSIM -62.5 %, PSNR -82.1 %") in text
    assert "JPEG SSIM" not in text                                             # only the anchors asked for
    assert report.headline_table({}) == ("Headline numbers (mean per image):\n"
                                         f"  {'b':>2}  {'model':<22}{'bpp':>8}{'PSNR dB':>9}{'SSIM':>8}")


def test_rd_curves_zoom_panel_shows_the_zoomed_models_and_what_competes_there():
    import matplotlib.pyplot as plt
    import matplotlib.text

    from labkit import plots

    curves = {"resae": {"b": [1, 2], "bpp": [0.3, 0.8], "psnr": [20.0, 25.0]},
              "resae-rd": {"b": [1, 2, 3], "bpp": [0.05, 0.1, 0.2], "psnr": [24.0, 26.0, 27.5]},
              "webp": {"quality": [0, 50], "bpp": [0.1, 0.5], "psnr": [27.0, 31.0]}}
    fig = plots.rd_curves(curves, "psnr", annotate=report.b_labels(curves, ["resae", "resae-rd"]),
                          zoom=["resae-rd", "not-there"])
    whole, zoom = fig.axes[:2]
    assert zoom.get_xlim() == pytest.approx((0.0, 0.24))                  # 1.2 x the zoomed model's largest bpp
    low, high = zoom.get_ylim()
    webp_at_edge = 27.0 + (0.24 - 0.1) / 0.4 * 4.0                          # WebP where it leaves the panel
    assert low < 24.0 and webp_at_edge < high < webp_at_edge + 0.5
    def labels(ax):
        return {t.get_text() + ":" + t.get_color() for t in ax.texts if isinstance(t, matplotlib.text.Annotation)}
    rd = plots.style_for("resae-rd")["color"]
    assert labels(zoom) == {f"b={b}:{rd}" for b in (1, 2, 3)}              # b labels of the zoomed model, there
    assert not any(rd in t for t in labels(whole)) and labels(whole)        # and only the others' in the first panel
    assert fig._suptitle.get_text() == "Mean PSNR vs bpp"
    plt.close(fig)
    one = plots.rd_curves(curves, "psnr", zoom=["not-there"])              # nothing to zoom on: one panel, as before
    assert len(one.axes) == 1 and "zoomed to the learned codecs' range" in one.axes[0].get_title()
    plt.close(one)


@pytest.mark.parametrize("rows", [3, 6])
def test_comparison_grid_title_clears_the_column_heads(rows):
    """A two-line title over a grid of 3+ rows (labkit demo: 6) used to be drawn through the column heads."""
    import matplotlib.pyplot as plt

    from labkit import plots

    img = np.zeros((16, 16, 3), np.uint8)
    rec = {"recon": img, "ssim": 0.5, "bpp": 0.1, "caption": "SSIM 0.5\nq=1: 1.0x"}
    fig = plots.comparison_grid([img] * rows, {"resae": [rec] * rows, "jpeg": [rec] * rows},
                                title="labkit demo.  Under each picture: SSIM and real bpp.\nJPEG: the Pillow quality")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    heads = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert heads and title.y0 >= max(h.y1 for h in heads)
    plt.close(fig)


def test_an_anchor_pinned_at_one_point_gives_no_reading_at_those_b():
    """JPEG at matched bpp sits at its smallest file for b = 1..3: the fallback reading at the anchor's b point
    would credit b = 1 with ResAE's result at 0.49 bpp (fourth new-user trial), so those rows stay undefined."""
    test = {"b": [1, 2, 3, 4, 5], "bpp": [0.05, 0.15, 0.3, 0.5, 0.7], "ssim": [0.40, 0.53, 0.59, 0.66, 0.70],
            "psnr": [20.0, 22.0, 24.0, 25.0, 26.0]}
    jpeg = {"b": [1, 2, 3, 4, 5], "bpp": [0.49, 0.49, 0.49, 0.55, 0.75], "ssim": [0.597, 0.597, 0.597, 0.62, 0.68],
            "psnr": [21.0, 21.0, 21.0, 22.0, 24.0]}
    rows = report.criteria({"resae": test, "jpeg-matched": jpeg}, ["jpeg-matched"], bits=[1, 2, 3, 4, 5],
                           tests=["resae"])
    for b in (1, 2, 3):
        r = _row(rows, b=b)
        assert r["holds"] is None and r["where"] == "no overlap (anchor's point is the same at several b)"
    assert _row(rows, b=4)["where"] == "at its b point"


def test_rd_curves_draw_a_lossless_point_and_an_empty_range():
    """PSNR is infinite for a lossless file (a flat tile): the axes skip it instead of raising."""
    import matplotlib.pyplot as plt

    from labkit import plots

    curves = {"resae": {"b": [1, 2], "bpp": [0.2, 0.4], "psnr": [25.0, 27.0]},
              "jpeg": {"quality": [1, 90], "bpp": [0.3, 0.5], "psnr": [24.0, float("inf")]}}
    for kwargs in ({}, {"xlim": (0.0, 0.1)}, {"zoom": ["resae"]}):
        fig = plots.rd_curves(curves, "psnr", annotate=report.b_labels(curves, ["resae"]), **kwargs)
        assert all(np.isfinite(ax.get_ylim()).all() for ax in fig.axes)
        plt.close(fig)


def test_the_matched_comparison_is_with_jpeg_only():
    from labkit import evaluate

    with pytest.raises(ValueError, match="the course's matched comparison is with JPEG; 'webp' is not one of jpeg, jpeg-opt"):
        evaluate.evaluate_matched_jpeg([], [], codec="webp")


def test_histogram_facts_are_computed_from_the_symbols():
    symbols = {1: np.array([0, 0, 0, 1]), 3: np.array([2, 2, 1, 7, 7, 0, 2, 2])}
    text = report.histogram_facts(symbols)
    assert "b=1: 0 (75.0 %); b=3: 2 (50.0 %)" in text
    assert "b=3: 25.000 % (the one below: 0.000 %)" in text


def test_summary_names_where_the_criterion_cannot_be_read():
    crit = [dict(test="resae-rd-fast", anchor=a, b=b, holds=h) for a, b, h in
            (("ae2", 2, True), ("webp", 2, None), ("webp", 4, False), ("avif", 4, False))]
    out = report.summary({}, [], [], crit, [], n_images=1)
    assert ("Course criterion, ResAE-RD-fast vs JPEG and the classic codecs: fails against WebP at b = 4; AVIF at "
            "b = 4; cannot be read (no overlap) against WebP at b = 2.") in out["text"]
    assert out["headline"]["criterion_unread"] == {"resae-rd-fast": {"webp": [2]}}
