"""The pSp encoder and the IR-SE50 identity network (the reference's ``model/encoder/psp.py``,
``model/encoder/encoders/psp_encoders.py`` and ``model/encoder/encoders/model_irse.py``).

* :class:`GradualStyleEncoder` — pSp's feature-pyramid encoder (Richardson et al. 2021) over an IR-SE50 body:
  a face at 256² → one 512-d code per style row. DualStyleGAN uses it to get the **intrinsic** style code of a
  content face (Z+ codes in ``encoder.pt``, W+ codes in ``encoder_wplus.pt``) and, during destylization, to
  initialise the extrinsic code of a style image.
* :class:`PSPEncoder` — the encoder plus ``latent_avg`` and the file-level options (``opts`` of the official file).
* :class:`IdentityNet` (alias :class:`Backbone`) — the ArcFace IR-SE50 of ``model_ir_se50.pth``: a face at 112² →
  an L2-normalised 512-d identity embedding (the ID loss).

Module attribute names follow the official files, so their state dicts load unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import ENCODER_INPUT_SIZE  # input resolution of the pSp encoder; the pipeline average-pools to it
from .config import NetConfig
from .layers import EqualLinear

STYLE_DIM = 512
#: First style row fed by the middle (32²) and by the fine (64²) pyramid level, as in pSp.
COARSE_END = 3
MIDDLE_END = 7


# --------------------------------------------------------------------------------------------------------------
# IR / IR-SE building blocks [pSp models/encoders/helpers.py]

class Bottleneck(NamedTuple):
    """One residual unit of the body: input channels, output channels (``depth``), stride."""

    in_channel: int
    depth: int
    stride: int


def get_block(in_channel: int, depth: int, num_units: int, stride: int = 2) -> list[Bottleneck]:
    """A stage: the first unit changes channels and strides, the rest keep them."""
    return [Bottleneck(in_channel, depth, stride)] + [Bottleneck(depth, depth, 1) for _ in range(num_units - 1)]


#: Units per stage (channels 64, 128, 256, 512) for each supported depth.
STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


OFFICIAL_WIDTHS = (64, 128, 256, 512)


def get_blocks(num_layers: int, widths: Sequence[int] | None = None,
               units: Sequence[int] | None = None) -> list[list[Bottleneck]]:
    """The four stages of an IR(-SE) body: 50 layers → 64×3, 128×4, 256×14, 512×3 units.

    ``widths`` / ``units`` replace the official stage channels / unit counts (narrow test models).
    """
    if units is None:
        if num_layers not in STAGE_UNITS:
            raise ValueError(f"num_layers must be one of {sorted(STAGE_UNITS)}, got {num_layers}")
        units = STAGE_UNITS[num_layers]
    w = tuple(widths or OFFICIAL_WIDTHS)
    if len(w) != 4 or len(units) != 4 or min(w) < 16 or min(units) < 1:
        raise ValueError(f"an IR body needs 4 stage widths >= 16 and 4 unit counts >= 1, got {w}, {tuple(units)}")
    chans = (w[0],) + w
    return [get_block(chans[i], chans[i + 1], units[i]) for i in range(4)]


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


def l2_norm(x: torch.Tensor, axis: int = 1) -> torch.Tensor:
    return torch.div(x, torch.norm(x, 2, axis, True))


class SEModule(nn.Module):
    """Squeeze-and-excitation: x · sigmoid(fc2(relu(fc1(avgpool(x))))), 1×1 convs without bias."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * w


class Subsample(nn.Module):
    """The identity shortcut of ``model_irse.py``'s units, ``MaxPool2d(1, stride)``: a max over one sample is that
    sample, so this is every ``stride``-th row and column (a view; the reference's pooling copied the map, 30 ms
    of a 256² encoder pass on the 2-core EPYC)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]


def _shortcut(in_channel: int, depth: int, stride: int) -> nn.Module:
    if in_channel == depth:
        return Subsample(stride)
    return nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))


class bottleneck_IR(nn.Module):  # noqa: N801 (the official class name)
    """IR unit: BN → conv3×3 → PReLU → conv3×3 (stride) → BN, plus the shortcut."""

    se = False  # squeeze-and-excitation at the end of the residual branch (``bottleneck_IR_SE``)

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if self.se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class bottleneck_IR_SE(bottleneck_IR):  # noqa: N801 (the official class name)
    """IR-SE unit (``model_irse.py``'s ``bottleneck_IR_SE``): the IR residual, then squeeze-and-excitation
    (reduction 16)."""

    se = True


UNIT_MODULES = {"ir": bottleneck_IR, "ir_se": bottleneck_IR_SE}


def _unit_module(mode: str) -> type[nn.Module]:
    if mode not in UNIT_MODULES:
        raise ValueError(f"mode must be one of {sorted(UNIT_MODULES)}, got {mode!r}")
    return UNIT_MODULES[mode]


def input_layer(input_nc: int = 3, channels: int = 64) -> nn.Sequential:
    """Conv 3×3 (no bias) → BN → PReLU, 64 channels; keys ``0.weight``, ``1.*``, ``2.weight``."""
    return nn.Sequential(nn.Conv2d(input_nc, channels, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(channels),
                         nn.PReLU(channels))


def make_body(num_layers: int, mode: str, widths: Sequence[int] | None = None,
              units: Sequence[int] | None = None) -> tuple[nn.Sequential, list[int]]:
    """The residual body and the index of the last unit of each stage (6, 20, 23 for 50 layers)."""
    unit = _unit_module(mode)
    modules, stage_ends = [], []
    for block in get_blocks(num_layers, widths, units):
        for b in block:
            modules.append(unit(b.in_channel, b.depth, b.stride))
        stage_ends.append(len(modules) - 1)
    return nn.Sequential(*modules), stage_ends


# --------------------------------------------------------------------------------------------------------------
# IR-SE50 identity network [pSp models/encoders/model_irse.py]

@dataclass
class IdentityNetConfig(NetConfig):
    """ArcFace IR-SE backbone of ``model_ir_se50.pth``."""

    input_size: int = 112
    num_layers: int = 50
    mode: str = "ir_se"
    drop_ratio: float = 0.6
    affine: bool = True

    def __post_init__(self):
        if self.input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {self.input_size}")
        _unit_module(self.mode)
        get_blocks(self.num_layers)


class IdentityNet(nn.Module):
    """Face → L2-normalised 512-d identity embedding (``model_irse.py``'s ``Backbone``, the ID loss's feature net).

    Input: a face crop at ``input_size``² in [−1, 1] (the ID loss crops [35:223, 32:220] of a 256² image and
    average-pools it to 112²). Keys ``input_layer.*``, ``output_layer.*``, ``body.*`` as in ``model_ir_se50.pth``.
    """

    def __init__(self, config: IdentityNetConfig | None = None, **kwargs):
        super().__init__()
        config = config or IdentityNetConfig(**kwargs)
        self.config = config
        self.input_layer = input_layer(3)
        spatial = config.input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(config.drop_ratio),
            Flatten(),
            nn.Linear(512 * spatial * spatial, 512),
            nn.BatchNorm1d(512, affine=config.affine),
        )
        self.body, _ = make_body(config.num_layers, config.mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        x = self.body(x)
        x = self.output_layer(x)
        return l2_norm(x)


class Backbone(IdentityNet):
    """The official constructor's arguments, ``Backbone(input_size, num_layers, mode, drop_ratio, affine)``; the
    defaults are those of ``model_ir_se50.pth`` (the official class defaults to mode 'ir', drop_ratio 0.4)."""

    def __init__(self, input_size: int = 112, num_layers: int = 50, mode: str = "ir_se", drop_ratio: float = 0.6,
                 affine: bool = True):
        super().__init__(IdentityNetConfig(input_size=input_size, num_layers=num_layers, mode=mode,
                                           drop_ratio=drop_ratio, affine=affine))


# --------------------------------------------------------------------------------------------------------------
# pSp encoders [pSp models/encoders/psp_encoders.py]

class GradualStyleBlock(nn.Module):
    """A style head: log2(spatial) × (conv 3×3 stride 2 + LeakyReLU(0.01)) down to 1×1, then EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int, style_dim: int | None = None):
        super().__init__()
        self.out_c = out_c
        self.spatial = spatial
        num_pools = int(math.log2(spatial))
        modules: list[nn.Module] = []
        for i in range(num_pools):
            modules += [nn.Conv2d(in_c if i == 0 else out_c, out_c, kernel_size=3, stride=2, padding=1),
                        nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = EqualLinear(out_c, style_dim or out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.linear(x.reshape(-1, self.out_c))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=True) upsampling of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class GradualStyleEncoder(nn.Module):
    """pSp's encoder (``psp_encoders.py``): image (B, input_nc, 256, 256) in [−1, 1] → codes (B, n_styles, 512).

    Feature taps at the end of stages 2, 3, 4 (c1 64², c2 32², c3 16²); a feature pyramid p2 = up(c3) +
    latlayer1(c2), p1 = up(p2) + latlayer2(c1). Rows [0, 3) come from c3 ("coarse"), [3, 7) from p2 ("middle"),
    [7, n_styles) from p1 ("fine"). For 50 layers the taps are body units 6, 20, 23 as in pSp.
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, n_styles: int = 18,
                 widths: Sequence[int] | None = None, units: Sequence[int] | None = None, head_channels: int = 512):
        super().__init__()
        w = tuple(widths or OFFICIAL_WIDTHS)
        self.input_layer = input_layer(input_nc, w[0])
        self.body, self.taps = make_body(num_layers, mode, w, units)
        self.taps = self.taps[1:]  # c1, c2, c3
        self.style_count = n_styles
        self.coarse_ind = min(COARSE_END, n_styles)
        self.middle_ind = min(MIDDLE_END, n_styles)
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            spatial = 16 if i < self.coarse_ind else 32 if i < self.middle_ind else 64
            self.styles.append(GradualStyleBlock(w[3], head_channels, spatial, STYLE_DIM))
        self.latlayer1 = nn.Conv2d(w[2], w[3], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(w[1], w[3], kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        feats = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats.append(x)
        c1, c2, c3 = feats

        latents = [self.styles[j](c3) for j in range(self.coarse_ind)]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(self.coarse_ind, self.middle_ind)]
        if self.middle_ind < self.style_count:
            p1 = _upsample_add(p2, self.latlayer2(c1))
            latents += [self.styles[j](p1) for j in range(self.middle_ind, self.style_count)]
        return torch.stack(latents, dim=1)


class BackboneEncoderUsingLastLayerIntoW(nn.Module):
    """pSp's single-code variant: body → global average pool → EqualLinear → (B, 512) (one W code)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3):
        super().__init__()
        self.input_layer = input_layer(input_nc)
        self.output_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = EqualLinear(512, 512, lr_mul=1)
        self.body, _ = make_body(num_layers, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_pool(self.body(self.input_layer(x)))
        return self.linear(x.reshape(-1, 512))


class BackboneEncoderUsingLastLayerIntoWPlus(nn.Module):
    """pSp's last-layer W+ variant: body → BN, pool 7², Linear → EqualLinear → (B, n_styles, 512)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, n_styles: int = 18):
        super().__init__()
        self.n_styles = n_styles
        self.input_layer = input_layer(input_nc)
        self.output_layer_2 = nn.Sequential(nn.BatchNorm2d(512), nn.AdaptiveAvgPool2d((7, 7)), Flatten(),
                                            nn.Linear(512 * 7 * 7, 512))
        self.linear = EqualLinear(512, 512 * n_styles, lr_mul=1)
        self.body, _ = make_body(num_layers, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_layer_2(self.body(self.input_layer(x)))
        return self.linear(x).reshape(-1, self.n_styles, 512)


ENCODER_TYPES = ("GradualStyleEncoder", "BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus")


@dataclass
class EncoderConfig(NetConfig):
    """What an official ``encoder.pt`` / ``encoder_wplus.pt`` is (its ``opts``) plus the code space.

    ``n_styles`` defaults to 2·log2(output_size) − 2 (18 at 1024², as the reference computes it). ``z_plus``:
    the codes are Z+ codes (``encoder.pt``; decode with ``z_plus_latent=True``) or W+ codes
    (``encoder_wplus.pt``; decode with ``input_is_latent=True``) — not recorded in ``opts``.
    """

    encoder_type: str = "GradualStyleEncoder"
    num_layers: int = 50
    mode: str = "ir_se"
    input_nc: int = 3
    output_size: int = 1024
    n_styles: int | None = None
    start_from_latent_avg: bool = False
    learn_in_w: bool = False
    z_plus: bool = True
    # Narrow test models only (stored as extra ``opts`` fields; absent from the official files):
    widths: tuple[int, ...] | None = None  # the four IR stage widths, official (64, 128, 256, 512)
    units: tuple[int, ...] | None = None   # units per stage, official from num_layers
    head_channels: int = 512               # width of the style heads' convs

    def __post_init__(self):
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"unknown pSp encoder_type {self.encoder_type!r}; expected one of {ENCODER_TYPES}")
        if self.output_size < 8 or self.output_size & (self.output_size - 1):
            raise ValueError(f"output_size must be a power of two >= 8, got {self.output_size}")
        if self.n_styles is None:
            self.n_styles = 2 * int(math.log2(self.output_size)) - 2
        _unit_module(self.mode)
        self.widths = tuple(self.widths) if self.widths is not None else None
        self.units = tuple(self.units) if self.units is not None else None
        get_blocks(self.num_layers, self.widths, self.units)

    @property
    def single_code(self) -> bool:
        """Whether the encoder outputs one (B, 512) code instead of (B, n_styles, 512)."""
        return self.encoder_type == "BackboneEncoderUsingLastLayerIntoW"

    @classmethod
    def from_opts(cls, opts: Mapping[str, Any] | Any, z_plus: bool | None = None) -> "EncoderConfig":
        """Read the official ``opts`` (a dict or an argparse Namespace), ignoring the training-only fields.

        ``output_size`` defaults to 1024 when absent and ``n_styles`` is derived from it, as the reference does.
        ``z_plus``: pass False for ``encoder_wplus.pt``; when None, an explicit ``z_plus``/``z_plus_latent``
        field of opts is used if present, else True.
        """
        if not isinstance(opts, Mapping):
            opts = vars(opts)
        defaults = cls()
        if z_plus is None:
            z_plus = bool(opts.get("z_plus", opts.get("z_plus_latent", defaults.z_plus)))
        output_size = int(opts.get("output_size") or 1024)
        return cls(
            encoder_type=str(opts.get("encoder_type", defaults.encoder_type)),
            input_nc=int(opts.get("input_nc", defaults.input_nc)),
            output_size=output_size,
            start_from_latent_avg=bool(opts.get("start_from_latent_avg", defaults.start_from_latent_avg)),
            learn_in_w=bool(opts.get("learn_in_w", defaults.learn_in_w)),
            z_plus=z_plus,
            num_layers=int(opts.get("num_layers", defaults.num_layers)),
            widths=opts.get("widths"),
            units=opts.get("units"),
            head_channels=int(opts.get("head_channels", defaults.head_channels)),
        )


def build_encoder(config: EncoderConfig) -> nn.Module:
    """The encoder network named by ``config.encoder_type`` (the module under the ``encoder.`` keys)."""
    if config.encoder_type == "GradualStyleEncoder":
        return GradualStyleEncoder(config.num_layers, config.mode, config.input_nc, config.n_styles,
                                   config.widths, config.units, config.head_channels)
    if config.encoder_type == "BackboneEncoderUsingLastLayerIntoW":
        return BackboneEncoderUsingLastLayerIntoW(config.num_layers, config.mode, config.input_nc)
    return BackboneEncoderUsingLastLayerIntoWPlus(config.num_layers, config.mode, config.input_nc, config.n_styles)


class PSPEncoder(nn.Module):
    """Encodes a face into its intrinsic style code (the encoder part of pSp, ``model/encoder/psp.py``).

    ``forward(x)``: x (B, input_nc, H, W) in [−1, 1], average-pooled to 256² when needed → codes
    (B, n_styles, 512) (or (B, 512) for ``BackboneEncoderUsingLastLayerIntoW``), plus ``latent_avg`` when
    ``config.start_from_latent_avg``. Z+ or W+ codes according to ``config.z_plus``.

    The official file's ``decoder.*`` weights are **not** part of this module: they are an ordinary StyleGAN2
    ``Generator(output_size, 512, 8, 2)`` (see :mod:`dualstylegan.nets.stylegan2`); decoding the codes
    (``z_plus_latent`` or ``input_is_latent``) is the caller's job.

    State dict: ``encoder.*`` (the official ``encoder.`` keys) and ``latent_avg`` (the file's top-level
    ``latent_avg``; (512,), (1, 512) or (n_styles, 512); absent when the config does not use it and none was
    given). Loading a state dict adopts the stored ``latent_avg``'s shape.
    """

    def __init__(self, config: EncoderConfig | None = None, latent_avg: torch.Tensor | None = None, **kwargs):
        super().__init__()
        config = config or EncoderConfig(**kwargs)
        self.config = config
        self.encoder = build_encoder(config)
        if latent_avg is None and config.start_from_latent_avg:
            latent_avg = torch.zeros(512)
        if latent_avg is not None:
            latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).detach().clone()
            self._check_latent_avg(latent_avg)
        self.register_buffer("latent_avg", latent_avg)
        self.register_load_state_dict_pre_hook(self._adopt_latent_avg)

    @property
    def n_styles(self) -> int:
        return self.config.n_styles

    def _check_latent_avg(self, t: torch.Tensor) -> None:
        ok = t.shape == (512,) or (t.ndim == 2 and t.shape[1] == 512 and t.shape[0] in (1, self.n_styles))
        if self.config.single_code and t.ndim == 2 and t.shape[0] != 1:
            ok = False
        if not ok:
            raise ValueError(f"latent_avg must have shape (512,), (1, 512) or ({self.n_styles}, 512) for this "
                             f"encoder, got {tuple(t.shape)}")

    @staticmethod
    def _adopt_latent_avg(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                          error_msgs):
        key = prefix + "latent_avg"
        if key in state_dict and state_dict[key] is not None:
            incoming = state_dict[key]
            module._check_latent_avg(incoming)
            current = module.latent_avg
            if current is None or current.shape != incoming.shape:
                device = current.device if current is not None else incoming.device
                module.latent_avg = torch.zeros(incoming.shape, dtype=torch.float32, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (ENCODER_INPUT_SIZE, ENCODER_INPUT_SIZE):
            x = F.adaptive_avg_pool2d(x, ENCODER_INPUT_SIZE)
        codes = self.encoder(x)
        if self.config.start_from_latent_avg:
            if self.latent_avg is None:
                raise RuntimeError("this encoder starts from latent_avg but has none; load the file's latent_avg")
            codes = codes + self.latent_avg.to(codes.dtype)
        return codes


__all__ = [
    "Backbone", "BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus", "Bottleneck",
    "ENCODER_INPUT_SIZE", "ENCODER_TYPES", "EncoderConfig", "GradualStyleBlock", "GradualStyleEncoder",
    "IdentityNet", "IdentityNetConfig", "PSPEncoder", "SEModule", "bottleneck_IR", "bottleneck_IR_SE",
    "build_encoder", "get_blocks", "l2_norm",
]
