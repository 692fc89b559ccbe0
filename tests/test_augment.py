"""Batched per-sample augmentation: exact identity at strength 0, exact mirror, per-sample draws,
random erasing, shape/dtype/range, and the same on CUDA where there is one."""

from __future__ import annotations

import pytest
import torch

from model.augment import ERASE_AREA, Augmentation, augment
from model.config import Config

NO_GEOMETRY = dict(rotation=0.0, shift=0.0, shear=0.0, zoom=0.0)


def _images(n: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g, dtype=dtype).to(device)


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def test_from_config_scales_every_knob_by_strength():
    cfg = Config(strength=0.5, rotation=20, shift=0.2, shear=8, zoom=0.1, flip=0.5, erasing=0.4)
    assert Augmentation.from_config(cfg) == Augmentation(10, 0.1, 4, 0.05, 0.25, 0.2)


@pytest.mark.parametrize("erasing", [0.0, 1.0])
def test_strength_zero_is_exactly_the_identity(erasing):
    aug = Augmentation.from_config(Config(strength=0.0, erasing=erasing))
    x = _images()
    assert torch.equal(augment(x, aug, _gen()), x)


def test_flip_only_is_an_exact_mirror():
    aug = Augmentation.from_config(Config(strength=1.0, flip=1.0, erasing=0.0, **NO_GEOMETRY))
    x = _images()
    out = augment(x, aug, _gen())
    assert torch.equal(out, x.flip(-1))
    assert not torch.equal(out, x)


def test_flip_is_drawn_per_sample():
    aug = Augmentation(flip=0.5)
    x = _images(64)
    out = augment(x, aug, _gen())
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is exactly one of the two
    assert 10 < sum(mirrored) < 54


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("erasing", [0.0, 1.0])
def test_shape_dtype_and_range_are_kept(dtype, erasing):
    aug = Augmentation.from_config(Config(erasing=erasing))  # the report's augmentation, strength 1
    x = _images(dtype=dtype)
    out = augment(x, aug, _gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.equal(x, _images(dtype=dtype))  # the input batch is left alone


def test_channels_last_input_gives_the_same_result():
    aug = Augmentation.from_config(Config(erasing=0.5))
    x = _images()
    out = augment(x, aug, _gen(3))
    out_cl = augment(x.contiguous(memory_format=torch.channels_last), aug, _gen(3))
    assert torch.allclose(out, out_cl, atol=1e-6)


def test_parameters_differ_per_sample():
    aug = Augmentation.from_config(Config())
    image = _images(1)
    out = augment(image.repeat(32, 1, 1, 1), aug, _gen())
    flat = out.reshape(32, -1)
    assert len(torch.unique(flat, dim=0)) == 32
    # ...and each differs from the image it came from.
    assert all(not torch.equal(o, image[0]) for o in out)


def test_draws_come_from_the_generator():
    aug = Augmentation.from_config(Config(erasing=0.5))
    x = _images()
    assert torch.equal(augment(x, aug, _gen(1)), augment(x, aug, _gen(1)))
    assert not torch.equal(augment(x, aug, _gen(1)), augment(x, aug, _gen(2)))


def test_geometry_moves_pixels_within_the_knobs():
    # A pure shift of up to 10% moves a centred bright square by at most ~3 pixels and keeps it inside.
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = augment(x, Augmentation(shift=0.1), _gen())
    assert not torch.equal(out, x)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = out.sum(dim=(1, 2, 3))
    cy = (out[:, 0] * ys).sum(dim=(1, 2)) / mass
    cx = (out[:, 0] * xs).sum(dim=(1, 2)) / mass
    assert ((cy - 13.5).abs() <= 2.9).all() and ((cx - 13.5).abs() <= 2.9).all()
    assert torch.allclose(mass, torch.full_like(mass, 64.0), rtol=1e-4)


def _check_erased_rectangles(out: torch.Tensor, expect_all: bool) -> int:
    """On all-ones images: the zeros of each image form one axis-aligned rectangle within the
    erasing area range; returns how many images were erased."""
    erased = 0
    for image in out[:, 0]:
        zero = image == 0
        assert ((image == 0) | (image == 1)).all()
        if not zero.any():
            assert not expect_all
            continue
        erased += 1
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all(), "the erased pixels are not one filled rectangle"
        assert zero.sum() == box.numel()
        # A drawn rectangle of h x w pixels (area <= ERASE_AREA[1] of the image, sides >= 2.1) covers at
        # most (h + 1) x (w + 1) pixel centres.
        assert 2 <= len(rows) and 2 <= len(cols)
        assert zero.sum() <= ERASE_AREA[1] * 28 * 28 + len(rows) + len(cols) + 3
    return erased


def test_random_erasing_zeroes_one_rectangle():
    aug = Augmentation.from_config(Config(strength=1.0, flip=0.0, erasing=1.0, **NO_GEOMETRY))
    x = torch.ones(64, 1, 28, 28)
    out = augment(x, aug, _gen())
    assert _check_erased_rectangles(out, expect_all=True) == 64
    areas = (out == 0).sum(dim=(1, 2, 3)).float()
    assert areas.std() > 0  # sizes are drawn per sample


def test_random_erasing_probability_is_per_sample():
    out = augment(torch.ones(64, 1, 28, 28), Augmentation(erasing=0.5), _gen())
    assert 10 < _check_erased_rectangles(out, expect_all=False) < 54


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_on_cuda():
    x = _images(device="cuda")
    full = Augmentation.from_config(Config(erasing=0.5))
    out = augment(x, full, _gen(device="cuda"))
    assert out.is_cuda and out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(augment(x, full, _gen(5, "cuda")), augment(x, full, _gen(5, "cuda")))
    assert len(torch.unique(augment(x[:1].repeat(16, 1, 1, 1), full, _gen(device="cuda")).flatten(1), dim=0)) == 16
    assert torch.equal(augment(x, Augmentation.from_config(Config(strength=0.0)), _gen(device="cuda")), x)
    mirror = Augmentation.from_config(Config(flip=1.0, **NO_GEOMETRY))
    assert torch.equal(augment(x, mirror, _gen(device="cuda")), x.flip(-1))


def test_mirror_folded_into_the_affine_matrix_equals_flip():
    # flip=1e-12 draws the same numbers as flip=1.0 but never mirrors: the same affine transforms.
    geometry = dict(rotation=15.0, shift=0.1, shear=10.0, zoom=0.1)
    x = _images()
    mirrored = augment(x, Augmentation(flip=1.0, **geometry), _gen(4))
    plain = augment(x, Augmentation(flip=1e-12, **geometry), _gen(4))
    assert not torch.allclose(plain, x, atol=1e-3)  # the geometry did something
    assert torch.allclose(mirrored, plain.flip(-1), atol=1e-5)


# --- rotation, shear and zoom measured on synthetic images: size and sign, in degrees and fractions --

N_DRAWS = 64  # samples per measurement: the extremes of a uniform draw come within ~2% of its bounds


def _bar(horizontal: bool, n: int = N_DRAWS) -> torch.Tensor:
    """n copies of a centred bar, 20 x 2 pixels, horizontal or vertical."""
    x = torch.zeros(n, 1, 28, 28)
    if horizontal:
        x[:, :, 13:15, 4:24] = 1.0
    else:
        x[:, :, 4:24, 13:15] = 1.0
    return x


def _moments(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mass, variance along x, variance along y, covariance) of each image, in pixels."""
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    w = out[:, 0]
    mass = w.sum(dim=(1, 2))
    cx, cy = (w * xs).sum(dim=(1, 2)) / mass, (w * ys).sum(dim=(1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    return mass, (w * dx * dx).sum(dim=(1, 2)) / mass, (w * dy * dy).sum(dim=(1, 2)) / mass, (w * dx * dy).sum(dim=(1, 2)) / mass


def _orientation(out: torch.Tensor) -> torch.Tensor:
    """Degrees of each image's long axis from the x axis (image coordinates: y points down)."""
    _, vxx, vyy, vxy = _moments(out)
    return torch.rad2deg(0.5 * torch.atan2(2 * vxy, vxx - vyy))


def _drawn_evenly(measured: torch.Tensor, bound: float, tolerance: float) -> None:
    """`measured` looks like N_DRAWS draws of uniform(-bound, bound): within the bounds, reaching
    close to both, half on each side, with the mean size of such a draw (bound / 2)."""
    assert measured.abs().max() <= bound + tolerance, (measured.abs().max(), bound)
    assert measured.max() >= 0.85 * bound and measured.min() <= -0.85 * bound, (measured.min(), measured.max())
    assert 0.3 < (measured > 0).float().mean() < 0.7
    assert abs(measured.abs().mean() - bound / 2) < 0.15 * bound


@pytest.mark.parametrize("degrees", [10.0, 30.0])
def test_rotation_turns_a_bar_by_up_to_its_degrees_both_ways(degrees):
    out = augment(_bar(horizontal=True), Augmentation(rotation=degrees), _gen())
    _drawn_evenly(_orientation(out), degrees, tolerance=1.0)  # a radians slip would turn by up to 573 or 0.17 deg
    mass = _moments(out)[0]
    assert torch.allclose(mass, torch.full_like(mass, 40.0), rtol=0.02)  # turned, not resized


@pytest.mark.parametrize("degrees", [10.0, 20.0])
def test_shear_tilts_vertical_lines_both_ways_and_leaves_horizontal_ones(degrees):
    aug = Augmentation(shear=degrees)
    upright = _orientation(augment(_bar(horizontal=False), aug, _gen()))  # near +-90
    _drawn_evenly((90.0 - upright.abs()) * torch.sign(upright), degrees, tolerance=1.0)  # signed tilt from vertical
    flat = _orientation(augment(_bar(horizontal=True), aug, _gen()))
    assert flat.abs().max() < 1.0  # x-shear moves rows sideways: a horizontal bar stays horizontal


@pytest.mark.parametrize("zoom", [0.1, 0.2])
def test_zoom_scales_a_square_by_up_to_its_fraction_in_and_out(zoom):
    x = torch.zeros(N_DRAWS, 1, 28, 28)
    x[:, :, 8:20, 8:20] = 1.0  # 12 x 12 pixels, centred
    out = augment(x, Augmentation(zoom=zoom), _gen())
    mass, vxx, vyy, vxy = _moments(out)
    scale = torch.sqrt(mass / 144.0)  # side after / side before
    _drawn_evenly(scale - 1, zoom, tolerance=0.02)
    assert torch.allclose(vxx, vyy, rtol=0.02) and vxy.abs().max() < 0.05  # the same in x and y, no turn
