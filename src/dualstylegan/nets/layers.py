"""StyleGAN2 building blocks with the attribute names of the official checkpoints (the reference's
``model/stylegan/model.py``, from rosinality's stylegan2-pytorch ``model.py``)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ..ops import fused_leaky_relu, fuses_styled_conv, modulated_conv2d, styled_conv2d_fused, upfirdn2d

DEFAULT_BLUR = (1, 3, 3, 1)


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    """sqrt(2) * leaky_relu(x + bias, 0.2); owns ``bias``."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, inplace=inplace)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weight * lr_mul / sqrt(in), bias * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate: weight / sqrt(in * k * k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """FIR filter with the stored ``kernel`` buffer (multiplied by upsample_factor**2 at construction)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling of the ToRGB skip path: kernel * factor**2, pad (2, 1) for a 4-tap kernel."""

    def __init__(self, kernel: Sequence[float] = DEFAULT_BLUR, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


#: :meth:`ModulatedConv2d.weight_energy` by weight tensor (entries go with their tensors; nothing is kept on the
#: modules, which stay picklable and copyable as they were).
_ENERGY = WeakIdKeyDictionary()


class ModulatedConv2d(nn.Module):
    """Style-modulated (and demodulated) convolution (``ModulatedConv2d`` of ``model/stylegan/model.py``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)

    def weight_energy(self) -> torch.Tensor:
        """Σ over the kernel window of the raw weight squared, (Cout, Cin): the only term of the weight that the
        demodulation reads. Kept (:data:`_ENERGY`) while the weight is the same tensor with the same data, unchanged
        (its version counter), so an inference pass does not read the whole weight once more for it; computed
        without autograd."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)  # Module.to swaps .data under the same Parameter
        kept = _ENERGY.get(w)
        if kept is None or kept[0] != key:
            with torch.no_grad():
                kept = _ENERGY[w] = (key, w[0].pow(2).sum([2, 3]))
        return kept[1]

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        styles = self.modulation(style)
        weight = self.weight[0] * self.scale
        if self.upsample:
            return self.blur(modulated_conv2d(x, weight, styles, self.demodulate, up=2))
        if self.downsample:
            return modulated_conv2d(self.blur(x), weight, styles, self.demodulate, down=2)
        return modulated_conv2d(x, weight, styles, self.demodulate, padding=self.padding)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """x + weight · noise; ``inplace`` (honoured without autograd) when the caller owns x."""
        if noise is None:
            n, _, h, w = x.shape
            noise = x.new_empty(n, 1, h, w).normal_()
        if inplace and not torch.is_grad_enabled():
            return x.add_(self.weight * noise)
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise injection -> fused bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = DEFAULT_BLUR, demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if fuses_styled_conv(x):
            c = self.conv
            return styled_conv2d_fused(x, c.weight[0], c.modulation(style)[0], self.noise.weight, self.activate.bias,
                                       noise, scale=c.scale, demodulate=c.demodulate, padding=c.padding,
                                       blur=(c.blur.kernel, c.blur.pad) if c.upsample else None,
                                       energy=c.weight_energy())
        # The conv output is ours: without autograd, noise and activation may work on it in place.
        return self.activate(self.noise(self.conv(x, style), noise, inplace=True), inplace=True)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, + bias, + the upsampled previous skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[Blur if downsample] -> EqualConv2d -> [FusedLeakyReLU]; keys ``N.0.weight``, ``N.1.bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)
