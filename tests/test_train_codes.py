"""Destylization, extrinsic code refinement and sampler training on tiny 64² models (random weights, CPU)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import build_tiny_pack

from dualstylegan import official
from dualstylegan.codes import CodeBank
from dualstylegan.images import save_image
from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
from dualstylegan.nets.perceptual import LPIPS, VGG19Features
from dualstylegan.refine import refine_extrinsic
from dualstylegan.train.destylize import COLOR_KEEP_FROM, StyleImages, destylize, destylize_image, load_destylized
from dualstylegan.train.fit_sampler import augment_codes, default_epochs, fit_sampler
from dualstylegan.train.refine_codes import refine_codes


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """Tiny nets: the Z+ encoder, its decoder as the FFHQ g, a perturbed copy as g′, the style's DualStyleGAN."""
    root = tmp_path_factory.mktemp("codes_pack")
    style = build_tiny_pack(root, with_sampler=False, with_wplus=False)
    encoder, g = official.load_encoder(root / "models" / "encoder.pt")
    torch.manual_seed(1)
    g_prime = copy.deepcopy(g)
    with torch.no_grad():
        for name, p in g_prime.named_parameters():
            if name.startswith("convs.") and name.endswith("conv.weight"):
                p.add_(0.3 * torch.randn_like(p))
    dsg = official.load_dualstylegan(style / "generator.pt")
    return {"root": root, "style": style, "encoder": encoder, "g": g.eval(), "g_prime": g_prime.eval(),
            "dsg": dsg, "exstyle": CodeBank.load(style / "exstyle_code.npy")}


@pytest.fixture(scope="module")
def lpips():
    torch.manual_seed(0)
    return LPIPS().eval()


@pytest.fixture(scope="module")
def style_images(pack):
    """Two 256² 'style images' that g′ can draw (upsampled renderings of random codes), in unsorted order."""
    gen = torch.Generator().manual_seed(3)
    out = {}
    for name in ("b.png", "a.png"):
        z = torch.randn(1, pack["g_prime"].n_latent, 512, generator=gen)
        with torch.no_grad():
            img, _ = pack["g_prime"]([z], z_plus_latent=True, randomize_noise=False)
        out[name] = F.interpolate(img.clamp(-1, 1), size=256, mode="bilinear", align_corners=False)[0]
    return out


class Counting:
    """A loss callable that counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, y):
        self.calls += 1
        return self.fn(x, y)


def cheap_id(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A stand-in for the IR-SE50 identity loss (same signature, a fraction of the cost)."""
    return 1 - F.cosine_similarity(F.avg_pool2d(x, 8).flatten(1), F.avg_pool2d(y, 8).flatten(1)).mean()


# ------------------------------------------------------------------------------------------- destylization
def test_destylize_writes_official_banks_and_resumes(pack, lpips, style_images, tmp_path):
    counted = Counting(lpips)
    iters = 12
    instyle, exstyle = destylize(style_images, pack["encoder"], pack["g_prime"], pack["g"], counted, cheap_id,
                                 tmp_path, iterations=iters, progress=False)
    assert counted.calls == 2 * iters
    # official layout, style ids in sorted file order
    for bank, fname in ((instyle, "instyle_code.npy"), (exstyle, "exstyle_code.npy")):
        loaded = CodeBank.load(tmp_path / fname)
        assert loaded.names == ["a.png", "b.png"] == bank.names
        for name in loaded:
            assert loaded[name].shape == (10, 512)
            torch.testing.assert_close(loaded[name], bank[name])
    # stage I: z_e⁺ = E(S); stage III: the color rows of z_i⁺ come from z_e⁺, the others from E(g(ẑ⁺))
    with torch.no_grad():
        z_e = pack["encoder"](style_images["a.png"][None])[0]
    torch.testing.assert_close(exstyle["a.png"], z_e)
    torch.testing.assert_close(instyle["a.png"][COLOR_KEEP_FROM:], z_e[COLOR_KEEP_FROM:])
    assert not torch.allclose(instyle["a.png"][:COLOR_KEEP_FROM], z_e[:COLOR_KEEP_FROM])
    # the perceptual loss falls over the optimisation; the visual log is written
    for name in ("a.png", "b.png"):
        rec = load_destylized(tmp_path, name)
        perceptual = rec["history"]["perceptual"]
        assert len(perceptual) == iters and perceptual[-1] < perceptual[0]
        assert rec["history"]["lr"][0] == 0.0  # the ramp starts at 0
        assert (tmp_path / "log" / f"{name}.png").is_file()
        torch.testing.assert_close(rec["optimized"][0, COLOR_KEEP_FROM:], exstyle[name][COLOR_KEEP_FROM:])

    # resume: finished images are skipped …
    counted.calls = 0
    again = destylize(style_images, pack["encoder"], pack["g_prime"], pack["g"], counted, cheap_id, tmp_path,
                      iterations=iters, progress=False)
    assert counted.calls == 0
    torch.testing.assert_close(again[0]["b.png"], instyle["b.png"])
    # … and only a missing one is redone
    (tmp_path / "codes" / "b.png.pt").unlink()
    destylize(style_images, pack["encoder"], pack["g_prime"], pack["g"], counted, cheap_id, tmp_path,
              iterations=iters, progress=False)
    assert counted.calls == iters


def test_destylize_from_folder(pack, lpips, style_images, tmp_path):
    folder = tmp_path / "images"
    for name, img in style_images.items():
        save_image(F.interpolate(img[None], size=300, mode="bilinear", align_corners=False)[0],
                   folder / name.replace(".png", ".jpg"))
    (folder / "notes.txt").write_text("not an image")
    images = StyleImages(folder)
    assert list(images) == ["a.jpg", "b.jpg"] and images["a.jpg"].shape == (1, 3, 256, 256)
    instyle, exstyle = destylize(folder, pack["encoder"], pack["g_prime"], pack["g"], lpips, None,
                                 tmp_path / "out", iterations=1, progress=False)
    assert instyle.names == exstyle.names == ["a.jpg", "b.jpg"]
    assert CodeBank.load(tmp_path / "out" / "instyle_code.npy").names == ["a.jpg", "b.jpg"]


def test_destylize_with_identity_loss(pack, lpips, style_images):
    """The real IdentityLoss (random IR-SE50) plugs in; the encoder must be the Z+ one."""
    from dualstylegan.losses import IdentityLoss
    from dualstylegan.nets.encoder import IdentityNet

    torch.manual_seed(0)
    id_loss = IdentityLoss(IdentityNet().eval())
    torch.manual_seed(1)
    result = destylize_image(style_images["a.png"], pack["encoder"], pack["g_prime"], pack["g"], lpips, id_loss,
                             iterations=2)
    # 1 − cosine of two embeddings: in [0, 2], and a real term of the loss (the optimised code moves differently)
    assert len(result.history["id"]) == 2 and all(0 <= v <= 2 for v in result.history["id"])
    torch.manual_seed(1)  # the same draws: only the identity term differs
    without = destylize_image(style_images["a.png"], pack["encoder"], pack["g_prime"], pack["g"], lpips, None,
                              iterations=2)
    assert not torch.equal(result.optimized, without.optimized)
    wplus = PSPEncoder(EncoderConfig(output_size=64, widths=(16, 16, 16, 32), units=(1, 1, 1, 1), head_channels=32,
                                     z_plus=False))
    with pytest.raises(ValueError, match="Z\\+ encoder"):
        destylize_image(style_images["a.png"], wplus, pack["g_prime"], pack["g"], lpips, None, iterations=1)


# ------------------------------------------------------------------------------------------- refinement
def test_refine_lowers_reconstruction_loss(pack, lpips, tmp_path):
    dsg = pack["dsg"]
    exstyle = pack["exstyle"]
    gen = torch.Generator().manual_seed(7)
    instyle = CodeBank({n: torch.randn(dsg.n_latent, 512, generator=gen) for n in exstyle})
    # exemplars that G draws from the intrinsic code and a nearby extrinsic code
    images = {}
    for n in exstyle:
        z_true = exstyle.code(n) + 0.5 * torch.randn(1, dsg.n_latent, 512, generator=gen)
        with torch.no_grad():
            img, _ = dsg([instyle.code(n)], dsg.map_extrinsic(z_true), z_plus_latent=True, randomize_noise=False)
        images[n] = F.interpolate(img, size=256, mode="bilinear", align_corners=False)[0]
    torch.manual_seed(0)
    vgg = VGG19Features().eval()
    names = exstyle.names[:2]
    refined = refine_codes(dsg, instyle, CodeBank({n: exstyle[n] for n in names}), images, lpips, vgg,
                           iterations=10, out_dir=tmp_path, progress=False)
    assert refined.names == names
    loaded = CodeBank.load(tmp_path / "refined_exstyle_code.npy")
    assert loaded.names == names
    torch.testing.assert_close(loaded[names[0]], refined[names[0]])
    assert (tmp_path / "log" / "refine" / f"{names[0]}.png").is_file()

    def recon(code, name):
        with torch.no_grad():
            img, _ = dsg([instyle.code(name)], dsg.map_extrinsic(code), z_plus_latent=True, randomize_noise=False)
            return float(lpips(img, F.adaptive_avg_pool2d(images[name][None], 64)).sum())

    # with the stored noise maps (the refinement optimises its own, then drops them), over the exemplars
    before = sum(recon(exstyle.code(n), n) for n in names)
    after = sum(recon(refined.code(n), n) for n in names)
    assert after < 0.8 * before

    # the structure rows (0…res_index) and color rows have their own learning rates
    code, history, visuals = refine_extrinsic(dsg, instyle.code(names[0]), exstyle.code(names[0]),
                                              images[names[0]][None], lpips, vgg, iterations=3, lr_structure=0.0)
    n_structure = dsg.config.n_structure
    torch.testing.assert_close(code[:, :n_structure], exstyle.code(names[0])[:, :n_structure])
    assert not torch.allclose(code[:, n_structure:], exstyle.code(names[0])[:, n_structure:])
    assert history["loss"][-1] < history["loss"][0] and len(visuals) == 3
    assert all(v > 0 for v in history["contextual"])


# ------------------------------------------------------------------------------------------- sampler
def test_fit_sampler_moves_samples_toward_the_bank(pack, tmp_path):
    bank = pack["exstyle"]
    codes = torch.stack([bank[n] for n in bank]).reshape(len(bank), -1)

    def mean_nn_distance(sampler):
        samples = sampler.sample(256, torch.Generator().manual_seed(5)).reshape(256, -1)
        return torch.cdist(codes, samples).min(dim=1).values.mean().item()

    untrained = fit_sampler(bank, epochs=0, seed=0, progress=False)
    trained = fit_sampler(bank, epochs=5, seed=0, progress=False)
    assert not trained.training
    assert trained.structure.config.rows == 7 and trained.color.config.rows == 3  # n_latent 10
    assert mean_nn_distance(trained) < 0.8 * mean_nn_distance(untrained)
    official.save_sampler(tmp_path / "sampler.pt", trained)
    loaded = official.load_sampler(tmp_path / "sampler.pt")
    noise = torch.randn(4, 128)
    torch.testing.assert_close(loaded(noise, noise), trained(noise, noise))
    # the recipe's bookkeeping: ~1000 augmented codes, 500000 / n epochs
    aug = augment_codes(codes, generator=torch.Generator().manual_seed(0))
    assert aug.shape == (999, codes.shape[1])
    assert (aug - codes.repeat(333, 1)).std().item() == pytest.approx(0.05, rel=0.05)
    assert default_epochs(999) == 500
