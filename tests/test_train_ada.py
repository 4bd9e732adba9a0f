"""The full ADA pipeline (train/ada.py): warps and color matrices at fixed parameters against plain float64
implementations, exact blits, statistics of the parameter draws, gradients, reproducibility and the controller."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dualstylegan.train.ada import (
    ADA,
    DEFAULTS,
    LUMA_AXIS,
    SYM6,
    affine_matrix,
    apply_affine,
    apply_color,
    augment,
    color_matrix,
    draw_params,
)

OFF = {k: 0.0 for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                        "lumaflip", "hue", "saturation")}


def only(*names: str) -> dict[str, float]:
    """Strengths with every transform off but ``names``."""
    return {**OFF, **{n: 1.0 for n in names}}


def images(b=2, c=3, h=16, w=20, seed=0, dtype=torch.float64):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


# ----------------------------------------------------------------------------- a plain float64 reference warp
def reference_warp(x: np.ndarray, G: np.ndarray) -> np.ndarray:
    """x (C, H, W), G (3, 3): reflect-pad (at most size − 1, zeros beyond), 2× upsample with SYM6, bilinear
    sampling at G⁻¹ of the 2× output grid, 2× downsample — as explicit matrices and loops, in float64."""
    c, h, w = x.shape
    f = np.array(SYM6) / np.sum(SYM6)
    zp = 8
    xp = np.pad(x, ((0, 0), (h - 1, h - 1), (w - 1, w - 1)), mode="reflect")
    xp = np.pad(xp, ((0, 0), (zp, zp), (zp, zp)))
    left, top = w - 1 + zp, h - 1 + zp

    def up_matrix(n):  # y[m] = 2 Σ_i x[i] f[m + 5 − 2i]
        u = np.zeros((2 * n, n))
        for m in range(2 * n):
            for i in range(n):
                if 0 <= m + 5 - 2 * i < 12:
                    u[m, i] = 2 * f[m + 5 - 2 * i]
        return u

    def down_matrix(n):  # z[k] = Σ_j f[j] a[2k + j], a of length 2n + 10
        d = np.zeros((n, 2 * n + 10))
        for k in range(n):
            d[k, 2 * k:2 * k + 12] = f
        return d

    uy, ux = up_matrix(xp.shape[1]), up_matrix(xp.shape[2])
    y2 = uy @ xp @ ux.T
    # the 2× image ends where the reflect-padded one does (its filter tails beyond are cut, as upsample2d's)
    y2[:, :2 * zp], y2[:, -2 * zp:], y2[:, :, :2 * zp], y2[:, :, -2 * zp:] = 0, 0, 0, 0
    inv = np.linalg.inv(G)
    ny, nx = np.meshgrid(np.arange(2 * h + 10), np.arange(2 * w + 10), indexing="ij")
    cx, cy = (nx - w - 4) / 2, (ny - h - 4) / 2
    sx = inv[0, 0] * cx + inv[0, 1] * cy + inv[0, 2]
    sy = inv[1, 0] * cx + inv[1, 1] * cy + inv[1, 2]
    mx, my = 2 * (sx + (w - 1) / 2 + left), 2 * (sy + (h - 1) / 2 + top)  # 2× pixel coordinates
    x0, y0 = np.floor(mx).astype(int), np.floor(my).astype(int)
    fx, fy = mx - x0, my - y0
    a = np.zeros((c,) + mx.shape)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < y2.shape[1]) & (xx >= 0) & (xx < y2.shape[2])
            a += np.where(ok, y2[:, yy.clip(0, y2.shape[1] - 1), xx.clip(0, y2.shape[2] - 1)], 0.0) * wy * wx
    return down_matrix(h) @ a @ down_matrix(w).T


def test_affine_matrix_composes_in_the_papers_order():
    """G maps a point as: x-flip, rotate by −k·π/2, integer translation, scale, rotate by −θ₁, anisotropic scale,
    rotate by −θ₂, fractional translation — applied one after the other."""
    params = {"xflip": 1, "rotate90": 1, "int_tx": 3, "int_ty": -2, "scale": 1.3, "rotate_pre": 0.4, "aniso": 0.8,
              "rotate_post": -1.1, "frac_tx": 0.25, "frac_ty": -0.75}
    G = affine_matrix(**params)[0].numpy()

    def rot(q, a):
        return np.array([math.cos(a) * q[0] - math.sin(a) * q[1], math.sin(a) * q[0] + math.cos(a) * q[1]])

    for q in ([1.0, 0.0], [0.3, -2.0], [-4.0, 5.5]):
        r = np.array(q)
        r = np.array([-r[0], r[1]])
        r = rot(r, -math.pi / 2)
        r = r + [3, -2]
        r = r * 1.3
        r = rot(r, -0.4)
        r = r * [0.8, 1 / 0.8]
        r = rot(r, 1.1)
        r = r + [0.25, -0.75]
        assert np.allclose(G @ [q[0], q[1], 1.0], [r[0], r[1], 1.0], atol=1e-12)
    # neutral parameters build the exact identity
    assert torch.equal(affine_matrix(scale=torch.ones(3)), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    assert torch.equal(color_matrix(saturation=torch.ones(2)), torch.eye(4, dtype=torch.float64).expand(2, 4, 4))


# ----------------------------------------------------------------------------- identity and exact blits
def test_identity_is_bit_exact():
    x = images(dtype=torch.float32)
    assert augment(x, 0.0) is x
    assert apply_affine(x, torch.eye(3)) is x and apply_color(x, torch.eye(4)) is x
    G = torch.stack([torch.eye(3, dtype=torch.float64), affine_matrix(scale=1.2)[0]])
    C = torch.stack([color_matrix(brightness=0.1)[0], torch.eye(4, dtype=torch.float64)])
    assert torch.equal(apply_affine(x, G)[0], x[0]) and not torch.allclose(apply_affine(x, G)[1], x[1])
    assert torch.equal(apply_color(x, C)[1], x[1]) and torch.allclose(apply_color(x, C)[0], x[0] + 0.1)
    # samples that drew nothing in a real draw come back bit-exact
    torch.manual_seed(5)
    x = images(b=32, h=8, w=8, dtype=torch.float32)
    params = draw_params(32, 0.1, 8, 8, generator=torch.Generator().manual_seed(5))
    still = ((params.G == torch.eye(3, dtype=torch.float64)).flatten(1).all(1)
             & (params.C == torch.eye(4, dtype=torch.float64)).flatten(1).all(1))
    assert 0 < int(still.sum()) < 32
    y = apply_color(apply_affine(x, params.G), params.C)
    assert torch.equal(y[still], x[still]) and not torch.equal(y[~still], x[~still])


def test_blits_are_exact_pixel_operations():
    x = images(h=16, w=20)
    assert torch.equal(apply_affine(x, affine_matrix(xflip=1)), x.flip(3))
    sq = images(h=12, w=12)
    for k in range(4):
        assert torch.equal(apply_affine(sq, affine_matrix(rotate90=k)), torch.rot90(sq, k, (2, 3)))
    # integer translation: the reflect-padded image, shifted
    padded = F.pad(x, (5, 5, 5, 5), mode="reflect")
    assert torch.equal(apply_affine(x, affine_matrix(int_tx=3, int_ty=-2)), padded[:, :, 7:23, 2:22])
    # a composition of blits: flip, then rotate by −π/2 (torch.rot90 k=1), then translate
    G = affine_matrix(xflip=1, rotate90=1, int_tx=-1, int_ty=4)
    expected = F.pad(torch.rot90(sq.flip(3), 1, (2, 3)), (5, 5, 5, 5), mode="reflect")[:, :, 1:13, 6:18]
    assert torch.equal(apply_affine(sq, G), expected)
    # per sample: different blits in one batch
    G = torch.cat([affine_matrix(xflip=1), affine_matrix(int_tx=2)])
    out = apply_affine(x, G)
    assert torch.equal(out[0], x[0].flip(2)) and torch.equal(out[1], padded[1, :, 5:21, 3:23])


def test_the_warp_reconstructs_the_identity_and_integer_translations():
    """Through the sym6 warp (blit=False), translations are perfect reconstructions of the reflect-padded shift;
    a reflection is not (the filter is asymmetric), which is why blits are gathered."""
    x = images(h=16, w=20)
    padded = F.pad(x, (5, 5, 5, 5), mode="reflect")
    for tx, ty in ((3, -2), (0, 1), (-4, 0)):
        out = apply_affine(x, affine_matrix(int_tx=tx, int_ty=ty), blit=False)
        assert torch.allclose(out, padded[:, :, 5 - ty:21 - ty, 5 - tx:25 - tx], atol=1e-10, rtol=0)
    out32 = apply_affine(x.float(), affine_matrix(int_tx=3, int_ty=-2), blit=False)
    assert torch.allclose(out32, padded[:, :, 7:23, 2:22].float(), atol=2e-5, rtol=0)
    flipped = apply_affine(x, affine_matrix(xflip=1), blit=False)
    assert 0.05 < (flipped - x.flip(3)).abs().max() < 1.0
    # (almost) the identity through the warp
    assert torch.allclose(apply_affine(x, affine_matrix(frac_tx=1e-13), blit=False), x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("size,params", [
    ((14, 18), {"scale": 1.3, "rotate_pre": 0.7, "frac_tx": 1.3, "frac_ty": -2.2}),
    ((24, 28), {"xflip": 1, "rotate90": 3, "int_tx": 2, "aniso": 0.8, "rotate_post": -2.5, "frac_ty": 0.4}),
    ((14, 18), {"frac_tx": 0.25, "frac_ty": 0.125}),
    # these need more padding than the image has on some sides: clamped at size − 1, zeros beyond
    ((14, 18), {"xflip": 1, "rotate90": 3, "int_tx": 2, "aniso": 0.8, "rotate_post": -2.5, "frac_ty": 0.4}),
    ((14, 18), {"scale": 0.55, "rotate_pre": 1.0}),
])
def test_a_general_warp_matches_a_plain_float64_implementation(size, params):
    x = images(b=1, h=size[0], w=size[1])
    G = affine_matrix(**params)
    expected = torch.from_numpy(reference_warp(x[0].numpy(), G[0].numpy()))
    assert torch.allclose(apply_affine(x, G)[0], expected, atol=1e-10, rtol=0)
    assert torch.allclose(apply_affine(x.float(), G)[0], expected.float(), atol=1e-4, rtol=0)


def test_the_warp_moves_content_where_g_says():
    """A smooth blob warped by G matches the blob at G⁻¹ of each output pixel (conventions: forward G, centre
    origin, x right / y down), far from the reflected copies; the inverse convention would be far off."""
    h, w = 40, 44
    cy, cx = torch.arange(h, dtype=torch.float64) - (h - 1) / 2, torch.arange(w, dtype=torch.float64) - (w - 1) / 2

    def blob(px, py):
        return torch.exp(-((px - 2) ** 2 + (py + 1) ** 2) / (2 * 3.0 ** 2))

    x = blob(cx[None, :], cy[:, None])[None, None]
    G = affine_matrix(scale=1.2, rotate_pre=0.7, aniso=1.1, frac_tx=2.0, frac_ty=-1.5)
    out = apply_affine(x, G)[0, 0]

    def at(m):
        return blob(m[0, 0] * cx[None, :] + m[0, 1] * cy[:, None] + m[0, 2],
                    m[1, 0] * cx[None, :] + m[1, 1] * cy[:, None] + m[1, 2])

    inner = (slice(8, -8), slice(8, -8))
    assert (out - at(torch.linalg.inv(G)[0]))[inner].abs().max() < 2e-2  # bilinear on the 2× grid: ~1/(16σ²)
    assert (out - at(G[0]))[inner].abs().max() > 0.3


# ----------------------------------------------------------------------------- color
def per_pixel(x: np.ndarray, brightness=0.0, contrast=1.0, lumaflip=0, hue=0.0, saturation=1.0) -> np.ndarray:
    """The five color transforms in order, pixel by pixel, in float64 (x: (3, H, W))."""
    v = np.array(LUMA_AXIS)
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            q = x[:, i, j] + brightness
            q = q * contrast
            if lumaflip:
                q = q - 2 * np.dot(v, q) * v
            q = q * math.cos(hue) + np.cross(v, q) * math.sin(hue) + v * np.dot(v, q) * (1 - math.cos(hue))
            luma = np.dot(v, q) * v
            out[:, i, j] = luma + saturation * (q - luma)
    return out


@pytest.mark.parametrize("params", [{"brightness": 0.3}, {"contrast": 1.7}, {"lumaflip": 1}, {"hue": 2.1},
                                    {"saturation": 0.4},
                                    {"brightness": -0.2, "contrast": 0.6, "lumaflip": 1, "hue": -0.9,
                                     "saturation": 2.5}])
def test_color_matrices_match_per_pixel_transforms(params):
    x = images(b=1, h=5, w=6)
    C = color_matrix(**params)
    expected = torch.from_numpy(per_pixel(x[0].numpy(), **params))
    assert torch.allclose(apply_color(x, C)[0], expected, atol=1e-12, rtol=0)
    assert torch.allclose(apply_color(x.float(), C)[0], expected.float(), atol=1e-5, rtol=0)
    # grey images (1 channel): StyleGAN2-ADA's rule — the mean of C's rows
    g = x[:, :1]
    m = C[0, :3, :].mean(0)
    assert torch.allclose(apply_color(g, C), g * m[:3].sum() + m[3], atol=1e-12, rtol=0)


def test_hue_rotation_keeps_luma_and_a_full_turn_is_the_identity():
    x = images(b=1, h=4, w=4)
    y = apply_color(x, color_matrix(hue=1.234))
    assert torch.allclose(y.mean(1), x.mean(1), atol=1e-12)
    assert torch.allclose(apply_color(x, color_matrix(hue=2 * math.pi)), x, atol=1e-12)
    assert torch.allclose(apply_color(x, color_matrix(lumaflip=1) @ color_matrix(lumaflip=1)), x, atol=1e-12)


# ----------------------------------------------------------------------------- statistics of the draws
N = 20000


def draw(p=1.0, flavor="paper", seed=0, h=64, w=64, **strengths):
    return draw_params(N, p, h, w, generator=torch.Generator().manual_seed(seed), flavor=flavor, **strengths)


def near(value, target, tol):
    return abs(float(value) - target) < tol


def test_geometric_draws_follow_the_papers_distributions():
    # x-flip: i ~ U{0, 1} with probability p → flip fraction p/2
    G = draw(**only("xflip")).G
    assert near((G[:, 0, 0] == -1).double().mean(), 0.5, 0.02)
    assert near((draw(p=0.4, **only("xflip")).G[:, 0, 0] == -1).double().mean(), 0.2, 0.015)
    # 90° rotations: k uniform in {0, 1, 2, 3}
    k = draw(**only("rotate90")).values["rotate90"]
    assert set(k.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert all(near((k == j).double().mean(), 0.25, 0.02) for j in range(4))
    # integer translation: whole pixels, uniform within ±0.125·size, independent axes
    v = draw(h=64, w=96, **only("xint")).values
    tx, ty = v["int_tx"], v["int_ty"]
    assert torch.equal(tx, tx.round()) and tx.abs().max() == 12 and ty.abs().max() == 8
    assert near((tx.abs() <= 6).double().mean(), 13 / 24, 0.02)  # round(U(−12, 12)) ∈ [−6, 6] ⇔ U ∈ (−6.5, 6.5)
    assert near(torch.corrcoef(torch.stack([tx, ty]))[0, 1], 0.0, 0.04)
    # isotropic scale: log2 s ~ N(0, 0.2²)
    G = draw(**only("scale")).G
    assert torch.equal(G[:, 0, 0], G[:, 1, 1])
    s = torch.log2(G[:, 0, 0])
    assert near(s.mean(), 0.0, 0.01) and near(s.std(), 0.2, 0.01)
    # anisotropic scale: (s, 1/s), log2 s ~ N(0, 0.2²)
    G = draw(**only("aniso")).G
    assert torch.allclose(G[:, 0, 0] * G[:, 1, 1], torch.ones(N, dtype=torch.float64))
    assert near(torch.log2(G[:, 0, 0]).std(), 0.2, 0.01)
    # fractional translation: N(0, 0.125²)·size, independent axes
    v = draw(h=64, w=96, **only("xfrac")).values
    assert near((v["frac_tx"] / 96).std(), 0.125, 0.005) and near((v["frac_ty"] / 64).std(), 0.125, 0.005)
    assert near(torch.corrcoef(torch.stack([v["frac_tx"], v["frac_ty"]]))[0, 1], 0.0, 0.04)


def test_rotations_are_uniform_and_happen_with_probability_p():
    v = draw(**only("rotate")).values
    for name in ("rotate_pre", "rotate_post"):
        counts = torch.histc(v[name], bins=8, min=-math.pi, max=math.pi) / N
        assert (counts - 1 / 8).abs().max() < 0.015
    # pre and post each with 1 − √(1 − p): at least one rotation with probability p
    v = draw(p=0.5, **only("rotate")).values
    assert near(((v["rotate_pre"] != 0) | (v["rotate_post"] != 0)).double().mean(), 0.5, 0.02)
    assert near((v["rotate_pre"] != 0).double().mean(), 1 - math.sqrt(0.5), 0.02)
    # the composed rotation angle is uniform too
    G = draw(p=0.5, **only("rotate")).G
    turned = (G[:, 0, 1] != 0)
    angle = torch.atan2(G[turned, 1, 0], G[turned, 0, 0])
    assert ((torch.histc(angle, bins=8, min=-math.pi, max=math.pi) / int(turned.sum())) - 1 / 8).abs().max() < 0.02


def test_color_draws_follow_the_papers_distributions():
    C = draw(**only("brightness")).C
    assert torch.equal(C[:, 0, 3], C[:, 2, 3]) and near(C[:, 0, 3].std(), 0.2, 0.01)
    C = draw(**only("contrast")).C
    assert near(torch.log2(C[:, 0, 0]).std(), 0.5, 0.015)
    C = draw(**only("lumaflip")).C
    flipped = ~(C == torch.eye(4, dtype=torch.float64)).flatten(1).all(1)
    assert near(flipped.double().mean(), 0.5, 0.02)
    v = torch.tensor(LUMA_AXIS, dtype=torch.float64)
    assert torch.allclose(C[flipped, :3, :3] @ v, -v.expand(int(flipped.sum()), 3))  # grey axis reversed
    hue = draw(**only("hue")).values["hue"]
    assert ((torch.histc(hue, bins=8, min=-math.pi, max=math.pi) / N) - 1 / 8).abs().max() < 0.015
    C = draw(**only("saturation")).C
    s = (torch.diagonal(C[:, :3, :3], dim1=1, dim2=2).sum(1) - 1) / 2  # trace = 1 + 2s
    assert near(torch.log2(s).std(), 1.0, 0.03) and near(torch.log2(s).mean(), 0.0, 0.04)
    # each transform gated separately with probability p
    for name, neutral in (("brightness", 0.0), ("contrast", 1.0), ("hue", 0.0), ("saturation", 1.0)):
        assert near((draw(p=0.3, **only(name)).values[name] != neutral).double().mean(), 0.3, 0.02)


def test_the_default_draw_and_its_gates():
    params = draw(p=0.3)
    assert torch.isfinite(params.G).all() and torch.isfinite(params.C).all()
    for name, neutral in (("scale", 1.0), ("aniso", 1.0), ("frac_tx", 0.0), ("contrast", 1.0)):
        assert near((params.values[name] != neutral).double().mean(), 0.3, 0.02)
    assert near((params.values["xflip"] == 1).double().mean(), 0.15, 0.015)
    # p = 1: every scale drawn; p = 0: nothing
    assert (draw(p=1.0).values["scale"] != 1).all()
    assert (draw(p=0.0).G == torch.eye(3, dtype=torch.float64)).all()


def test_the_non_leaking_flavor_reproduces_the_references_distributions():
    v = draw(flavor="non_leaking", h=64, w=64).values
    assert set(v["rotate90"].unique().tolist()) == {0.0, 3.0}
    assert near((v["rotate90"] == 3).double().mean(), 0.5, 0.02)
    assert torch.equal(v["int_tx"], v["int_ty"]) and torch.equal(v["int_tx"] * 2, (v["int_tx"] * 2).round())
    assert v["int_tx"].abs().max() == 4.0 and (v["int_tx"] % 1 == 0.5).any()  # round(u·64)/2, u ∈ ±0.125
    assert torch.equal(v["frac_tx"], v["frac_ty"]) and near((v["frac_tx"] / 64).std(), 0.0625, 0.003)
    with pytest.raises(ValueError):
        draw_params(2, 0.5, 8, 8, flavor="official")
    with pytest.raises(TypeError):
        draw_params(2, 0.5, 8, 8, shear=1.0)


def test_draws_consume_the_same_stream_whatever_p():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    lo, hi = draw_params(500, 0.2, 32, 32, generator=a), draw_params(500, 0.9, 32, 32, generator=b)
    assert torch.equal(a.get_state(), b.get_state())
    both = (lo.values["scale"] != 1) & (hi.values["scale"] != 1)
    assert both.any() and torch.equal(lo.values["scale"][both], hi.values["scale"][both])
    # and strengths do not change it either
    c = torch.Generator().manual_seed(3)
    draw_params(500, 0.2, 32, 32, generator=c, **OFF)
    assert torch.equal(a.get_state(), c.get_state())


# ----------------------------------------------------------------------------- gradients, reproducibility
def test_gradients_flow_through_the_warp_the_blits_and_the_colors():
    x = images(b=3, c=3, h=5, w=6).requires_grad_(True)
    G = torch.cat([affine_matrix(scale=1.1, rotate_pre=0.3, frac_tx=0.4), affine_matrix(xflip=1, int_ty=1),
                   affine_matrix()])
    assert torch.autograd.gradcheck(lambda t: apply_affine(t, G), (x,), fast_mode=True)
    C = color_matrix(brightness=torch.tensor([0.1, 0.0, 0.0]), hue=torch.tensor([0.5, 0.0, 0.0]),
                     saturation=torch.tensor([1.5, 1.0, 1.0]), contrast=torch.tensor([1.0, 0.7, 1.0]))
    assert torch.autograd.gradcheck(lambda t: apply_color(t, C), (x,), fast_mode=True)
    y = images(b=4, h=16, w=16, dtype=torch.float32).requires_grad_(True)
    torch.manual_seed(0)
    augment(y, 0.8).square().sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_same_seed_same_augmentation():
    x = images(b=6, h=16, w=16, dtype=torch.float32)
    torch.manual_seed(11)
    a = augment(x, 0.6)
    torch.manual_seed(11)
    b = augment(x, 0.6)
    assert torch.equal(a, b) and not torch.equal(a, x)
    ga = augment(x, 0.6, generator=torch.Generator().manual_seed(2))
    gb = augment(x, 0.6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ga, gb)
    assert -1.5 < float(augment(x, 0.3).mean()) < 1.5



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_on_the_cpu_and_matches_it():
    x = images(b=8, h=32, w=32, dtype=torch.float32)
    torch.manual_seed(4)
    a = augment(x, 0.7)
    torch.manual_seed(4)
    b = augment(x.cuda(), 0.7)
    assert b.is_cuda and torch.allclose(a, b.cpu(), atol=1e-4, rtol=0)
    assert torch.equal(apply_affine(x.cuda(), affine_matrix(xflip=1)).cpu(), x.flip(3))


# ----------------------------------------------------------------------------- the controller
def preds(n, positive):
    return torch.ones(n, 1) if positive else -torch.ones(n, 1)


def test_controller_defaults_are_the_references():
    ada = ADA()
    assert (ada.target, ada.speed_kimg, ada.interval, ada.interval_images, ada.p) == (0.6, 500.0, 1, 8, 0.0)
    assert ada.augment(images(dtype=torch.float32)) is not None
    with pytest.raises(TypeError):
        ADA(shear=1.0)


def test_controller_moves_p_by_the_images_seen():
    ada = ADA()  # adjust once 8 predictions are in: every 2 steps at batch 4
    assert ada.update(preds(4, True))["ada_p"] == 0.0 and ada.state()["images"] == 4
    out = ada.update(preds(4, True))
    assert out == {"ada_p": 8 / 500_000, "ada_rt": 1.0}
    ada.update(preds(4, False))
    assert ada.update(preds(4, False))["ada_p"] == 0.0  # down by 8/500k, clamped at 0
    # r_t just above / at / below the target
    ada = ADA(p=0.5, interval_images=10)
    ada.accumulate(torch.tensor([1.0] * 9 + [-1.0]))  # r_t = 0.8
    assert ada.step()["ada_p"] == pytest.approx(0.5 + 10 / 500_000)
    ada.accumulate(torch.tensor([1.0] * 8 + [-1.0] * 2))  # r_t = 0.6 = target: down, as AdaptiveAugment
    assert ada.step()["ada_p"] == pytest.approx(0.5)
    ada.accumulate(torch.tensor([1.0] * 7 + [-1.0] * 3))  # r_t = 0.4
    assert ada.step()["ada_p"] == pytest.approx(0.5 - 10 / 500_000)
    assert ada.r_t == pytest.approx(0.4)
    # clamped at 1; a fixed adjustment
    ada = ADA(p=0.99, adjust=0.1, interval_images=0)
    assert ada.update(preds(2, True))["ada_p"] == 1.0


def test_controller_interval_in_steps_and_its_checkpoint():
    ada = ADA(interval=4, interval_images=0, speed_kimg=1)
    for _ in range(3):
        ada.accumulate(preds(2, True))
        assert ada.step()["ada_p"] == 0.0
    state = ada.state()
    clone = ADA(interval=4, interval_images=0, speed_kimg=1)
    clone.load_state(state)
    for a in (ada, clone):
        a.accumulate(preds(2, True))
        assert a.step()["ada_p"] == pytest.approx(8 / 1000)
    assert ada.state() == clone.state()
    assert set(DEFAULTS) >= {"xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
                             "contrast", "lumaflip", "hue", "saturation"}
