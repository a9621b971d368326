"""Whole-photo helpers: the colour error and the tables/figures built from photo records."""
import numpy as np

from labkit import photos


def test_delta_e_is_zero_for_the_same_image_and_grows_with_a_cast():
    img = photos.photo("astronaut.png")[:64, :64]
    assert photos.delta_e76(img, img) == 0.0
    red = img.copy()
    red[..., 0] = np.minimum(255, red[..., 0].astype(int) + 40)
    assert photos.delta_e76(img, red) > 5.0
    assert photos.photo("camera.png").shape[2] == 3  # grey photo expanded to RGB


def test_grid_columns_and_colour_table():
    recs = [dict(codec=m, b=b, photo=p, ssim=0.5, bpp=0.1, psnr=20.0, delta_e=float(b), recon=None)
            for m in ("a", "b") for b in (2, 3) for p in ("x.png", "y.png")]
    cols = photos.grid_columns(recs, ["a", "b"], 2)
    assert list(cols) == ["a", "b"] and len(cols["a"]) == 2 and "ΔE 2.0" in cols["a"][0]["caption"]
    table = photos.colour_table(recs, ["a"], ["x.png", "y.png"])
    assert table == [{"model": "a", "b": 2, "x": 2.0, "y": 2.0}, {"model": "a", "b": 3, "x": 3.0, "y": 3.0}]


def test_row_labels_say_what_the_models_shown_trained_on():
    from labkit import photos

    assert photos.row_label("astronaut.png") == "astronaut\n(in training)"      # the shipped weights saw it
    assert photos.row_label("coffee.png") == "coffee\n(a test photo)"
    assert photos.row_label("camera.png") == "camera\n(not in training)"
    assert photos.row_label("astronaut.png", trained_on_default=False) == "astronaut\n(not in training)"
