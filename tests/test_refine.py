"""dualstylegan.refine: the one latent optimisation of training's refine-codes step and of transfer(refine=N)."""
from __future__ import annotations

import pytest
import torch

from dualstylegan.refine import fit_intrinsic, refine_extrinsic


@pytest.fixture
def setup(tiny_pipeline):
    p = tiny_pipeline
    g = torch.Generator().manual_seed(3)
    code = torch.randn(1, p.n_latent, 512, generator=g)
    image = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    return p, code, image


def mse(x, y):
    return ((x - y) ** 2).flatten(1).mean(1)


def test_pipeline_refine_is_the_library_function(setup):
    """transfer(refine=N) runs exactly what training runs (same loss, noise optimisation, learning rates)."""
    p, code, image = setup
    p.lpips = mse
    try:
        got = p.refine_extrinsic(code, image, 3, seed=5)
    finally:
        p.lpips = None
    want, history, visuals = refine_extrinsic(p.generator, code, code, image, mse, None, 3,
                                              interp_weights=[1.0] * 18, seed=5)
    assert torch.equal(got.cpu(), want) and len(history["loss"]) == 3 and len(visuals) == 3


def test_refine_rows_noise_and_no_grad(setup):
    """Structure rows move at lr_structure, color rows at lr_color; it works under no_grad and leaves G as it was."""
    p, code, image = setup
    g = p.generator
    flags = [q.requires_grad for q in g.parameters()]
    with torch.no_grad():
        refined, history, _ = refine_extrinsic(g, code, code, image, None, None, 3, lr_structure=0.0)
    rows = g.config.structure_rows
    assert torch.equal(refined[:, rows], code[:, rows])
    assert not torch.equal(refined[:, g.config.color_rows], code[:, g.config.color_rows])
    assert all(v > 0 for v in history["noise"]) and history["contextual"] == [0.0] * 3  # no VGG: no contextual term
    assert [q.requires_grad for q in g.parameters()] == flags and not g.training
    with pytest.raises(ValueError, match="Z\\+ codes"):
        refine_extrinsic(g, code[:, :3], code[:, :3], image, None, None, 1)


def test_fit_intrinsic_is_deterministic_and_moves_the_code(setup):
    p, _, image = setup
    start = p.encode(image)
    a = fit_intrinsic(p.generator.generator, start, image, 4, 0.05)
    b = fit_intrinsic(p.generator.generator, start, image, 4, 0.05)
    assert torch.equal(a, b) and not torch.equal(a, start)
