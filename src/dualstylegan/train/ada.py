"""(One module of ~540 lines on purpose: the draws, the matrices they build, the warp and the controller are one
pipeline whose order and conventions must stay together to stay reproducible.)

The full adaptive discriminator augmentation pipeline (ADA; Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020, §2–3 and Appendix B/C), as the DualStyleGAN reference fine-tunes g′ with
it (rosinality's ``non_leaking.py``: ``augment``, ``random_apply_affine``, ``random_apply_color``,
``AdaptiveAugment``), in plain differentiable PyTorch. Images are (B, C, H, W) in [−1, 1].

Transforms, each applied per sample with its own probability p·multiplier (the paper's ``bgc`` set, defaults of
Appendix B / StyleGAN2-ADA's ``AugmentPipe``):

================  ==============================================================  =========================
transform         parameter (pixels; origin at the image centre, x right, y down)  probability
================  ==============================================================  =========================
x-flip            i ~ U{0, 1}: scale (1 − 2i, 1)                                  p
90° rotation      k ~ U{0, 1, 2, 3}: rotate by −k·π/2                             p
int. translation  t ~ U(−0.125, 0.125)², round(t·(W, H)) pixels                    p
isotropic scale   s = 2^N(0, 0.2²)                                                p
rotation (pre)    θ ~ U(−π, π)                                                    1 − √(1 − p)
anisotropic scale s = 2^N(0, 0.2²): scale (s, 1/s)                                p
rotation (post)   θ ~ U(−π, π)                                                    1 − √(1 − p)
frac. translation t ~ N(0, 0.125²)², t·(W, H) pixels                              p
brightness        b ~ N(0, 0.2²): add b                                           p
contrast          c = 2^N(0, 0.5²): multiply by c                                 p
luma flip         i ~ U{0, 1}: I − 2·v vᵀ·i, v = (1, 1, 1)/√3                     p
hue rotation      θ ~ U(−π, π): rotate about v                                    p
saturation        s = 2^N(0, 1): v vᵀ + s·(I − v vᵀ)                              p
================  ==============================================================  =========================

The geometric transforms compose, in that order, into one forward matrix per sample, G = T_8 ⋯ T_1 (a later
transform multiplies on the left; G maps input to output coordinates); the color ones into one 4×4 matrix
C = T_13 ⋯ T_9 acting on homogeneous RGB. :func:`apply_affine` executes G in one warp — reflect-pad, 2× upsample
with the symlet-6 wavelet low-pass (:data:`SYM6`), bilinear ``grid_sample`` at G⁻¹ of the 2× output pixel centres,
2× downsample with the same filter — and :func:`apply_color` applies C to every pixel; :func:`augment` draws
(:func:`draw_params`) and does both, geometry first.

Exactness. A sample whose matrix is exactly the identity (it drew no augmentation, or only neutral ones: flip
i = 0, k = 0, a translation rounding to 0) is returned bit-exact; at p = 0 :func:`augment` returns its input and
draws nothing. A sample whose G is a pure pixel blit — a signed axis permutation (flips, 90° rotations) with a
translation mapping pixel centres onto pixel centres — is executed exactly as a gather from the reflect-padded
image (``blit=True``, the default). Every other sample goes through the wavelet warp, which reconstructs the
identity and integer translations to float rounding (the filter is orthogonal: its even-lag autocorrelation is a
unit impulse) and interpolates everything else.

Random draws (reproducibility). :func:`draw_params` draws on the CPU, from ``generator`` or torch's global
generator (the training loop checkpoints it), so a run is reproducible on any device. For each of the 13
transforms in the table's order it draws the parameter(s) of all B samples, then B uniform gates (on where
gate < probability) — the same number of values whatever p and the multipliers are, so a change of p never shifts
later draws. All values are float64 (``torch.rand``/``torch.randn``/``torch.randint`` of shape (B,) or (B, 2)).

Deliberate differences from ``non_leaking.py`` (and from StyleGAN2-ADA's ``augment.py`` where said):

* Parameter distributions are the paper's (above). ``non_leaking.py`` instead draws the 90° rotation from {0, 3}
  (0° or 270° only), and draws each translation once for both axes in normalised [−1, 1] units: the integer one is
  round(u·size)/2 pixels (half the paper's range, half-pixel steps), the fractional one N(0, 0.125²)·size/2
  pixels (half the paper's spread). ``flavor="non_leaking"`` reproduces those distributions.
* Its draws use ``bernoulli_``/``log_normal_`` on the default generator; ours use the order documented above (the
  same distributions, not the same random streams).
* Padding: the reflect padding covers exactly what the sampled region and the filter need, clamped at size − 1 per
  side, beyond which the image is zero (StyleGAN2-ADA's rule). ``non_leaking.py`` pads twice what is needed and,
  when that exceeds the image, redraws the whole batch's G (which biases the distribution, and never ends for a
  fixed G that needs it).
* Alignment: the 2× grid is sampled exactly at its pixel centres (StyleGAN2-ADA's alignment: the up-filter is a
  convolution, the down-filter a correlation with the same taps), so G = I and integer translations are perfect
  reconstructions. ``non_leaking.py`` spans its grid with ``linspace`` over 2·(H + 12) − 11 2× pixels with end
  points that do not fall on them, so its G = I warp resamples: by our transcription (a scratch check, not in the
  tests) it shifts a 64-pixel image by −0.67 to −0.39 pixel across its width, and it warps every sample, even at
  p = 0.
* Pure blits are executed exactly (see above). With the asymmetric sym6 filter the one-warp scheme is exact for
  translations but not for reflections: a warped x-flip is the flip convolved, along x, with the even taps of
  sym6 ∗ sym6 (…, −0.098, 0.084, 0.965, −0.026, 0.064, …) — ``blit=False`` reproduces that reference behaviour.
* p is clamped to [0, 1] as in ``AdaptiveAugment``; 1-channel images get the color transform as in StyleGAN2-ADA
  (the mean of C's rows); the saturation factor's homogeneous entry is 1 (theirs is s, which never reaches an
  image).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

#: The symlet-6 wavelet low-pass decomposition filter (12 taps, sum √2) of Appendix B / ``non_leaking.py``.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

#: The luma axis of the color transforms (unit vector along grey).
LUMA_AXIS = (1 / math.sqrt(3),) * 3

#: The paper's multipliers (probability = p · multiplier) and spreads; keyword arguments of :func:`draw_params`,
#: :func:`augment` and :class:`ADA`.
DEFAULTS: dict[str, float] = {
    "xflip": 1.0, "rotate90": 1.0, "xint": 1.0, "scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0,
    "brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0,
    "xint_max": 0.125, "scale_std": 0.2, "rotate_max": 1.0, "aniso_std": 0.2, "xfrac_std": 0.125,
    "brightness_std": 0.2, "contrast_std": 0.5, "hue_max": 1.0, "saturation_std": 1.0,
}
FLAVORS = ("paper", "non_leaking")

_F64 = torch.float64
_BLIT_TOL = 1e-6   # how close G⁻¹ must be to a blit (signed permutation, pixel-centre translation) to be one


class AugmentParams(NamedTuple):
    """One batch's draw: ``G`` (B, 3, 3) geometric (input → output pixel coordinates), ``C`` (B, 4, 4) color, and
    ``values``: the effective per-sample parameters (neutral where a gate was off) that built them."""
    G: torch.Tensor
    C: torch.Tensor
    values: dict[str, torch.Tensor]


# ------------------------------------------------------------------------------------------------ matrices
def _batch(*values: Any) -> tuple[torch.Tensor, ...]:
    ts = [torch.as_tensor(v, dtype=_F64).cpu() for v in values]
    return tuple(torch.broadcast_tensors(*[t.reshape(-1) for t in ts]))


def _mat(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """(B, n, n) from a nested list of (B,) tensors and constants."""
    out = torch.empty(like.shape[0], len(rows), len(rows), dtype=_F64)
    for i, row in enumerate(rows):
        for j, e in enumerate(row):
            out[:, i, j] = e
    return out


def _where(neutral: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``m`` where a sample's parameter is not neutral, the exact identity where it is."""
    eye = torch.eye(m.shape[-1], dtype=_F64).expand_as(m)
    return torch.where(neutral.view(-1, 1, 1), eye, m)


def _rot2(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _mat([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], theta)


def _rot90(k: torch.Tensor) -> torch.Tensor:
    """Rotation by −k·π/2, built exactly (cos/sin of multiples of π/2 would not be exact)."""
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=_F64)[k.long() % 4]
    sin = torch.tensor([0.0, -1.0, 0.0, 1.0], dtype=_F64)[k.long() % 4]
    return _mat([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], cos)


def affine_matrix(*, xflip: Any = 0, rotate90: Any = 0, int_tx: Any = 0, int_ty: Any = 0, scale: Any = 1,
                  rotate_pre: Any = 0, aniso: Any = 1, rotate_post: Any = 0, frac_tx: Any = 0,
                  frac_ty: Any = 0) -> torch.Tensor:
    """The forward geometric matrices (B, 3, 3), float64, of given per-sample parameters (scalars or (B,)).

    In pixel coordinates with the origin at the image centre, x right, y down; composed in the paper's order
    (x-flip ``xflip`` ∈ {0, 1}, rotation by −``rotate90``·π/2, translation (``int_tx``, ``int_ty``), isotropic
    ``scale``, rotation by −``rotate_pre``, anisotropic (``aniso``, 1/``aniso``), rotation by −``rotate_post``,
    translation (``frac_tx``, ``frac_ty``)), each a left factor. Neutral parameters give exact identity factors.
    """
    (xflip, rotate90, int_tx, int_ty, scale, rotate_pre, aniso, rotate_post, frac_tx, frac_ty) = _batch(
        xflip, rotate90, int_tx, int_ty, scale, rotate_pre, aniso, rotate_post, frac_tx, frac_ty)
    one, zero = torch.ones_like(scale), torch.zeros_like(scale)
    factors = [
        _where(xflip == 0, _mat([[1 - 2 * xflip, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], one)),
        _where(rotate90 % 4 == 0, _rot90(rotate90)),
        _where((int_tx == 0) & (int_ty == 0), _mat([[1.0, 0.0, int_tx], [0.0, 1.0, int_ty], [zero, zero, 1.0]], one)),
        _where(scale == 1, _mat([[scale, 0.0, 0.0], [0.0, scale, 0.0], [0.0, 0.0, 1.0]], one)),
        _where(rotate_pre == 0, _rot2(-rotate_pre)),
        _where(aniso == 1, _mat([[aniso, 0.0, 0.0], [0.0, 1 / aniso, 0.0], [0.0, 0.0, 1.0]], one)),
        _where(rotate_post == 0, _rot2(-rotate_post)),
        _where((frac_tx == 0) & (frac_ty == 0), _mat([[1.0, 0.0, frac_tx], [0.0, 1.0, frac_ty], [zero, zero, 1.0]],
                                                    one)),
    ]
    g = factors[0]
    for t in factors[1:]:
        g = t @ g
    return g


def color_matrix(*, brightness: Any = 0, contrast: Any = 1, lumaflip: Any = 0, hue: Any = 0,
                 saturation: Any = 1) -> torch.Tensor:
    """The color matrices (B, 4, 4), float64, acting on homogeneous RGB, of given per-sample parameters.

    Composed in the paper's order: add ``brightness``, multiply by ``contrast``, luma flip (``lumaflip`` ∈ {0, 1}:
    I − 2·v vᵀ), rotate by ``hue`` about the luma axis v (Rodrigues), ``saturation`` (v vᵀ + s·(I − v vᵀ)), each a
    left factor. Neutral parameters give exact identity factors.
    """
    brightness, contrast, lumaflip, hue, saturation = _batch(brightness, contrast, lumaflip, hue, saturation)
    one = torch.ones_like(brightness)
    v = torch.tensor(LUMA_AXIS + (0.0,), dtype=_F64)
    vvt = torch.outer(v, v)
    eye = torch.eye(4, dtype=_F64)
    b, c = brightness, contrast
    vx, vy, vz = LUMA_AXIS
    cos, sin = torch.cos(hue), torch.sin(hue)
    cc = 1 - cos
    rodrigues = _mat([[vx * vx * cc + cos, vx * vy * cc - vz * sin, vx * vz * cc + vy * sin, 0.0],
                      [vy * vx * cc + vz * sin, vy * vy * cc + cos, vy * vz * cc - vx * sin, 0.0],
                      [vz * vx * cc - vy * sin, vz * vy * cc + vx * sin, vz * vz * cc + cos, 0.0],
                      [0.0, 0.0, 0.0, 1.0]], one)
    sat = vvt + (eye - vvt) * saturation.view(-1, 1, 1)
    sat[:, 3, 3] = 1.0
    factors = [
        _where(b == 0, _mat([[1.0, 0.0, 0.0, b], [0.0, 1.0, 0.0, b], [0.0, 0.0, 1.0, b], [0.0, 0.0, 0.0, 1.0]], one)),
        _where(c == 1, _mat([[c, 0.0, 0.0, 0.0], [0.0, c, 0.0, 0.0], [0.0, 0.0, c, 0.0], [0.0, 0.0, 0.0, 1.0]], one)),
        _where(lumaflip == 0, eye - 2 * vvt * lumaflip.view(-1, 1, 1)),
        _where(hue == 0, rodrigues),
        _where(saturation == 1, sat),
    ]
    m = factors[0]
    for t in factors[1:]:
        m = t @ m
    return m


# ------------------------------------------------------------------------------------------------ draws
def _strengths(kwargs: dict[str, Any]) -> dict[str, float]:
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown ADA strength(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **{k: float(v) for k, v in kwargs.items()}}


def draw_params(batch: int, p: float, height: int, width: int, *, generator: torch.Generator | None = None,
                flavor: str = "paper", **strengths: float) -> AugmentParams:
    """Draw one batch's geometric and color matrices at augmentation probability ``p`` (see the module docstring
    for the distributions and the draw order). ``strengths`` override :data:`DEFAULTS` (a multiplier of 0 turns a
    transform off; its values are still drawn). ``flavor="non_leaking"`` uses ``non_leaking.py``'s 90° rotation and
    translation distributions instead of the paper's."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, not {flavor!r}")
    s = _strengths(strengths)
    p = min(max(float(p), 0.0), 1.0)
    b, g = batch, generator
    ref = flavor == "non_leaking"

    def gate(values: torch.Tensor, neutral: float, prob: float) -> torch.Tensor:
        on = torch.rand(b, generator=g, dtype=_F64) < prob
        return torch.where(on.view(-1, *([1] * (values.ndim - 1))), values, torch.full_like(values, neutral))

    p_rot = 1 - math.sqrt(max(1 - s["rotate"] * p, 0.0))
    size = torch.tensor([width, height], dtype=_F64)
    v: dict[str, torch.Tensor] = {}
    v["xflip"] = gate(torch.randint(0, 2, (b,), generator=g).to(_F64), 0.0, s["xflip"] * p)
    if ref:  # non_leaking.py: category_sample(size, (0, 3))
        k = torch.randint(0, 2, (b,), generator=g).to(_F64) * 3
    else:
        k = torch.randint(0, 4, (b,), generator=g).to(_F64)
    v["rotate90"] = gate(k, 0.0, s["rotate90"] * p)
    if ref:  # one draw for both axes, in normalised units: round(u·size)/size · size/2 pixels
        u = (torch.rand(b, generator=g, dtype=_F64) * 2 - 1) * s["xint_max"]
        t = torch.round(u[:, None] * size) / 2
    else:
        t = torch.round((torch.rand(b, 2, generator=g, dtype=_F64) * 2 - 1) * s["xint_max"] * size)
    t = gate(t, 0.0, s["xint"] * p)
    v["int_tx"], v["int_ty"] = t[:, 0], t[:, 1]
    v["scale"] = gate(torch.exp2(torch.randn(b, generator=g, dtype=_F64) * s["scale_std"]), 1.0, s["scale"] * p)
    v["rotate_pre"] = gate((torch.rand(b, generator=g, dtype=_F64) * 2 - 1) * math.pi * s["rotate_max"], 0.0, p_rot)
    v["aniso"] = gate(torch.exp2(torch.randn(b, generator=g, dtype=_F64) * s["aniso_std"]), 1.0, s["aniso"] * p)
    v["rotate_post"] = gate((torch.rand(b, generator=g, dtype=_F64) * 2 - 1) * math.pi * s["rotate_max"], 0.0, p_rot)
    if ref:  # one draw for both axes, N(0, std²) in normalised units
        t = torch.randn(b, generator=g, dtype=_F64)[:, None] * s["xfrac_std"] * size / 2
    else:
        t = torch.randn(b, 2, generator=g, dtype=_F64) * s["xfrac_std"] * size
    t = gate(t, 0.0, s["xfrac"] * p)
    v["frac_tx"], v["frac_ty"] = t[:, 0], t[:, 1]

    v["brightness"] = gate(torch.randn(b, generator=g, dtype=_F64) * s["brightness_std"], 0.0, s["brightness"] * p)
    v["contrast"] = gate(torch.exp2(torch.randn(b, generator=g, dtype=_F64) * s["contrast_std"]), 1.0,
                         s["contrast"] * p)
    v["lumaflip"] = gate(torch.randint(0, 2, (b,), generator=g).to(_F64), 0.0, s["lumaflip"] * p)
    v["hue"] = gate((torch.rand(b, generator=g, dtype=_F64) * 2 - 1) * math.pi * s["hue_max"], 0.0, s["hue"] * p)
    v["saturation"] = gate(torch.exp2(torch.randn(b, generator=g, dtype=_F64) * s["saturation_std"]), 1.0,
                           s["saturation"] * p)
    geo = ("xflip", "rotate90", "int_tx", "int_ty", "scale", "rotate_pre", "aniso", "rotate_post", "frac_tx",
           "frac_ty")
    G = affine_matrix(**{n: v[n] for n in geo})
    C = color_matrix(**{n: v[n] for n in ("brightness", "contrast", "lumaflip", "hue", "saturation")})
    return AugmentParams(G, C, v)


# ------------------------------------------------------------------------------------------------ geometry
def _reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into [0, n) without repeating the edge (``F.pad(mode="reflect")``, any distance)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _blit(x: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Exact execution of blits: output pixel ← the input pixel at G⁻¹(centre), reflected into the image."""
    b, _, h, w = x.shape
    a = torch.round(inv[:, :2, :2])
    cx = torch.arange(w, dtype=_F64) - (w - 1) / 2
    cy = torch.arange(h, dtype=_F64) - (h - 1) / 2
    ox, oy = cx.view(1, 1, w), cy.view(1, h, 1)
    src_x = a[:, 0, 0].view(-1, 1, 1) * ox + a[:, 0, 1].view(-1, 1, 1) * oy + inv[:, 0, 2].view(-1, 1, 1) + (w - 1) / 2
    src_y = a[:, 1, 0].view(-1, 1, 1) * ox + a[:, 1, 1].view(-1, 1, 1) * oy + inv[:, 1, 2].view(-1, 1, 1) + (h - 1) / 2
    cols = _reflect_index(torch.round(src_x).long(), w).to(x.device)  # (b, h, w)
    rows = _reflect_index(torch.round(src_y).long(), h).to(x.device)
    idx = torch.arange(b, device=x.device).view(-1, 1, 1)
    return x[idx, :, rows, cols].permute(0, 3, 1, 2)  # advanced indices around a slice: (b, h, w, c)


def _is_blit(inv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B,) bool: G⁻¹ is a signed axis permutation that maps the output pixel centres onto input pixel centres."""
    a = inv[:, :2, :2]
    ra = torch.round(a)
    perm = ((a - ra).abs() <= _BLIT_TOL).all(-1).all(-1) & (ra.abs().sum(-1) == 1).all(-1) & \
        (ra.abs().sum(-2) == 1).all(-1)
    corner = torch.tensor([-(w - 1) / 2, -(h - 1) / 2, 1.0], dtype=_F64)
    src = inv[:, :2, :] @ corner + torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=_F64)
    return perm & ((src - torch.round(src)).abs() <= _BLIT_TOL).all(-1)


def _filter_1d(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    f = torch.tensor(SYM6, dtype=_F64)
    return (f / f.sum()).to(device=x.device, dtype=dtype)


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, N, M) → (B, C, 2N, 2M): zero insertion and convolution with 2·f per axis, y[m] = 2 Σ_i x[i] f[m + 5 − 2i]
    (f = SYM6 / √2; StyleGAN2-ADA's ``upsample2d`` with ``flip_filter=False``)."""
    b, c, n, m = x.shape
    f = _filter_1d(x, x.dtype) * 2
    y = x.reshape(b * c, 1, n, m)
    y = F.conv_transpose2d(y, f.view(1, 1, -1, 1), stride=(2, 1), padding=(5, 0))
    y = F.conv_transpose2d(y, f.view(1, 1, 1, -1), stride=(1, 2), padding=(0, 5))
    return y.reshape(b, c, 2 * n, 2 * m)


def _downsample2x(a: torch.Tensor) -> torch.Tensor:
    """(B, C, 2H + 10, 2W + 10) → (B, C, H, W): correlation with f per axis and decimation, z[k] = Σ_j f[j] a[2k + j]
    (StyleGAN2-ADA's ``downsample2d`` with ``flip_filter=True`` and padding −6, less its unused first sample)."""
    b, c, n, m = a.shape
    f = _filter_1d(a, a.dtype)
    z = a.reshape(b * c, 1, n, m)
    z = F.conv2d(z, f.view(1, 1, -1, 1), stride=(2, 1))
    z = F.conv2d(z, f.view(1, 1, 1, -1), stride=(1, 2))
    return z.reshape(b, c, z.shape[-2], z.shape[-1])


def _warp(x: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """The one affine warp: reflect pad, 2× up, bilinear sample at G⁻¹ of the 2× output grid, 2× down.

    The 2× output grid has 2W + 10 columns n (and 2H + 10 rows) at centred coordinate (n − W − 4)/2 — the output
    pixels ± the down-filter's support; the input 2× pixel m of the padded image lies at padded index m/2.
    """
    b, c, h, w = x.shape
    # the input region the 2× grid maps to (affine: its corners bound it), plus the filter support (3 pixels,
    # ½ more for the bilinear neighbour)
    x0, x1, y0, y1 = -(w + 4) / 2, (w + 5) / 2, -(h + 4) / 2, (h + 5) / 2
    corners = torch.tensor([[x0, y0, 1.0], [x1, y0, 1.0], [x0, y1, 1.0], [x1, y1, 1.0]], dtype=_F64)
    src = inv[:, :2, :] @ corners.T + torch.tensor([[(w - 1) / 2], [(h - 1) / 2]], dtype=_F64)  # (b, 2, 4)
    lo, hi = src.amin(dim=(0, 2)), src.amax(dim=(0, 2))
    px0 = min(max(math.ceil(3.5 - float(lo[0]) - 1e-9), 0), w - 1)
    px1 = min(max(math.ceil(float(hi[0]) + 4 - w - 1e-9), 0), w - 1)
    py0 = min(max(math.ceil(3.5 - float(lo[1]) - 1e-9), 0), h - 1)
    py1 = min(max(math.ceil(float(hi[1]) + 4 - h - 1e-9), 0), h - 1)
    xp = F.pad(x, (px0, px1, py0, py1), mode="reflect") if px0 or px1 or py0 or py1 else x
    up = _upsample2x(xp)
    nw, nh = w + px0 + px1, h + py0 + py1
    # grid_sample's normalised coordinates: output X ↦ centred c = X·(W + 5)/2 + ¼; input c ↦ (4c + 2(p0 − p1) − 1)/(2N)
    s_out = torch.tensor([[(w + 5) / 2, 0.0, 0.25], [0.0, (h + 5) / 2, 0.25], [0.0, 0.0, 1.0]], dtype=_F64)
    s_in = torch.tensor([[2 / nw, 0.0, (2 * (px0 - px1) - 1) / (2 * nw)],
                         [0.0, 2 / nh, (2 * (py0 - py1) - 1) / (2 * nh)], [0.0, 0.0, 1.0]], dtype=_F64)
    theta = (s_in @ inv @ s_out)[:, :2, :].to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [b, c, 2 * h + 10, 2 * w + 10], align_corners=False)
    a = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _downsample2x(a)


def _as_matrices(m: torch.Tensor | Any, batch: int, n: int) -> torch.Tensor:
    m = torch.as_tensor(m).detach().to(device="cpu", dtype=_F64)
    if m.shape[-2:] != (n, n) or m.ndim not in (2, 3) or (m.ndim == 3 and m.shape[0] not in (1, batch)):
        raise ValueError(f"expected ({batch}, {n}, {n}) matrices, got {tuple(m.shape)}")
    return m.expand(batch, n, n) if m.ndim == 2 or m.shape[0] == 1 else m


def apply_affine(x: torch.Tensor, G: torch.Tensor, *, blit: bool = True) -> torch.Tensor:
    """Warp each image of x (B, C, H, W) by its forward matrix G (B, 3, 3) (input → output pixel coordinates,
    origin at the image centre, x right, y down; :func:`affine_matrix`): out(c) = x(G⁻¹c), x extended by reflection.

    Samples with G = I are returned bit-exact; with ``blit`` those whose G is a pixel blit are gathered exactly;
    the others go through the sym6 2× up / bilinear / 2× down warp. Differentiable w.r.t. x (not G).
    """
    b, _, h, w = x.shape
    G = _as_matrices(G, b, 3)
    moved = (G != torch.eye(3, dtype=_F64)).any(-1).any(-1)
    if not bool(moved.any()):
        return x
    inv = torch.linalg.inv(G)
    blits = moved & _is_blit(inv, h, w) if blit else torch.zeros_like(moved)
    out = x
    for select, run in ((blits, _blit), (moved & ~blits, _warp)):
        if bool(select.any()):
            idx = select.nonzero().view(-1)
            dev = idx.to(x.device)
            out = out.index_copy(0, dev, run(x.index_select(0, dev), inv[idx]))
    return out


# ------------------------------------------------------------------------------------------------ color
def apply_color(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Apply each sample's color matrix C (B, 4, 4) to every pixel of x (B, 3, H, W): C[:3, :3]·rgb + C[:3, 3]
    (1-channel images: as StyleGAN2-ADA, with the mean of C's first three rows). Samples with C = I are returned
    bit-exact. Differentiable w.r.t. x."""
    b, c, _, _ = x.shape
    if c not in (1, 3):
        raise ValueError(f"color transforms need 1 or 3 channels, got {c}")
    C = _as_matrices(C, b, 4)
    moved = (C != torch.eye(4, dtype=_F64)).any(-1).any(-1)
    if not bool(moved.any()):
        return x
    idx = moved.nonzero().view(-1)
    dev = idx.to(x.device)
    sub, m = x.index_select(0, dev), C[idx].to(device=x.device, dtype=x.dtype)
    if c == 3:
        y = torch.einsum("bij,bjhw->bihw", m[:, :3, :3], sub) + m[:, :3, 3].view(-1, 3, 1, 1)
    else:
        mean = m[:, :3, :].mean(1)
        y = sub * mean[:, :3].sum(-1).view(-1, 1, 1, 1) + mean[:, 3].view(-1, 1, 1, 1)
    return x.index_copy(0, dev, y)


def augment(x: torch.Tensor, p: float, *, generator: torch.Generator | None = None, flavor: str = "paper",
            blit: bool = True, **strengths: float) -> torch.Tensor:
    """Augment a batch (B, C, H, W) in [−1, 1] at probability ``p``: :func:`draw_params`, then :func:`apply_affine`
    and :func:`apply_color`. Returns x itself (and draws nothing) when p ≤ 0."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    params = draw_params(b, p, h, w, generator=generator, flavor=flavor, **strengths)
    return apply_color(apply_affine(x, params.G, blit=blit), params.C)


# ------------------------------------------------------------------------------------------------ controller
class ADA:
    """The augmentation probability p and its controller (Karras et al. 2020, §3; ``non_leaking.AdaptiveAugment``).

    ``update(real_pred)`` (or ``accumulate`` once per D pass on augmented reals and ``step`` once per training
    step) gathers sign(D(real)). At the end of a step, once at least ``interval`` steps and ``interval_images``
    predictions (over all ranks) have gathered, r_t = mean sign is compared with ``target`` and p moves by
    +n / (``speed_kimg``·1000) if r_t > target, −n / … otherwise (n the predictions gathered; a fixed ``adjust``
    when given); p stays in [0, 1]. The defaults are the reference's: ``AdaptiveAugment(0.6, 500 * 1000, 8)``
    as DualStyleGAN's ``finetune_stylegan.py`` builds it — adjust once 8 images have been seen (its
    ``--ada_every 256`` flag is never read), i.e. every step at 8 GPUs × batch 4. ``interval=4,
    interval_images=0`` is StyleGAN2-ADA's every 4 steps. Under ``torchrun`` the statistics are summed over ranks
    when p moves (the ranks must see equal batch sizes, as with DDP), so every rank keeps the same p.
    ``augment_kwargs`` (strengths, ``flavor``, ``blit``) go to :func:`augment`.
    """

    def __init__(self, target: float = 0.6, speed_kimg: float = 500, interval: int = 1, adjust: float | None = None,
                 p: float = 0.0, *, interval_images: int = 8, **augment_kwargs: Any):
        if interval < 1 or interval_images < 0 or speed_kimg <= 0:
            raise ValueError("ADA needs interval >= 1, interval_images >= 0 and speed_kimg > 0")
        _strengths({k: v for k, v in augment_kwargs.items() if k not in ("flavor", "blit")})
        if augment_kwargs.get("flavor", "paper") not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}")
        self.target, self.speed_kimg, self.interval, self.adjust = float(target), float(speed_kimg), interval, adjust
        self.interval_images = int(interval_images)
        self.p = min(max(float(p), 0.0), 1.0)
        self.augment_kwargs = augment_kwargs
        self.r_t = 0.0          # the last measured overfitting heuristic
        self._signs = None      # running sum of sign(D(real)) (a tensor on D's device: no sync per step)
        self._count = None      # running number of predictions (same)
        self._images = 0        # this rank's number of predictions since the last adjustment (host side)
        self._steps = 0         # steps since the last adjustment

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.p, **self.augment_kwargs)

    __call__ = augment

    @torch.no_grad()
    def accumulate(self, real_pred: torch.Tensor) -> None:
        """Add a micro-batch of D(augmented real) logits (one per image) to the statistics."""
        signs = torch.sign(real_pred.detach().float()).sum()
        count = torch.tensor(float(real_pred.numel()), device=real_pred.device)
        if self._signs is None:
            self._signs, self._count = signs, count
        else:
            self._signs = self._signs.to(signs.device) + signs
            self._count = self._count.to(signs.device) + count
        self._images += real_pred.numel()

    @staticmethod
    def _world() -> int:
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def step(self) -> dict[str, float]:
        """One training step has ended: adjust p when due. Returns {'ada_p', 'ada_rt'}."""
        self._steps += 1
        due = self._steps >= self.interval and self._images * self._world() >= self.interval_images
        if due and self._signs is not None:
            stats = torch.stack([self._signs, self._count.to(self._signs.device)])
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                if dist.get_backend() == "nccl":
                    stats = stats.to(torch.device("cuda", torch.cuda.current_device()))
                dist.all_reduce(stats)
            signs, count = stats.tolist()
            self.r_t = signs / max(count, 1.0)
            direction = 1.0 if self.r_t > self.target else -1.0   # as AdaptiveAugment: r_t == target moves down
            delta = self.adjust if self.adjust is not None else count / (self.speed_kimg * 1000)
            self.p = min(max(self.p + direction * delta, 0.0), 1.0)
            self._signs = self._count = None
            self._images = self._steps = 0
        return {"ada_p": self.p, "ada_rt": self.r_t}

    def update(self, real_pred: torch.Tensor) -> dict[str, float]:
        """``accumulate`` + ``step``: for a loop that calls D once per step."""
        self.accumulate(real_pred)
        return self.step()

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        return {"p": self.p, "r_t": self.r_t, "steps": self._steps, "images": self._images,
                "signs": None if self._signs is None else float(self._signs),
                "count": None if self._count is None else float(self._count)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.p, self.r_t, self._steps = float(state["p"]), float(state["r_t"]), int(state["steps"])
        if state.get("signs") is None:
            self._signs = self._count = None
            self._images = 0
        else:
            self._signs, self._count = torch.tensor(float(state["signs"])), torch.tensor(float(state["count"]))
            self._images = int(state.get("images", int(float(state["count"]) / self._world())))


__all__ = [
    "ADA",
    "DEFAULTS",
    "FLAVORS",
    "LUMA_AXIS",
    "SYM6",
    "AugmentParams",
    "affine_matrix",
    "apply_affine",
    "apply_color",
    "augment",
    "color_matrix",
    "draw_params",
]
