"""labkit.rd: BD values and the course criteria on synthetic curves."""
import math

import numpy as np
import pytest

from labkit import rd

R = np.array([0.2, 0.4, 0.8, 1.6, 3.2])
P = np.array([28.0, 31.0, 34.0, 37.0, 40.0])
S = np.array([0.60, 0.70, 0.80, 0.88, 0.93])


@pytest.mark.parametrize("method", ["akima", "pchip"])
def test_bd_rate_self_and_scaled(method):
    assert rd.bd_rate(R, P, R, P, method) == pytest.approx(0, abs=1e-9)
    assert rd.bd_rate(R, P, R * 0.9, P, method) == pytest.approx(-10, abs=1e-6)
    # unsorted input gives the same
    assert rd.bd_rate(R[::-1], P[::-1], R * 0.9, P, method) == pytest.approx(-10, abs=1e-6)
    assert rd.bd_quality(R, P, R, P + 1, method) == pytest.approx(1, abs=1e-9)


def test_bd_nan_with_reason():
    with pytest.warns(rd.RDWarning, match=">= 4"):
        assert math.isnan(rd.bd_rate(R[:3], P[:3], R, P))
    with pytest.warns(rd.RDWarning, match="do not overlap"):
        assert math.isnan(rd.bd_rate(R, P, R, P + 50))


def test_clean_curve_drops_dominated():
    c = rd.clean_curve([(1.0, 0.8), (0.5, 0.7), (0.7, 0.65), (2.0, float("nan"))])
    assert c.tolist() == [[0.5, 0.7], [1.0, 0.8]]


def test_deltas_and_interpolation_is_consistent():
    a, b = np.c_[R, S], np.c_[R, S - 0.02]
    assert rd.delta_quality_at_rate(a, b, 0.5) == pytest.approx(0.02)
    assert rd.delta_rate_at_quality(np.c_[R * 0.8, S], a, 0.75) == pytest.approx(-20)
    assert rd.rate_at_quality(a, rd.quality_at_rate(a, 1.1)) == pytest.approx(1.1)
    assert math.isnan(rd.quality_at_rate(a, 5.0))


def test_course_criteria():
    anchor = np.c_[R, S]
    res = rd.course_criteria(np.c_[R * 0.9, S], anchor)        # 10% fewer bits, same SSIM
    assert res["dbits_pct_at_equal_ssim"] == pytest.approx([-10] * 5)
    assert all(res["bits_saving_ok"]) and all(res["holds"])
    assert res["in_anchor_rate_range"][0] is False and math.isnan(res["dssim_at_equal_bpp"][0])
    res = rd.course_criteria(np.c_[R, S + 0.06], anchor)        # +0.06 SSIM at equal bpp
    assert all(res["ssim_gain_ok"]) and all(res["holds"])
    assert res["in_anchor_quality_range"][-1] is False
    res = rd.course_criteria(np.c_[R, S + 0.001], anchor)       # too small a gain
    assert not any(res["ssim_gain_ok"]) and not any(res["holds"])


def test_bd_detail_reports_overlap_and_leaves_out_narrow_ones():
    d = rd.bd_detail(R, S, R * 0.9, S)
    assert d["reason"] is None and d["value"] == pytest.approx(-10, abs=1e-6)
    assert d["overlap"] == pytest.approx([0.60, 0.93]) and d["overlap_fraction"] == pytest.approx(1.0)
    # test curve shifted up so that only [0.88, 0.93] of 0.60..1.21 overlaps: 8 % < MIN_BD_OVERLAP (10 %)
    narrow = rd.bd_detail(R, S, R, S + 0.28)
    assert narrow["overlap"] == pytest.approx([0.88, 0.93])
    assert narrow["overlap_fraction"] == pytest.approx(0.05 / 0.61)
    assert math.isnan(narrow["value"]) and "too narrow" in narrow["reason"]
    with pytest.warns(rd.RDWarning, match="too narrow"):
        assert math.isnan(rd.bd_rate(R, S, R, S + 0.28))
    assert math.isfinite(rd.bd_rate(R, S, R, S + 0.28, min_overlap=0.0))
    q = rd.bd_detail(R, P, R * 2, P, kind="quality")   # log-rate overlap: 0.4..3.2 of 0.2..6.4
    assert q["overlap"] == pytest.approx([0.4, 3.2]) and q["overlap_fraction"] == pytest.approx(3 / 5)

