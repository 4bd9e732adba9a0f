"""dualstylegan.losses: every training loss on tiny inputs with randomly initialised feature nets."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dualstylegan import losses as L
from dualstylegan.nets.encoder import IdentityNet
from dualstylegan.nets.perceptual import VGG19Features


def _same_grad(ours, plain, *inputs: torch.Tensor) -> None:
    """The gradient of ``ours(*inputs)`` with respect to the first input equals that of an independent, plain
    formula ``plain(*inputs)`` (and is not zero): a check of the values autograd gives, not only that they exist."""
    x = inputs[0].detach().clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad(ours(x, *inputs[1:]), x)
    x = inputs[0].detach().clone().requires_grad_(True)
    (g_plain,) = torch.autograd.grad(plain(x, *inputs[1:]), x)
    assert g_ours.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_plain)


def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Images with spatial structure (low-resolution noise, upsampled), in [−1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g) * 2 - 1
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features().eval()


@pytest.fixture(scope="module")
def id_net() -> IdentityNet:
    torch.manual_seed(0)
    return IdentityNet().eval()


# ------------------------------------------------------------------------------------------------ adversarial

def test_logistic_and_nonsaturating_losses_values():
    zero = torch.zeros(4, 1)
    assert L.d_logistic_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert L.g_nonsaturating_loss(zero).item() == pytest.approx(math.log(2))
    # a confident, correct D has ~0 loss; G's loss is then large
    assert L.d_logistic_loss(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0)).item() < 1e-6
    assert L.g_nonsaturating_loss(torch.full((4, 1), -20.0)).item() == pytest.approx(20.0, rel=1e-6)
    real, fake = torch.randn(6, 1), torch.randn(6, 1)
    expected = torch.log1p(torch.exp(-real)).mean() + torch.log1p(torch.exp(fake)).mean()
    torch.testing.assert_close(L.d_logistic_loss(real, fake), expected)


def test_r1_of_a_linear_discriminator_is_the_squared_norm_of_its_weights():
    a = torch.randn(3, 8, 8, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    r1 = L.d_r1_loss((x * a).sum(dim=(1, 2, 3)), x)
    torch.testing.assert_close(r1, a.detach().pow(2).sum())
    r1.backward()  # create_graph: the penalty reaches D's parameters, d‖a‖²/da = 2a
    torch.testing.assert_close(a.grad, 2 * a.detach())


def test_r1_of_a_quadratic_discriminator():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    r1 = L.d_r1_loss(x.pow(2).sum(dim=(1, 2, 3)), x)  # ∇ = 2x per sample
    torch.testing.assert_close(r1, (4 * x.detach().pow(2).sum(dim=(1, 2, 3))).mean())


def test_path_regularize_matches_its_definition_and_moves_the_mean():
    torch.manual_seed(0)
    b, n_latent, dim, h = 3, 5, 8, 4
    weight = torch.randn(n_latent * dim, 3 * h * h, requires_grad=True)
    latents = torch.randn(b, n_latent, dim, requires_grad=True)
    fake = torch.tanh(latents.reshape(b, -1) @ weight).reshape(b, 3, h, h)

    torch.manual_seed(1)
    penalty, mean, lengths = L.g_path_regularize(fake, latents, 0.0)
    assert penalty.shape == () and mean.shape == () and lengths.shape == (b,)
    assert not mean.requires_grad and penalty.requires_grad

    torch.manual_seed(1)
    noise = torch.randn_like(fake) / math.sqrt(h * h)
    (grad,) = torch.autograd.grad((fake * noise).sum(), latents, retain_graph=True)
    expected = grad.pow(2).sum(2).mean(1).sqrt()
    torch.testing.assert_close(lengths.detach(), expected)
    torch.testing.assert_close(mean, 0.01 * expected.mean())
    torch.testing.assert_close(penalty.detach(), (expected - 0.01 * expected.mean()).pow(2).mean())

    # the running mean is a tensor afterwards; a second call moves it further toward the lengths
    _, mean2, _ = L.g_path_regularize(fake, latents, mean)
    assert mean < mean2 < lengths.mean()
    # create_graph: the penalty is differentiable with respect to G's weights, as the plain formula is (whose
    # running mean, as rosinality's g_path_regularize, is part of the graph inside the penalty)
    (g_ours,) = torch.autograd.grad(penalty, weight, retain_graph=True)
    (grad_c,) = torch.autograd.grad((fake * noise).sum(), latents, create_graph=True)
    lengths_c = grad_c.pow(2).sum(2).mean(1).sqrt()
    plain = (lengths_c - 0.01 * lengths_c.mean()).pow(2).mean()
    (g_plain,) = torch.autograd.grad(plain, weight)
    assert g_ours.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_plain)


def test_path_regularize_on_a_tiny_generator():
    from dualstylegan.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=8, channels={4: 16, 8: 16}, style_dim=16, n_mlp=2))
    fake, latents = g([torch.randn(2, 16)], return_latents=True)
    penalty, mean, lengths = L.g_path_regularize(fake, latents, 0.0)
    assert lengths.shape == (2,) and bool(torch.isfinite(penalty)) and mean > 0
    penalty.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in g.parameters())


# ------------------------------------------------------------------------------------------------ identity

def test_identity_loss(id_net):
    loss_fn = L.IdentityLoss(id_net)
    y = _smooth_images(2, 256, seed=1)
    other = _smooth_images(2, 256, seed=2)
    assert abs(loss_fn(y, y).item()) < 1e-5
    y_hat = other.clone().requires_grad_(True)
    target = y.clone().requires_grad_(True)
    loss = loss_fn(y_hat, target)
    assert 0 < loss.item() <= 2
    loss.backward()
    assert target.grad is None  # the target's embedding is detached

    def plain_id(a, b):  # 1 − cosine of the embeddings of the face crops (pSp's id_loss.py), written out
        fa = id_net(F.adaptive_avg_pool2d(a[:, :, 35:223, 32:220], 112))
        fb = id_net(F.adaptive_avg_pool2d(b[:, :, 35:223, 32:220], 112)).detach()
        return (1 - (fa * fb).sum(1)).mean()

    torch.testing.assert_close(loss.detach(), plain_id(other, y))
    _same_grad(loss_fn, plain_id, other, y)

    # only the face crop [35:223, 32:220] counts
    outside = other.clone()
    outside[:, :, :35] = 1.0
    outside[:, :, :, 220:] = -1.0
    torch.testing.assert_close(loss_fn(outside, y), loss.detach())
    # larger images are average-pooled to 256 first
    big = F.interpolate(other, scale_factor=2, mode="nearest")
    torch.testing.assert_close(loss_fn(big, y), loss.detach(), atol=1e-5, rtol=1e-5)


def test_identity_loss_keeps_the_net_in_eval_mode(id_net):
    loss_fn = L.IdentityLoss(id_net)
    loss_fn.train()
    assert loss_fn.training and not id_net.training
    assert not any(p.requires_grad for p in id_net.parameters())


# ------------------------------------------------------------------------------------------------ VGG losses

class _CountingVGG(VGG19Features):
    """Records how many VGG19 outputs each call asks for."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x, n_layers=5):
        self.calls.append(n_layers)
        return super().forward(x, n_layers)


def test_perceptual_loss(vgg):
    x, y = _smooth_images(2, 32, seed=3), _smooth_images(2, 32, seed=4)
    loss_fn = L.PerceptualLoss(vgg, L.STAGE3_VGG_WEIGHTS)
    assert loss_fn(y, y).item() == 0
    fx, fy = vgg(x), vgg(y)
    expected = 0.5 * F.l1_loss(fx[1], fy[1]) + 1.0 * F.l1_loss(fx[2], fy[2])
    x = x.requires_grad_(True)
    target = y.clone().requires_grad_(True)
    loss = loss_fn(x, target)
    torch.testing.assert_close(loss.detach(), expected)
    assert loss.item() > 0
    loss.backward()
    assert target.grad is None
    torch.testing.assert_close(L.perceptual_l1(fx, fy, L.STAGE3_VGG_WEIGHTS), expected)

    def plain(a, b):
        fa, fb = vgg(a), vgg(b)
        return 0.5 * F.l1_loss(fa[1], fb[1].detach()) + 1.0 * F.l1_loss(fa[2], fb[2].detach())

    _same_grad(loss_fn, plain, x, y)


def test_perceptual_and_feature_matching_run_vgg_only_as_deep_as_needed():
    vgg = _CountingVGG().eval()
    x, y = _smooth_images(1, 32, seed=5), _smooth_images(1, 32, seed=6)
    L.PerceptualLoss(vgg, (1.0, 0.0, 0.0, 0.0, 0.0))(x, y)
    L.PerceptualLoss(vgg, L.STAGE3_VGG_WEIGHTS)(x, y)
    L.FeatureMatchingLoss(vgg)(x, y)
    assert vgg.calls == [1, 1, 3, 3, 3, 3]
    assert L.PerceptualLoss(vgg, (0, 0, 0, 0, 0))(x, y).item() == 0
    with pytest.raises(ValueError):
        L.PerceptualLoss(vgg, (1, -1))


def _naive_contextual(x, y, h):
    """Eq. (1)–(5) of Mechrez et al., written out with loops over the target positions j."""
    mu = y.mean(dim=(0, 2, 3), keepdim=True)
    out = []
    for xs, ys in zip(x - mu, y - mu):
        xs = xs.reshape(xs.shape[0], -1).T
        ys = ys.reshape(ys.shape[0], -1).T
        xs, ys = xs / xs.norm(dim=1, keepdim=True), ys / ys.norm(dim=1, keepdim=True)
        d = torch.stack([1 - (xs * ys[j]).sum(1) for j in range(ys.shape[0])], 1)  # d[i, j]
        d_rel = d / (d.min(1, keepdim=True).values + 1e-5)
        w = torch.exp((1 - d_rel) / h)
        cx_ij = w / w.sum(1, keepdim=True)
        cx = torch.stack([cx_ij[:, j].max() for j in range(ys.shape[0])]).mean()
        out.append(-torch.log(cx + 1e-5))
    return torch.stack(out).mean()


def test_contextual_loss_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(L.contextual_loss(x, y, 0.2), _naive_contextual(x, y, 0.2))
    torch.testing.assert_close(L.ContextualLoss(band_width=0.5)(x, y), _naive_contextual(x, y, 0.5))
    with pytest.raises(ValueError):
        L.contextual_loss(x, y[:, :, :2])
    with pytest.raises(ValueError):
        L.ContextualLoss(loss_type="l1")


def test_contextual_loss_on_vgg_features(vgg):
    cx = L.ContextualLoss(band_width=0.2)
    image = _smooth_images(2, 32, seed=7)
    noisy = image + 0.2 * torch.randn(image.shape, generator=torch.Generator().manual_seed(8))
    unrelated = _smooth_images(2, 32, seed=9)
    feat = lambda t: vgg(t, n_layers=3)[L.CONTEXTUAL_LAYER]  # noqa: E731
    same = cx(feat(image), feat(image)).item()
    near = cx(feat(noisy), feat(image)).item()
    far = cx(feat(unrelated), feat(image)).item()
    assert abs(same) < 1e-3  # CX = 1: −log(1 + 1e-5)
    assert same < near < far
    x = unrelated.clone().requires_grad_(True)
    target = feat(image).requires_grad_(True)
    loss = cx(feat(x), target)
    loss.backward()
    assert target.grad is None
    _same_grad(lambda a, b: cx(feat(a), feat(b)), lambda a, b: _naive_contextual(feat(a), feat(b).detach(), 0.2),
               unrelated, image)


def test_feature_matching_loss(vgg):
    x, y = _smooth_images(2, 32, seed=10), _smooth_images(2, 64, seed=11)
    loss_fn = L.FeatureMatchingLoss(vgg)
    assert loss_fn(y, y).item() == 0
    fx, fy = vgg(x), vgg(y)
    expected = sum(F.mse_loss(F.adaptive_avg_pool2d(fx[i], 1), F.adaptive_avg_pool2d(fy[i], 1)) for i in (1, 2))
    x = x.requires_grad_(True)
    loss = loss_fn(x, y)  # sizes may differ: only channel means are compared
    torch.testing.assert_close(loss.detach(), expected)
    assert loss.item() > 0
    torch.testing.assert_close(L.feature_matching(fx, fy), expected)

    def plain(a, b):
        fa, fb = vgg(a), vgg(b)
        return sum(F.mse_loss(fa[i].mean((2, 3)), fb[i].mean((2, 3)).detach()) for i in (1, 2))

    _same_grad(loss_fn, plain, x, y)
    with pytest.raises(ValueError):
        L.FeatureMatchingLoss(vgg, layers=(5,))


# ------------------------------------------------------------------------------------------------ regularisers

def test_modres_l2_sums_the_norms_of_the_extrinsic_path():
    from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig

    torch.manual_seed(0)
    model = DualStyleGAN(DualStyleGANConfig(size=64, channels={4: 32, 8: 32, 16: 16, 32: 16, 64: 8},
                                            style_dim=32, n_mlp=8))
    expected = sum(p.detach().norm() for p in model.res.parameters())
    reg = L.modres_l2(model)
    torch.testing.assert_close(reg.detach(), expected)
    torch.testing.assert_close(L.modres_l2(model.res).detach(), expected)
    reg.backward()
    res_params = {id(p) for p in model.res.parameters()}
    for p in model.parameters():
        if id(p) in res_params:
            # d‖p‖/dp = p/‖p‖; a zero tensor (a fresh bias) gets 0, not NaN
            norm = p.detach().norm()
            expect = p.detach() / norm if norm > 0 else torch.zeros_like(p)
            torch.testing.assert_close(p.grad, expect)
        else:
            assert p.grad is None


def test_noise_regularize():
    zeros = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 32, 32)]
    assert L.noise_regularize(zeros).item() == 0
    # a constant map of ones adds 2 per scale: 32 → 16 → 8 is three scales, a 4×4 map one
    assert L.noise_regularize([torch.ones(1, 1, 32, 32)]).item() == pytest.approx(6.0)
    assert L.noise_regularize([torch.ones(1, 1, 4, 4)]).item() == pytest.approx(2.0)
    g = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, s, s, generator=g) for s in (8, 16, 32, 64)]
    smooth = [F.interpolate(torch.randn(1, 1, s // 4, s // 4, generator=g), size=s, mode="bilinear",
                            align_corners=False) for s in (8, 16, 32, 64)]
    L.noise_normalize_(smooth)
    assert L.noise_regularize(white).item() < 0.05
    assert L.noise_regularize(smooth).item() > 10 * L.noise_regularize(white).item()
    noises = [n.double().requires_grad_(True) for n in white]
    assert torch.autograd.gradcheck(lambda *n: L.noise_regularize(list(n)), noises)


def test_noise_normalize_in_place():
    g = torch.Generator().manual_seed(0)
    noises = [(torch.randn(1, 1, 16, 16, generator=g) * 3 + 2).requires_grad_(True) for _ in range(2)]
    before = [n.data_ptr() for n in noises]
    L.noise_normalize_(noises)
    assert [n.data_ptr() for n in noises] == before and all(n.requires_grad for n in noises)
    for n in noises:
        assert abs(n.mean().item()) < 1e-6 and n.std().item() == pytest.approx(1.0, abs=1e-5)


def test_latent_std_regularizer():
    z = torch.randn(2, 1, 16).repeat(1, 18, 1)
    assert L.latent_std_regularizer(z).item() == pytest.approx(0.0, abs=1e-6)
    z = torch.randn(2, 18, 16, dtype=torch.float64, requires_grad=True)
    reg = L.latent_std_regularizer(z)
    centred = z.detach() - z.detach().mean(dim=1, keepdim=True)
    torch.testing.assert_close(reg.detach(), (centred.pow(2).sum(dim=1) / 17).sqrt().mean())  # unbiased, over rows
    assert reg.item() > 0
    assert torch.autograd.gradcheck(L.latent_std_regularizer, (z,))
    with pytest.raises(ValueError):
        L.latent_std_regularizer(torch.randn(2, 16))


def test_get_lr_ramps():
    lr = 0.1
    assert L.get_lr(0.0, lr) == 0.0
    assert L.get_lr(1.0, lr) == pytest.approx(0.0, abs=1e-12)
    assert L.get_lr(0.5, lr) == pytest.approx(lr)
    assert L.get_lr(0.025, lr) == pytest.approx(lr / 2)  # halfway through the linear warm-up
    assert L.get_lr(1 - 0.125, lr) == pytest.approx(lr / 2)  # halfway through the cosine decay
    values = [L.get_lr(i / 300, lr) for i in range(300)]
    assert max(values) == pytest.approx(lr) and all(0 <= v <= lr for v in values)
