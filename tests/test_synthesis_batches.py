"""Batches on the CPU: from the first block whose maps reach ops.PER_SAMPLE_PIXELS the synthesis runs one sample at
a time (Generator.synthesize); the results are those of the whole batch and of each sample alone."""
from __future__ import annotations

import pytest
import torch

from dualstylegan import ops
from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from dualstylegan.nets.stylegan2 import Generator, GeneratorConfig
from conftest import NARROW_CHANNELS

KW = dict(z_plus_latent=True, truncation=0.75, truncation_latent=0, randomize_noise=False)


@pytest.fixture(scope="module")
def dsg():
    torch.manual_seed(0)
    return DualStyleGAN(DualStyleGANConfig(size=64, channels=NARROW_CHANNELS)).eval().requires_grad_(False)


def _count_splits(monkeypatch) -> list:
    calls = []
    blocks = Generator._blocks

    def counted(self, out, *a, **k):
        calls.append(out.shape[0])
        return blocks(self, out, *a, **k)
    monkeypatch.setattr(Generator, "_blocks", counted)
    return calls


@pytest.mark.parametrize("extra", [{}, {"return_feat": True}, {"output_size": 32}], ids=["image", "features", "32"])
def test_split_batch_equals_whole_batch_and_single_samples(dsg, monkeypatch, extra):
    z = torch.randn(3, dsg.n_latent, 512, generator=torch.Generator().manual_seed(1))
    ex = dsg.map_extrinsic(torch.randn(3, dsg.n_latent, 512, generator=torch.Generator().manual_seed(2)))
    w = [0.75] * 7 + [1.0] * 11
    with torch.no_grad():
        monkeypatch.setattr(ops, "PER_SAMPLE_PIXELS", 10 ** 9)
        whole = dsg([z], ex, interp_weights=w, **KW, **extra)[0]
        alone = [dsg([z[i:i + 1]], ex[i:i + 1], interp_weights=w, **KW, **extra)[0] for i in range(3)]
        monkeypatch.setattr(ops, "PER_SAMPLE_PIXELS", 16 * 16)
        calls = _count_splits(monkeypatch)
        split = dsg([z], ex, interp_weights=w, **KW, **extra)[0]
    # DualStyleGAN splits after its structure layers (ModRes reads the batch's codes): at the 64² block here
    assert calls == ([3, 1, 1, 1] if not extra else [3])
    if extra.get("return_feat"):
        for a, b in zip(split, whole):
            torch.testing.assert_close(a, b)
        return
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(split, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_no_split_with_random_noise_or_autograd(dsg, monkeypatch):
    monkeypatch.setattr(ops, "PER_SAMPLE_PIXELS", 16 * 16)
    g = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS)).eval()
    z = torch.randn(2, 512)
    calls = _count_splits(monkeypatch)
    with torch.no_grad():
        g([z], randomize_noise=True)  # noise drawn per batch, as the reference draws it
    assert calls == [2]
    calls.clear()
    g([z], randomize_noise=False)[0].sum().backward()  # training: the reference's computation, whole batches
    assert calls == [2]
    calls.clear()
    with torch.no_grad():
        g([z], randomize_noise=False)
    assert calls == [2, 1, 1]
