"""DualStyleGAN ("Pastiche Master", Yang et al., CVPR 2022): exemplar-based portrait style transfer.

    from dualstylegan import StyleTransferPipeline
    pipe = StyleTransferPipeline.from_pretrained("cartoon")
"""
from .codes import CodeBank
from .nets.dualstylegan import COLOR, STRUCTURE, DualStyleGAN, DualStyleGANConfig, ModRes
from .nets.encoder import EncoderConfig, IdentityNet, PSPEncoder
from .nets.sampler import ExtrinsicSampler
from .nets.stylegan2 import Discriminator, Generator, GeneratorConfig
from .pipeline import StyleTransferPipeline, TransferResult, interp_weights

__version__ = "0.1.0"
__all__ = [
    "COLOR", "STRUCTURE", "CodeBank", "Discriminator", "DualStyleGAN", "DualStyleGANConfig", "EncoderConfig",
    "ExtrinsicSampler", "Generator", "GeneratorConfig", "IdentityNet", "ModRes", "PSPEncoder",
    "StyleTransferPipeline", "TransferResult", "interp_weights",
]
