"""Feature nets for the losses: VGG19 features (the reference's ``model/vgg.py``) and LPIPS (lpips' net-lin, VGG16,
v0.1).

No weights ship with the package: the constructors build random VGG weights, and ``load_state_dict`` takes the
official key names — torchvision's ``vgg19`` / ``vgg16`` state dicts (``features.*``; ``classifier.*`` is
ignored) and the lpips package's ``weights/v0.1/vgg.pth`` (``lin0.model.1.weight`` … ``lin4.model.1.weight``).
Images are in [−1, 1] throughout.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from torch import nn

#: torchvision's VGG configurations (numbers: conv output channels; "M": 2×2 max-pool).
VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                    512, 512, 512, 512, "M")

#: ImageNet statistics used by torchvision's VGG weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_vgg_features(cfg: Sequence) -> nn.Sequential:
    """torchvision's ``vgg.features``: Conv3×3(pad 1) + ReLU per number, MaxPool2d(2, 2) per "M"."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


def relu_indices(cfg: Sequence, which: str) -> list[int]:
    """Index in ``features`` of the first ("first": relu1_1, relu2_1, …) or last ("last": relu1_2, relu2_2,
    relu3_3, …) ReLU of each of the five blocks."""
    idx, out, block = 0, [], []
    for v in cfg:
        if v == "M":
            out.append(block[0] if which == "first" else block[-1])
            block = []
            idx += 1
        else:
            block.append(idx + 1)
            idx += 2
    return out


class _VGGFeatures(nn.Module):
    """A torchvision VGG ``features`` stack returning the ReLU outputs at ``taps``."""

    def __init__(self, cfg: Sequence, taps: Sequence[int], requires_grad: bool = False):
        super().__init__()
        self.features = make_vgg_features(cfg)
        self.taps = list(taps)
        self.register_load_state_dict_pre_hook(_drop_classifier)
        if not requires_grad:
            self.requires_grad_(False)

    def _run(self, x: torch.Tensor, n: int) -> list[torch.Tensor]:
        outs = []
        last = self.taps[n - 1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
            if i == last:
                break
        return outs


def _drop_classifier(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                     error_msgs):
    """A full torchvision VGG state dict also holds ``classifier.*`` (the ImageNet head): not used here."""
    for key in [k for k in state_dict if k.startswith(prefix + "classifier.")]:
        del state_dict[key]


class VGG19Features(_VGGFeatures):
    """VGG19 features for the perceptual, feature-matching and contextual losses [model/vgg.py].

    ``forward(x)``: x (B, 3, H, W) in [−1, 1] is normalised by (x − m)/s with m = 2·mean − 1, s = 2·std (ImageNet
    statistics); returns ``[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]`` (64, 128, 256, 512, 512 channels at
    1, 1/2, 1/4, 1/8, 1/16 of the input size); ``n_layers`` < 5 stops early and returns the first ones.
    Keys ``features.N.weight/bias`` as in torchvision's ``vgg19`` (all 16 convs, also the unused last three).
    """

    LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def __init__(self, requires_grad: bool = False):
        super().__init__(VGG19_CFG, relu_indices(VGG19_CFG, "first"), requires_grad)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 2 - 1
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 2
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor, n_layers: int = 5) -> list[torch.Tensor]:
        if not 1 <= n_layers <= len(self.taps):
            raise ValueError(f"n_layers must be in 1..{len(self.taps)}, got {n_layers}")
        return self._run((x - self.mean) / self.std, n_layers)


class VGG16Features(_VGGFeatures):
    """VGG16 features as LPIPS uses them: ``[relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]``, no normalisation
    (LPIPS applies its own :class:`ScalingLayer`). Keys ``features.N.*`` as in torchvision's ``vgg16``."""

    LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")

    def __init__(self, requires_grad: bool = False):
        super().__init__(VGG16_CFG, relu_indices(VGG16_CFG, "last"), requires_grad)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(x, len(self.taps))


class ScalingLayer(nn.Module):
    """LPIPS v0.1 input scaling: (x − shift) / scale, x in [−1, 1]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """A 1×1 conv (no bias) to one channel, after dropout: keys ``model.1.weight`` (1, C, 1, 1)."""

    def __init__(self, chn_in: int, chn_out: int = 1, use_dropout: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout()] if use_dropout else []
        layers.append(nn.Conv2d(chn_in, chn_out, 1, stride=1, padding=0, bias=False))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length along channels: x / (‖x‖₂ + eps)."""
    norm = torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True))
    return x / (norm + eps)


def spatial_average(x: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    return x.mean([2, 3], keepdim=keepdim)


_LPIPS_SLICE = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")
_LPIPS_LINS = re.compile(r"^lins\.(\d+)\.(.*)$")


class LPIPS(nn.Module):
    """LPIPS "net-lin" with a VGG16 backbone (Zhang et al. 2018, v0.1), the reconstruction loss of
    facial destylization (paper §3.1, the reference's ``destylize.py``) and code refinement (§3.4,
    ``refine_exstyle.py``).

    ``forward(x, y)``: images (B, 3, H, W) in [−1, 1] → distance (B,) (``keepdim=True``: (B, 1, 1, 1), the lpips
    package's shape). Per layer: unit-normalise the features along channels, square the difference, weight the
    channels with ``linK`` (1×1 conv), average over space; sum over the five layers.

    State dict: ``net.features.*`` (torchvision ``vgg16`` keys under ``net.``) and ``lin0.model.1.weight`` …
    ``lin4.model.1.weight`` (the lpips package's ``vgg.pth``). :meth:`load_lin_state_dict` loads ``vgg.pth``
    alone, ``self.net.load_state_dict`` a torchvision vgg16 state dict. A state dict of the lpips package's own
    ``LPIPS`` module (``net.sliceK.N.*``, ``lins.K.*``, ``scaling_layer.*``) is also accepted.
    Until learned weights are loaded the linear weights are ones: the unweighted "baseline" distance.
    """

    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, use_dropout: bool = True, requires_grad: bool = False):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Features(requires_grad=requires_grad)
        for k, c in enumerate(self.CHANNELS):
            lin = NetLinLayer(c, use_dropout=use_dropout)
            nn.init.ones_(lin.model[-1].weight)
            self.add_module(f"lin{k}", lin)
        if not requires_grad:
            self.requires_grad_(False)
        self.register_load_state_dict_pre_hook(_rename_lpips_package_keys)

    @property
    def lins(self) -> list[NetLinLayer]:
        return [getattr(self, f"lin{k}") for k in range(len(self.CHANNELS))]

    def load_lin_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load the linear calibration weights (``vgg.pth``: exactly ``linK.model.1.weight`` for K = 0…4)."""
        expected = {f"lin{k}.{name}" for k, lin in enumerate(self.lins) for name in lin.state_dict()}
        got = set(state_dict)
        if got != expected:
            raise KeyError(f"expected the LPIPS linear weights {sorted(expected)}; missing "
                           f"{sorted(expected - got)}, unexpected {sorted(got - expected)}")
        result = self.load_state_dict(dict(state_dict), strict=False)
        assert not result.unexpected_keys

    def forward(self, x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        feats_x = self.net(self.scaling_layer(x))
        feats_y = self.net(self.scaling_layer(y))
        total = 0
        for lin, fx, fy in zip(self.lins, feats_x, feats_y):
            diff = (normalize_tensor(fx) - normalize_tensor(fy)) ** 2
            total = total + spatial_average(lin(diff), keepdim=True)
        return total if keepdim else total.reshape(-1)


def _rename_lpips_package_keys(module, state_dict, prefix, local_metadata, strict, missing_keys,
                               unexpected_keys, error_msgs):
    """Map the lpips package's own key names onto ours (its VGG slices keep torchvision's global indices)."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest in ("scaling_layer.shift", "scaling_layer.scale"):
            del state_dict[key]
            continue
        m = _LPIPS_SLICE.match(rest)
        if m:
            state_dict[f"{prefix}net.features.{m.group(1)}.{m.group(2)}"] = state_dict.pop(key)
            continue
        m = _LPIPS_LINS.match(rest)
        if m:  # lpips registers each linK twice (``linK`` and ``lins.K``); keep one
            value = state_dict.pop(key)
            state_dict.setdefault(f"{prefix}lin{m.group(1)}.{m.group(2)}", value)


__all__ = ["LPIPS", "NetLinLayer", "ScalingLayer", "VGG16Features", "VGG16_CFG", "VGG19Features", "VGG19_CFG",
           "make_vgg_features", "normalize_tensor", "relu_indices", "spatial_average"]
