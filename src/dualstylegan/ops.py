"""The custom ops of StyleGAN2: upfirdn2d, fused bias + leaky ReLU, modulated convolution.

Each op has a plain reference (``*_ref``: obviously correct, follows SPEC.md §1 literally) and a fast path with
the same signature. ``tests/test_ops.py`` checks that they agree on random inputs, forward and backward.
The fast paths are used unless ``use_reference_ops(True)`` is in effect (the benchmark compares both).
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


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Same as :func:`upfirdn2d_ref`, as one depthwise (transposed) convolution without temporaries."""
    if _REFERENCE:
        return upfirdn2d_ref(x, kernel, up, down, pad)
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    if up == 1:
        if p0 == p1 and p0 >= 0:
            padding = p0
        else:
            x = F.pad(x, [p0, p1, p0, p1])
            padding = 0
        weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, kh, kw)
        return F.conv2d(x, weight, stride=down, padding=padding, groups=c)
    # Zero insertion + true convolution is a transposed convolution with the unflipped kernel whose padding
    # crops (kernel - 1 - p0) samples on each side; other pads (never used by the networks) take the reference.
    crop = kh - 1 - p0
    if kh != kw or crop < 0 or p1 - p0 + up - 1 != 0:
        return upfirdn2d_ref(x, kernel, up, down, pad)
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, kh, kw)
    out = F.conv_transpose2d(x, weight, stride=up, padding=crop, groups=c)
    return out[:, :, ::down, ::down] if down > 1 else out


# ------------------------------------------------------------------------------------ fused bias + lrelu
def fused_leaky_relu_ref(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                         scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """scale * leaky_relu(x + bias), bias broadcast over dim 1. (``inplace`` is a hint the reference ignores.)"""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """Same as :func:`fused_leaky_relu_ref`. Without autograd it works in place: on ``x`` itself when
    ``inplace`` (the caller owns x), else on one fresh buffer."""
    if _REFERENCE or torch.is_grad_enabled():
        return fused_leaky_relu_ref(x, bias, negative_slope, scale)
    if not inplace:
        x = x.clone(memory_format=torch.preserve_format)
    if bias is not None:
        x.add_(bias.view(1, -1, *([1] * (x.ndim - 2))))
    return F.leaky_relu_(x, negative_slope).mul_(scale)


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


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """Same as :func:`modulated_conv2d_ref`, in channels-last memory format on the CPU.

    One sample: the weight is modulated (a plain conv, no pass over the activations). Several samples:
    the activations are modulated instead, so the whole batch shares one convolution (except in half precision
    on GPUs, see :func:`_modulate_activations`).
    """
    if _REFERENCE:
        return modulated_conv2d_ref(x, weight, styles, demodulate, up, down, padding)
    if _channels_last(x):
        x = x.contiguous(memory_format=torch.channels_last)
    styles = styles.to(x.dtype)
    if x.shape[0] > 1 and not _modulate_activations(x):
        return modulated_conv2d_ref(x, weight, styles, demodulate, up, down, padding)
    if x.shape[0] == 1:
        wgt = weight * styles[0][None, :, None, None]
        if demodulate:
            wgt = wgt * torch.rsqrt(wgt.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
        if up > 1:
            return F.conv_transpose2d(x, wgt.transpose(0, 1), stride=up, padding=0)
        return F.conv2d(x, wgt, stride=down, padding=padding)
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
