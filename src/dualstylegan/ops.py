"""The custom ops of StyleGAN2: upfirdn2d, fused bias + leaky ReLU, modulated convolution.

Each op has a plain reference (``*_ref``: obviously correct, the computation of the reference code's
``model/stylegan/op/upfirdn2d.py``, ``fused_act.py`` and ``model/stylegan/model.py``'s ``ModulatedConv2d`` written
out literally) and a fast kernel with the same signature (``*_fast``); the op itself (``upfirdn2d``, …) dispatches
between them. ``tests/test_ops.py`` calls the fast kernels directly and checks that they agree with the references
on random inputs, forward and backward. The fast kernels are used unless ``use_reference_ops(True)`` is in effect
(the benchmark compares both).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
_REFERENCE = False


@contextlib.contextmanager
def use_reference_ops(enabled: bool = True) -> Iterator[None]:
    """Within this block every op runs its plain reference implementation."""
    global _REFERENCE
    old, _REFERENCE = _REFERENCE, enabled
    try:
        yield
    finally:
        _REFERENCE = old


def reference_ops_enabled() -> bool:
    return _REFERENCE


# --------------------------------------------------------------------------------------------- upfirdn2d
def upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                  pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad (negative crops), FIR filter (true convolution), downsample.

    x: (N, C, H, W); kernel: (kh, kw); the same ``up``, ``down`` and ``pad`` on both axes.
    """
    n, c, h, w = x.shape
    p0, p1 = pad
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None]
    x = F.conv2d(x.reshape(n * c, 1, *x.shape[2:]), k)
    x = x.reshape(n, c, *x.shape[2:])
    return x[:, :, ::down, ::down]


def upfirdn2d_fast(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                   pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """:func:`upfirdn2d_ref` as one depthwise convolution (``up == 1``) or one depthwise transposed convolution
    (zero insertion + true convolution is a transposed convolution with the unflipped kernel), without the
    zero-inserted and padded temporaries. Any ``up``, ``down``, ``pad`` and kernel shape."""
    if up == 1:
        return _fir_filter(x, kernel, down, pad)
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, kh, kw)
    # The transposed convolution gives the full convolution of the zero-inserted input (kernel − 1 samples beyond
    # each end, and no trailing up − 1 zeros): crop (or, where negative, zero-pad) it to the reference's window.
    left_h, right_h = kh - 1 - p0, kh - 1 - (up - 1) - p1
    left_w, right_w = kw - 1 - p0, kw - 1 - (up - 1) - p1
    if min(left_h, right_h, left_w, right_w) >= 0 and left_h == right_h and left_w == right_w:
        out = F.conv_transpose2d(x, weight, stride=up, padding=(left_h, left_w), groups=c)
    else:
        out = F.pad(F.conv_transpose2d(x, weight, stride=up, groups=c), [-left_w, -right_w, -left_h, -right_h])
    return out[:, :, ::down, ::down] if down > 1 else out


def _fir_filter(x: torch.Tensor, kernel: torch.Tensor, down: int, pad: tuple[int, int],
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`upfirdn2d_fast` without up-sampling: one depthwise convolution (adding ``bias`` per channel)."""
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    if p0 == p1 and p0 >= 0:
        padding = p0
    else:
        x = F.pad(x, [p0, p1, p0, p1])
        padding = 0
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, kh, kw)
    return F.conv2d(x, weight, bias, stride=down, padding=padding, groups=c)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample, pad, FIR filter, downsample: :func:`upfirdn2d_fast`, or :func:`upfirdn2d_ref` inside
    :func:`use_reference_ops`."""
    if _REFERENCE:
        return upfirdn2d_ref(x, kernel, up, down, pad)
    return upfirdn2d_fast(x, kernel, up, down, pad)


# ------------------------------------------------------------------------------------ fused bias + lrelu
def fused_leaky_relu_ref(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                         scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """scale * leaky_relu(x + bias), bias broadcast over dim 1. (``inplace`` is a hint the reference ignores.)"""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def fused_leaky_relu_fast(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                          scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """:func:`fused_leaky_relu_ref` in place, for inference (autograd off): on ``x`` itself when ``inplace`` (the
    caller owns x), else on one fresh buffer."""
    if torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
        raise RuntimeError("fused_leaky_relu_fast works in place and has no backward; use fused_leaky_relu")
    if not inplace:
        x = x.clone(memory_format=torch.preserve_format)
    if bias is not None:
        x.add_(bias.view(1, -1, *([1] * (x.ndim - 2))))
    return F.leaky_relu_(x, negative_slope).mul_(scale)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """Same as :func:`fused_leaky_relu_ref`: :func:`fused_leaky_relu_fast` when autograd is off, the reference
    (whose backward autograd derives) when it is on or inside :func:`use_reference_ops`."""
    if _REFERENCE or torch.is_grad_enabled():
        return fused_leaky_relu_ref(x, bias, negative_slope, scale)
    return fused_leaky_relu_fast(x, bias, negative_slope, scale, inplace)


# ------------------------------------------------------------------------------------ modulated conv
def modulated_conv2d_ref(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                         up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """StyleGAN2 modulated convolution, weight modulation as a grouped conv over the batch.

    x: (N, Cin, H, W); weight: (Cout, Cin, k, k), already scaled; styles: (N, Cin).
    ``up=2``: transposed conv stride 2 (no blur here); ``down=2``: conv stride 2 (blur is the caller's).
    """
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    wgt = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        wgt = wgt * torch.rsqrt(wgt.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
    x = x.reshape(1, n * cin, h, w)
    if up > 1:
        wgt = wgt.transpose(1, 2).reshape(n * cin, cout, kh, kw)
        out = F.conv_transpose2d(x, wgt, stride=up, padding=0, groups=n)
    else:
        out = F.conv2d(x, wgt.reshape(n * cout, cin, kh, kw), stride=down, padding=padding, groups=n)
    return out.reshape(n, cout, *out.shape[2:])


def _channels_last(x: torch.Tensor) -> bool:
    """Channels-last pays on the CPU (oneDNN); on an H200 it cost 15–40 % in float32, bfloat16 and float16."""
    return x.device.type == "cpu"


def _modulate_activations(x: torch.Tensor) -> bool:
    """For a batch: modulate the activations and share one convolution (CPU; float32 on GPUs, 1.17× at batch 4
    on an H200), or one grouped convolution of per-sample modulated weights as the reference does (half
    precision on GPUs: scaling the activations before the convolution costs 4–10× more rounding error there)."""
    return x.device.type == "cpu" or x.dtype not in (torch.float16, torch.bfloat16)


#: On the CPU a batch whose maps have at least this many pixels is convolved sample by sample with modulated
#: weights: the layers there are bound by memory traffic, and modulating the activations adds two passes over them.
#: Measured on a 2-core AMD EPYC (1 thread, ms per image at batch 4, shared conv vs per sample vs batch 1):
#: 1024² 32→32 3×3 393 / 331 / 248; 1024² ToRGB 102 / 40 / 33; 512² 64→32 up 295 / 266 / 186;
#: 32² 512→512 46 / 55 / 56; 16² 512→512 up 16 / 28 / 25 (below 64² the shared convolution wins).
PER_SAMPLE_PIXELS = 64 * 64


def per_sample(x: torch.Tensor, pixels: int | None = None) -> bool:
    """Whether a batch ``x`` on the CPU whose maps have ``pixels`` pixels (default: x's own) is best convolved one
    sample at a time (:data:`PER_SAMPLE_PIXELS`). Never inside :func:`use_reference_ops` (whole batches, as the
    reference computes them)."""
    pixels = x.shape[2] * x.shape[3] if pixels is None else pixels
    return not _REFERENCE and x.device.type == "cpu" and x.shape[0] > 1 and pixels >= PER_SAMPLE_PIXELS


def _modulated_conv2d_one(x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor, demodulate: bool, up: int,
                          down: int, padding: int, *, scale: float = 1.0, gain: float = 1.0,
                          energy: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One sample: the weight modulated and demodulated in one pass, written in the layout the convolution reads.

    The demodulation needs no modulated weight: Σ_{i,k} (c·W_oik·s_i)² = c²·Σ_i s_i²·Σ_k W_oik², one
    matrix-vector product (``energy`` is Σ_k W_oik² when the caller keeps it). The weight is written once, as the
    product of W and the (Cout, Cin) matrix ``gain``·c·d_o·s_i (c: the equalized learning rate's ``scale``),
    straight into the channels-last layout (transposed for an up-sampling layer) that oneDNN's convolution would
    otherwise copy it into: one pass over a 512×512×3×3 weight instead of six (on the 2-core EPYC, 40–60 ms of a
    1024² pass). ``bias`` is added by the convolution (not for an up-sampling one).
    """
    cout, cin = weight.shape[:2]
    s = style * (scale * gain)  # (× 1.0 is exact: callers without scale and gain get the same bits)
    if demodulate:
        e = weight.pow(2).sum([2, 3]) if energy is None else energy
        d = torch.rsqrt(e @ style.pow(2) * scale ** 2 + 1e-8)
        m = d[:, None] * s[None, :]
    else:
        m = s[None, :].expand(cout, cin)
    w, m = (weight.transpose(0, 1), m.t()) if up > 1 else (weight, m)  # conv_transpose2d reads (Cin, Cout, k, k)
    if torch.is_grad_enabled() and (w.requires_grad or m.requires_grad):
        wgt = w * m[:, :, None, None]  # autograd: no out= (the convolution copies it into its layout)
    else:
        cl = torch.channels_last if _channels_last(x) else torch.contiguous_format
        wgt = torch.empty(w.shape, dtype=x.dtype, device=x.device, memory_format=cl)
        torch.mul(w, m[:, :, None, None], out=wgt)
    if up > 1:
        if bias is not None:
            raise ValueError("an up-sampling modulated convolution adds no bias (it is blurred after)")
        if _by_phases(x):
            return conv_transpose2d_phases(x, wgt.transpose(0, 1), up)
        return F.conv_transpose2d(x, wgt, stride=up, padding=0)
    return F.conv2d(x, wgt, bias, stride=down, padding=padding)


#: Input sides whose up-sampling transposed convolution runs as :func:`conv_transpose2d_phases` on the CPU, by the
#: CPU capability torch reports (:func:`torch.backends.cpu.get_cpu_capability`; oneDNN picks kernels of the same
#: instruction set). Measured on the 2-core AMD EPYC, ms per layer inside a 1024² pass (direct / phases), with
#: oneDNN's AVX2 kernels: 64² 512→256 47 / 51, 128² 256→128 89 / 52, 256² 128→64 96 / 62, 512² 64→32 101 / 66;
#: with its AVX-512 kernels: 64² 46 / 50, 128² 73 / 59, 256² 92 / 81, 512² 60 / 71. Other capabilities take
#: ``"default"``.
PHASE_SIDES = {"AVX2": (128, 256, 512), "AVX512": (128, 256), "default": (128, 256)}


def phase_sides() -> tuple[int, ...]:
    """This machine's row of :data:`PHASE_SIDES`."""
    sides = PHASE_SIDES.get(torch.backends.cpu.get_cpu_capability())
    return PHASE_SIDES["default"] if sides is None else sides


def _by_phases(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    sides = phase_sides()
    return x.shape[-1] in sides and x.shape[-2] in sides


def conv_transpose2d_phases(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight.transpose(0, 1), stride=stride)`` (no padding) as ``stride²`` plain
    convolutions, one per output phase, written into one channels-last output.

    ``weight`` is (Cout, Cin, kh, kw) with kh, kw ≥ stride. Output row ``stride·m + a`` receives only the taps
    ``a, a + stride, …`` of the kernel: y[s·m + a] = Σ_j x[m − j]·w[a + s·j], a correlation of x with those taps
    reversed, padded by their number − 1 on both sides. oneDNN's plain convolutions run at 80–100 GMAC/s on the
    2-core EPYC where its transposed ones reach 30–50 (see :data:`PHASE_SIDES`).
    """
    n, _, h, w = x.shape
    cout, _, kh, kw = weight.shape
    if kh < stride or kw < stride:
        raise ValueError(f"conv_transpose2d_phases needs a kernel of at least {stride}×{stride}, got {kh}×{kw}")
    out = torch.empty((n, cout, (h - 1) * stride + kh, (w - 1) * stride + kw), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    for a in range(stride):
        for b in range(stride):
            taps = torch.flip(weight[:, :, a::stride, b::stride], [2, 3])
            out[:, :, a::stride, b::stride] = F.conv2d(x, taps, padding=(taps.shape[2] - 1, taps.shape[3] - 1))
    return out


def modulated_conv2d_fast(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                          up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """Same as :func:`modulated_conv2d_ref`, in channels-last memory format on the CPU.

    One sample: the weight is modulated (a plain conv, no pass over the activations). Several samples: the
    activations are modulated instead, so the whole batch shares one convolution and the demodulation becomes one
    matrix product over the styles — except for large maps on the CPU (:data:`PER_SAMPLE_PIXELS`), convolved
    sample by sample with modulated weights.
    """
    if _channels_last(x):
        x = x.contiguous(memory_format=torch.channels_last)
    styles = styles.to(x.dtype)
    if per_sample(x):
        return torch.cat([modulated_conv2d_fast(x[i:i + 1], weight, styles[i:i + 1], demodulate, up, down, padding)
                          for i in range(x.shape[0])])
    if x.shape[0] == 1:
        return _modulated_conv2d_one(x, weight, styles[0], demodulate, up, down, padding)
    x = x * styles[:, :, None, None]
    if up > 1:
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=0)
    else:
        out = F.conv2d(x, weight, stride=down, padding=padding)
    if demodulate:
        # sum over (in, kh, kw) of (W * s)^2 = (s^2) @ sum_{kh,kw} W^2
        dcoefs = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum([2, 3]).t() + 1e-8)  # (N, Cout)
        out = out * dcoefs[:, :, None, None]
    return out


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """Modulated convolution: :func:`modulated_conv2d_fast`, except for batches in half precision on GPUs (see
    :func:`_modulate_activations`) and inside :func:`use_reference_ops`, which take :func:`modulated_conv2d_ref`."""
    if _REFERENCE or (x.shape[0] > 1 and not _modulate_activations(x)):
        return modulated_conv2d_ref(x, weight, styles.to(x.dtype), demodulate, up, down, padding)
    return modulated_conv2d_fast(x, weight, styles, demodulate, up, down, padding)


# ------------------------------------------------------------------------------------ styled conv (inference)
def fuses_styled_conv(x: torch.Tensor) -> bool:
    """Whether a StyledConv on ``x`` runs as :func:`styled_conv2d_fused`: one sample on the CPU, autograd off, not
    inside :func:`use_reference_ops`."""
    return not _REFERENCE and x.device.type == "cpu" and x.shape[0] == 1 and not torch.is_grad_enabled()


def styled_conv2d_fused(x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor, noise_strength: torch.Tensor,
                        bias: torch.Tensor, noise: torch.Tensor | None, *, scale: float, demodulate: bool = True,
                        padding: int = 0, blur: tuple[torch.Tensor, tuple[int, int]] | None = None,
                        energy: torch.Tensor | None = None) -> torch.Tensor:
    """``StyledConv`` of the reference's ``model/stylegan/model.py`` for one sample without autograd: modulated
    convolution of ``x`` (1, Cin, H, W) with the raw ``weight`` (Cout, Cin, k, k) times ``scale`` and the modulation
    ``style`` (Cin,) — up-sampling when ``blur = (kernel, pad)`` is given, a transposed convolution and that blur —,
    plus ``noise_strength``·``noise``, then √2·leaky_relu(· + ``bias``, 0.2). ``noise`` None draws it as
    ``NoiseInjection`` does, from the convolution's output (the same random numbers).

    √2·lrelu(y + b) = lrelu(√2·y + √2·b) (the leaky ReLU is positively homogeneous): the gain √2 and ``scale`` go
    into the modulation the weight is written with (:func:`_modulated_conv2d_one`; no scaled copy of the weight),
    the bias into the convolution (or into the blur after an up-sampling one). What is left is one in-place add of
    the noise map and one in-place leaky ReLU: two passes over the output instead of four (on the 2-core EPYC,
    ~3 ms each at 1024²). The reference is ``StyledConv``'s modules under :func:`use_reference_ops`
    (``tests/test_ops.py``).
    """
    if _channels_last(x):
        x = x.contiguous(memory_format=torch.channels_last)
    style = style.to(x.dtype)
    b = (bias * SQRT2).to(x.dtype)
    if blur is None:
        out = _modulated_conv2d_one(x, weight, style, demodulate, 1, 1, padding, scale=scale, gain=SQRT2,
                                    energy=energy, bias=b)
    else:
        kernel, pad = blur
        out = _fir_filter(_modulated_conv2d_one(x, weight, style, demodulate, 2, 1, 0, scale=scale, gain=SQRT2,
                                                energy=energy), kernel, 1, pad, b)
    if noise is None:
        noise = out.new_empty(1, 1, *out.shape[2:]).normal_()
    out.add_(noise_strength * SQRT2 * noise)
    return F.leaky_relu_(out, 0.2)
