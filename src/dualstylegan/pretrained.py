"""Our own format for any network: ``model.safetensors`` + ``config.json`` (the diffusers ``ConfigMixin`` idea).

The config is the network's dataclass, so a saved folder says what it is; loading never unpickles anything.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import CheckpointError, check_state_dict, load_pretrained, save_pretrained
from .nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from .nets.encoder import EncoderConfig, IdentityNet, IdentityNetConfig, PSPEncoder
from .nets.sampler import ExtrinsicSampler, SamplerConfig
from .nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

#: kind → (network class, config class). The sampler's config is {"structure": …, "color": …}.
KINDS: dict[str, tuple[type[torch.nn.Module], type]] = {
    "stylegan2": (Generator, GeneratorConfig),
    "discriminator": (Discriminator, DiscriminatorConfig),
    "dualstylegan": (DualStyleGAN, DualStyleGANConfig),
    "psp_encoder": (PSPEncoder, EncoderConfig),
    "identity": (IdentityNet, IdentityNetConfig),
    "sampler": (ExtrinsicSampler, SamplerConfig),
}


def kind_of(model: torch.nn.Module) -> str:
    for kind, (cls, _) in KINDS.items():
        if isinstance(model, cls):  # also the official-named subclasses (``Backbone``)
            return kind
    raise TypeError(f"cannot save a {type(model).__name__}; known networks: {sorted(KINDS)}")


def save_model(model: torch.nn.Module, folder: str | Path) -> None:
    """Write ``folder/model.safetensors`` and ``folder/config.json``."""
    kind = kind_of(model)
    if kind == "sampler":
        config = {"structure": model.structure.config.to_dict(), "color": model.color.config.to_dict()}
    else:
        config = model.config.to_dict()
    save_pretrained(folder, model.state_dict(), config, kind)


def load_model(folder: str | Path) -> torch.nn.Module:
    """Rebuild the network saved by :func:`save_model` (eval mode, strict keys and shapes)."""
    kind, config, state = load_pretrained(folder)
    if kind not in KINDS:
        raise CheckpointError(f"{folder} holds a {kind!r} network, which this version does not know.")
    cls, config_cls = KINDS[kind]
    try:
        if kind == "sampler":
            model = cls(config_cls.from_dict(config["structure"]), config_cls.from_dict(config["color"]))
        elif kind == "psp_encoder":
            model = cls(config_cls.from_dict(config), latent_avg=state.get("latent_avg"))
        else:
            model = cls(config_cls.from_dict(config))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{Path(folder) / 'config.json'} is not a valid {kind} config ({exc}).") from None
    check_state_dict(model.state_dict(), state, f"{Path(folder) / 'model.safetensors'}")
    model.load_state_dict(state)
    return model.eval()
