"""Shared fixtures: a tiny style pack written in the official layout, so the real loading code runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

NARROW_CHANNELS = {4: 64, 8: 64, 16: 32, 32: 32, 64: 16, 128: 16}


# ------------------------------------------------------------------------------------------- the default run
def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (full-size models, long runs); DUALSTYLEGAN_SLOW=1 does too")


def pytest_collection_modifyitems(config, items):
    """The default run skips tests marked ``slow`` (each measured at > ~20 s on 2 cores) unless --run-slow,
    DUALSTYLEGAN_SLOW=1 or a -m expression that names slow asks for them."""
    import os

    if config.getoption("--run-slow") or os.environ.get("DUALSTYLEGAN_SLOW") == "1" or \
            "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (or -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
TINY_STYLE = "tiny"


def build_tiny_pack(root: Path, seed: int = 0, n_codes: int = 3, with_sampler: bool = True,
                    with_wplus: bool = True) -> Path:
    """models/encoder.pt (+ encoder_wplus.pt), models/tiny/{generator.pt, exstyle_code.npy, sampler.pt}.

    64×64 narrow networks with random weights (n_latent = 10): 7 structure rows, 3 color rows.
    """
    from dualstylegan import official
    from dualstylegan.codes import CodeBank
    from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
    from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
    from dualstylegan.nets.sampler import ExtrinsicSampler, SamplerConfig
    from dualstylegan.nets.stylegan2 import Generator

    torch.manual_seed(seed)
    models = root / "models"
    style = models / TINY_STYLE
    style.mkdir(parents=True, exist_ok=True)
    dsg = DualStyleGAN(DualStyleGANConfig(size=64, channels=NARROW_CHANNELS))
    with torch.no_grad():  # a visible extrinsic path and noise: ModRes at full scale, noisy color transforms
        for name, p in dsg.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
        for k in range(dsg.res_index + 1):
            dsg.res[k].conv[0].weight.mul_(30)
            dsg.res[k].conv2[0].weight.mul_(30)
        for k in range(dsg.res_index + 1, dsg.n_latent):
            dsg.res[k].weight.add_(torch.randn_like(dsg.res[k].weight) * 3)
    official.save_dualstylegan(style / "generator.pt", dsg)
    decoder = Generator(dsg.generator.config)
    decoder.load_state_dict(dsg.generator.state_dict())
    narrow = dict(output_size=64, widths=(16, 16, 16, 32), units=(1, 1, 1, 1), head_channels=32,
                  start_from_latent_avg=True)
    for name, z_plus in (("encoder.pt", True), ("encoder_wplus.pt", False)):
        if name == "encoder_wplus.pt" and not with_wplus:
            continue
        enc = PSPEncoder(EncoderConfig(**narrow, z_plus=z_plus), latent_avg=torch.randn(512) * 0.1)
        official.save_encoder(models / name, enc, decoder)
    n_latent = dsg.n_latent
    codes = {f"{i:03d}.jpg": np.random.default_rng(seed + i).standard_normal((1, n_latent, 512)).astype(np.float32)
             for i in range(n_codes)}
    CodeBank(codes).save(style / "exstyle_code.npy")
    if with_sampler:
        sampler = ExtrinsicSampler(SamplerConfig(rows=dsg.res_index + 1), SamplerConfig(rows=n_latent - 7))
        official.save_sampler(style / "sampler.pt", sampler.eval())
    return style


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory) -> Path:
    """The style folder of a tiny pack (its parent holds encoder.pt)."""
    return build_tiny_pack(tmp_path_factory.mktemp("pack"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_pack):
    from dualstylegan.pipeline import StyleTransferPipeline

    return StyleTransferPipeline.from_pretrained(str(tiny_pack), wplus=True, sampler=True)


@pytest.fixture
def face_tensor():
    """A smooth random 'photo' (1, 3, 256, 256) in [-1, 1]."""
    g = torch.Generator().manual_seed(1)
    low = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=256, mode="bilinear", align_corners=False)


def needs_dlib() -> None:
    """Skip the calling test unless the 'faces' extra (scipy, dlib-bin, face_recognition_models) is installed."""
    from dualstylegan import faces

    pytest.importorskip("scipy", reason="alignment needs the 'faces' extra")
    pytest.importorskip("dlib", reason="face detection needs the 'faces' extra (dlib-bin)")
    try:
        faces.predictor_path()
    except ImportError as e:
        pytest.skip(str(e))
