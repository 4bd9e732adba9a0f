"""StyleGAN2 generator and discriminator: the intrinsic style path of DualStyleGAN (paper §3).

Module tree and state-dict keys of rosinality's stylegan2-pytorch ``model.py`` (the reference's
``model/stylegan/model.py``), so the official checkpoints load unchanged.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..ops import per_sample
from .config import StyleGANShape
from .layers import (DEFAULT_BLUR, ConstantInput, ConvLayer, EqualLinear, PixelNorm, StyledConv, ToRGB)


@dataclass
class GeneratorConfig(StyleGANShape):
    """A StyleGAN2 generator: resolution, channel table, style width and mapping depth."""

    style_dim: int = 512
    n_mlp: int = 8


def _row_of(row: Callable[[int], torch.Tensor], i: int) -> Callable[[int], torch.Tensor]:
    """Sample i's style rows."""
    return lambda k: row(k)[i:i + 1]


def _noise_of(noise: Sequence[torch.Tensor | None], i: int) -> list[torch.Tensor | None]:
    """Sample i's noise maps (maps shared by the batch stay shared)."""
    return [n if n is None or n.shape[0] == 1 else n[i:i + 1] for n in noise]


def _concat(parts: list) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The per-sample results of :meth:`Generator._blocks` as one batch (images, or (features, skip) pairs)."""
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts))
    return torch.cat(parts)


def mapping_network(style_dim: int, n_layers: int) -> nn.Sequential:
    """PixelNorm + n_layers x EqualLinear(lr_mul 0.01, fused lrelu); keys ``1`` … ``n_layers``."""
    layers: list[nn.Module] = [PixelNorm()]
    layers += [EqualLinear(style_dim, style_dim, lr_mul=0.01, activation="fused_lrelu") for _ in range(n_layers)]
    return nn.Sequential(*layers)


def map_rows(mapping: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Apply a mapping network to (B, 512) or row by row to (B, L, 512) (Z+ space)."""
    if z.ndim == 3:
        b, n, d = z.shape
        return mapping(z.reshape(b * n, d)).reshape(b, n, -1)
    return mapping(z)


class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout). ``forward`` returns ``(image, latent or None)``."""

    def __init__(self, config: GeneratorConfig | None = None, **kwargs):
        super().__init__()
        config = config or GeneratorConfig(**kwargs)
        self.config = config
        self.size, self.style_dim = config.size, config.style_dim
        self.log_size, self.num_layers, self.n_latent = config.log_size, config.num_layers, config.n_latent
        self.channels = config.channel_table
        blur = config.blur_kernel

        self.style = mapping_network(config.style_dim, config.n_mlp)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, config.style_dim, blur_kernel=blur)
        self.to_rgb1 = ToRGB(self.channels[4], config.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept for the official module tree
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2 ** res, 2 ** res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, config.style_dim, upsample=True,
                                         blur_kernel=blur))
            self.convs.append(StyledConv(out_channel, out_channel, 3, config.style_dim, blur_kernel=blur))
            self.to_rgbs.append(ToRGB(out_channel, config.style_dim, blur_kernel=blur))
            in_channel = out_channel

    # ----------------------------------------------------------------------------------------- latents
    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh noise maps, one per layer (drawn on CPU from ``generator`` for reproducibility)."""
        dev, dtype = self.input.input.device, self.input.input.dtype
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), generator=generator).to(dev, dtype)
                for i in range(self.num_layers)]

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def latent_plus(self, styles: Sequence[torch.Tensor], *, input_is_latent: bool = False,
                    z_plus_latent: bool = False, truncation: float = 1.0,
                    truncation_latent: torch.Tensor | float | None = None,
                    inject_index: int | None = None) -> torch.Tensor:
        """Intrinsic codes → the W+ latent (B, n_latent, 512): mapping (Z or Z+), truncation, style mixing."""
        if not input_is_latent:
            styles = [map_rows(self.style, s) if z_plus_latent else self.style(s) for s in styles]
        if truncation < 1:
            t_lat = 0.0 if truncation_latent is None else truncation_latent
            styles = [t_lat + truncation * (s - t_lat) for s in styles]
        n = self.n_latent
        if len(styles) < 2:
            s = styles[0]
            return s.unsqueeze(1).repeat(1, n, 1) if s.ndim < 3 else s
        if inject_index is None:
            inject_index = random.randint(1, n - 1)
        a, b = styles[0], styles[1]
        if a.ndim < 3:
            return torch.cat([a.unsqueeze(1).repeat(1, inject_index, 1),
                              b.unsqueeze(1).repeat(1, n - inject_index, 1)], 1)
        return torch.cat([a[:, :inject_index], b[:, inject_index:]], 1)

    def resolve_noise(self, noise: Sequence[torch.Tensor | None] | None, randomize_noise: bool):
        if noise is not None:
            return list(noise)
        return [None] * self.num_layers if randomize_noise else self.stored_noise()

    # ----------------------------------------------------------------------------------------- forward
    def synthesize(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None], *,
                   code: Callable[[int], torch.Tensor] | None = None,
                   refine: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                   features_at: int | None = None,
                   output_size: int | None = None,
                   per_sample_from: int = 0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The synthesis network on a W+ latent (B, n_latent, 512) → image.

        Layer k (0 = the 4² conv, then two convs per resolution; the ToRGB after layers 2j−1, 2j reads row 2j+1)
        reads the style row ``code(k)`` (default ``latent[:, k]``) and its conv output goes through
        ``refine(out, k)`` (default: unchanged). These two hooks are DualStyleGAN's extrinsic path (paper §3.2:
        color transforms blend the rows, ModRes blocks refine the features). The first ToRGB always reads
        ``latent[:, 1]``, as in the reference's ``model/dualstylegan.py``. With ``features_at``, returns
        ``(features, skip)`` after the resolution block that holds conv layer ``features_at`` instead. With
        ``output_size`` (a power of two from 4 to :attr:`size`), stops at that resolution's ToRGB and returns its
        skip image: the same tensor the full synthesis accumulates there, at a fraction of the cost (previews,
        video); the layers above it, their rows and noise maps are not used.

        Batches on the CPU without autograd and with fixed noise run the blocks from the first whose maps reach
        :func:`dualstylegan.ops.per_sample` size one sample at a time (not before layer ``per_sample_from``: a
        ``refine`` that mixes the batch must end before it). Those layers are convolved sample by sample anyway;
        this keeps a batch's activations at one sample's size there and leaves out a concatenation per layer.
        """
        stop = self.check_output_size(output_size)
        row = (lambda k: latent[:, k]) if code is None else code
        out = self.conv1(self.input(latent.shape[0]), row(0), noise=noise[0])
        out = out if refine is None else refine(out, 0)
        skip = self.to_rgb1(out, latent[:, 1])
        if stop == 4:
            return skip.contiguous()
        return self._blocks(out, skip, 1, row, refine, noise, features_at, stop, per_sample_from)

    def _blocks(self, out: torch.Tensor, skip: torch.Tensor, k: int, row, refine, noise, features_at, stop,
                per_sample_from: int):
        """:meth:`synthesize` from conv layer ``k`` (the first of a resolution block) on."""
        for j in range((k - 1) // 2, len(self.to_rgbs)):
            if (k >= per_sample_from and per_sample(out, (2 * out.shape[-2]) * (2 * out.shape[-1]))
                    and not torch.is_grad_enabled() and all(n is not None for n in noise[k:])):
                return _concat([self._blocks(out[i:i + 1], skip[i:i + 1], k, _row_of(row, i), refine,
                                             _noise_of(noise, i), features_at, stop, per_sample_from)
                                for i in range(out.shape[0])])
            conv_up, conv, to_rgb = self.convs[2 * j], self.convs[2 * j + 1], self.to_rgbs[j]
            out = conv_up(out, row(k), noise=noise[k])
            out = out if refine is None else refine(out, k)
            out = conv(out, row(k + 1), noise=noise[k + 1])
            out = out if refine is None else refine(out, k + 1)
            skip = to_rgb(out, row(k + 2), skip)
            k += 2
            if features_at is not None and k > features_at:
                return out.contiguous(), skip.contiguous()
            if stop is not None and skip.shape[-1] >= stop:
                return skip.contiguous()
        return skip.contiguous()

    def check_output_size(self, output_size: int | None) -> int | None:
        """``output_size`` as :meth:`synthesize` takes it: None (full size), or a power of two in 4 … :attr:`size`."""
        if output_size is None or int(output_size) == self.size:
            return None
        n = int(output_size)
        if n < 4 or n > self.size or n & (n - 1):
            raise ValueError(f"output_size must be a power of two from 4 to {self.size}, got {output_size}")
        return n

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | float | None = None,
                input_is_latent: bool = False, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True, z_plus_latent: bool = False, output_size: int | None = None):
        """The reference call; ``output_size`` stops the synthesis early (:meth:`synthesize`)."""
        latent = self.latent_plus(styles, input_is_latent=input_is_latent, z_plus_latent=z_plus_latent,
                                  truncation=truncation, truncation_latent=truncation_latent,
                                  inject_index=inject_index)
        image = self.synthesize(latent, self.resolve_noise(noise, randomize_noise), output_size=output_size)
        return image, (latent if return_latents else None)


# ------------------------------------------------------------------------------------------ discriminator
@dataclass
class DiscriminatorConfig(StyleGANShape):
    stddev_group: int = 4
    stddev_feat: int = 1


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[int] = DEFAULT_BLUR):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation. Returns logits (B, 1)."""

    def __init__(self, config: DiscriminatorConfig | None = None, **kwargs):
        super().__init__()
        config = config or DiscriminatorConfig(**kwargs)
        self.config = config
        channels = config.channel_table
        log_size = config.log_size
        convs: list[nn.Module] = [ConvLayer(3, channels[config.size], 1)]
        in_channel = channels[config.size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, config.blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = config.stddev_group, config.stddev_feat
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        y = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean([2, 3, 4], keepdim=True).squeeze(2)
        y = y.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, y], 1))
        return self.final_linear(out.view(b, -1))
