"""DualStyleGAN ("Pastiche Master", Yang et al., CVPR 2022): exemplar-based portrait style transfer.

    from dualstylegan import StyleTransferPipeline
    pipe = StyleTransferPipeline.from_pretrained("cartoon")

The names below are imported on first use, so that ``import dualstylegan`` (and ``dualstylegan --help``) does not
load torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the submodule that defines it
_EXPORTS = {
    "CodeBank": "codes",
    "DualStyleGAN": "nets.dualstylegan", "DualStyleGANConfig": "nets.dualstylegan", "ModRes": "nets.dualstylegan",
    "EncoderConfig": "nets.encoder", "IdentityNet": "nets.encoder", "PSPEncoder": "nets.encoder",
    "ExtrinsicSampler": "nets.sampler",
    "Discriminator": "nets.stylegan2", "Generator": "nets.stylegan2", "GeneratorConfig": "nets.stylegan2",
    "StyleTransferPipeline": "pipeline", "TransferResult": "pipeline", "PortraitOutput": "pipeline",
    "interp_weights": "pipeline",
    "FileResult": "batch", "output_names": "batch", "stylize_files": "batch",
    "Face": "faces", "prepare_face": "faces", "prepare_exemplar": "faces", "detect_faces": "faces",
}
__all__ = [
    "CodeBank", "Discriminator", "DualStyleGAN", "DualStyleGANConfig", "EncoderConfig",
    "ExtrinsicSampler", "Generator", "GeneratorConfig", "IdentityNet", "ModRes", "PSPEncoder",
    "PortraitOutput", "StyleTransferPipeline", "TransferResult", "interp_weights",
    "Face", "FileResult", "detect_faces", "output_names", "prepare_exemplar", "prepare_face", "stylize_files",
]

if TYPE_CHECKING:
    from .batch import FileResult, output_names, stylize_files
    from .codes import CodeBank
    from .faces import Face, detect_faces, prepare_exemplar, prepare_face
    from .nets.dualstylegan import DualStyleGAN, DualStyleGANConfig, ModRes
    from .nets.encoder import EncoderConfig, IdentityNet, PSPEncoder
    from .nets.sampler import ExtrinsicSampler
    from .nets.stylegan2 import Discriminator, Generator, GeneratorConfig
    from .pipeline import PortraitOutput, StyleTransferPipeline, TransferResult, interp_weights


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
