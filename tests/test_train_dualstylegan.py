"""Stages I–III of DualStyleGAN's progressive fine-tuning on tiny 64² models (random weights, CPU)."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NARROW_CHANNELS
from PIL import Image

from dualstylegan import official
from dualstylegan.codes import CodeBank
from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
from dualstylegan.nets.perceptual import VGG19Features
from dualstylegan.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from dualstylegan.train.finetune import FinetuneStage, StyleSet, finetune, load_pretrain_checkpoint
from dualstylegan.train.loop import LoopConfig, TrainLoop, requires_grad
from dualstylegan.train.pretrain import (INJECT_SCHEDULE, PretrainStage, SampledFaces, init_dualstylegan,
                                         inject_index_at, inject_schedule_steps, pretrain)

SIZE = 64


def ffhq_nets(seed: int = 0) -> tuple[Generator, Discriminator]:
    """A tiny 'FFHQ' StyleGAN2 (n_latent 10: structure rows 0…6, color rows 7…9) and its discriminator."""
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(size=SIZE, channels=NARROW_CHANNELS))
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    return g.eval(), Discriminator(DiscriminatorConfig(size=SIZE, channels=NARROW_CHANNELS))


def tiny_encoder(seed: int = 1) -> PSPEncoder:
    torch.manual_seed(seed)
    return PSPEncoder(EncoderConfig(output_size=SIZE, widths=(16, 16, 16, 32), units=(1, 1, 1, 1), head_channels=32,
                                    z_plus=True)).eval()


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    torch.manual_seed(2)
    return VGG19Features().eval()


def cheap_id_loss(fake: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Stand-in for the IR-SE50 identity loss: 1 − cosine of 8×8 thumbnails."""
    a = torch.nn.functional.adaptive_avg_pool2d(fake, 8).flatten(1)
    b = torch.nn.functional.adaptive_avg_pool2d(content, 8).flatten(1)
    return (1 - torch.nn.functional.cosine_similarity(a, b)).mean()


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cfg(out: Path, steps: int, batch: int = 2, **kw) -> LoopConfig:
    return LoopConfig(steps=steps, batch_size=batch, out_dir=out, checkpoint_every=kw.pop("checkpoint_every", 100),
                      sample_every=kw.pop("sample_every", 0), progress=False, tensorboard=False, **kw)


# ------------------------------------------------------------------------------------------- stage I
def test_stage1_fresh_model_is_stylegan_style_mixing():
    """ModRes ≈ 0 and T_c ≈ identity: G([z₁], map(z₂⁺), use_res) reproduces g's style mixing at l = res_index + 1."""
    g, _ = ffhq_nets()
    model = init_dualstylegan(g)
    assert same(state_copy(model.generator), state_copy(g))
    L, mix_at = model.n_latent, model.res_index + 1
    assert mix_at == 7
    z = torch.randn(2, 4, 512, generator=torch.Generator().manual_seed(5))
    extrinsic = model.map_extrinsic(z[1][:, None].repeat(1, L, 1))  # a stored Z+ code of z₂, mapped to W+
    with torch.no_grad():
        fresh, _ = model([z[0]], extrinsic, use_res=True, randomize_noise=False)
        errors = {k: (fresh - g([z[0], z[1]], inject_index=k, randomize_noise=False)[0]).abs().mean().item()
                  for k in range(1, L)}
        # The 1 % ModRes residuals (≈ 0.04 here) and the 1 % noise of T_c (≈ 0.004) are all that differ.
        assert errors[mix_at] < 0.1
        assert min(e for k, e in errors.items() if k != mix_at) > 4 * errors[mix_at]
        # Without the residuals and with an exact identity T_c the two are the same computation.
        exact = copy.deepcopy(model)
        for k in range(mix_at, L):
            exact.res[k].weight.copy_(torch.eye(512) * math.sqrt(512))
        w = [0.0] * mix_at + [1.0] * (L - mix_at)
        out, _ = exact([z[0]], extrinsic, use_res=True, randomize_noise=False, interp_weights=w)
        mixed, _ = g([z[0], z[1]], inject_index=mix_at, randomize_noise=False)
        torch.testing.assert_close(out, mixed, atol=1e-4, rtol=0)


def test_inject_schedule_follows_the_reference_split():
    assert inject_schedule_steps(3600) == [(7, 0), (6, 300), (5, 600)]
    assert [inject_index_at(s, 3600) for s in (0, 299, 300, 599, 600, 3599)] == [7, 7, 6, 6, 5, 5]
    assert [inject_index_at(s, 12) for s in range(12)] == [7] * 1 + [6] * 1 + [5] * 10
    assert [inject_index_at(s, 8, ((7, 1), (6, 1), (5, 2))) for s in range(8)] == [7, 7, 6, 6, 5, 5, 5, 5]
    assert INJECT_SCHEDULE[0][0] == 7


# ------------------------------------------------------------------------------------------- stage II
def test_stage2_trains_the_extrinsic_path_only_on_schedule(tmp_path, vgg):
    g, d = ffhq_nets()
    model = init_dualstylegan(g)
    stage = PretrainStage(model, d, tiny_encoder(), vgg, steps=8, inject_schedule=((7, 1), (6, 1), (5, 2)),
                          d_reg_every=4, g_reg_every=3)
    before = {"generator": state_copy(model.generator), "res": state_copy(model.res), "style": state_copy(model.style),
              "d": state_copy(d), "ema_res": state_copy(stage.g_ema.res), "ema_style": state_copy(stage.g_ema.style)}
    faces = SampledFaces(g, n=16)
    history = TrainLoop(stage, faces.fetch, len(faces), cfg(tmp_path, 8)).run()
    assert [int(h["inject_index"]) for h in history] == [7, 7, 6, 6, 5, 5, 5, 5]
    # As the reference (one call of its training function per inject index): the count restarts at steps 2 and 4 —
    # z̃₂ = E(g(z₂)) every 4th step of it, R1 every 4th, path length every 3rd — with the mean path length at 0.
    assert [int(h["encoded"]) for h in history] == [1, 0, 1, 0, 1, 0, 0, 0]
    assert [int("r1" in h) for h in history] == [1, 0, 1, 0, 1, 0, 0, 0]
    assert [int("path" in h) for h in history] == [1, 0, 1, 0, 1, 0, 0, 1]
    for h in (history[0], history[2], history[4]):  # mean ← 0 + 0.01 (length − 0)
        assert h["mean_path_length"] == pytest.approx(0.01 * h["path_length"], rel=1e-5)
    assert history[7]["mean_path_length"] != pytest.approx(0.01 * history[7]["path_length"], rel=1e-3)
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert {"r1", "path"} <= set().union(*history)
    assert same(state_copy(model.generator), before["generator"])  # the intrinsic path is frozen, bit for bit
    assert not same(state_copy(model.res), before["res"])
    assert not same(state_copy(d), before["d"])
    assert not same(state_copy(stage.g_ema.res), before["ema_res"])  # EMA follows res …
    assert same(state_copy(stage.g_ema.style), before["ema_style"])  # … only (the reference's accumulate(g_ema.res))
    assert same(state_copy(stage.g_ema.generator), before["generator"])


def test_stage2_as_one_loop(tmp_path):
    """restart_per_inject=False: one count over the whole run (the old behaviour, --pretrain-one-loop)."""
    from test_train_recipe import narrow_vgg19

    g, d = ffhq_nets()
    stage = PretrainStage(init_dualstylegan(g), d, tiny_encoder(), narrow_vgg19(), steps=8,
                          inject_schedule=((7, 1), (6, 1), (5, 2)), d_reg_every=4, g_reg_every=3,
                          restart_per_inject=False)
    stage.path_regularize = 0.0  # the schedule is what is tested (no path-length phase: cheaper)
    faces = SampledFaces(g, n=16)
    history = TrainLoop(stage, faces.fetch, len(faces), cfg(tmp_path, 8)).run()
    assert [int(h["inject_index"]) for h in history] == [7, 7, 6, 6, 5, 5, 5, 5]
    assert [int(h["encoded"]) for h in history] == [1, 0, 0, 0, 1, 0, 0, 0]
    assert [int("r1" in h) for h in history] == [1, 0, 0, 0, 1, 0, 0, 0]


def test_stage2_vgg_loss_decreases_on_a_fixed_target(vgg):
    """With the same codes and noise every step (seeded), 20 G steps pull G(z₁, z₂) toward g(z⁺_l)."""
    g, d = ffhq_nets()
    model = init_dualstylegan(g)
    stage = PretrainStage(model, d, tiny_encoder(), vgg, steps=10, inject_schedule=((5, 1),), adv_weight=0.0)
    batch = SampledFaces(g, n=2).fetch([0, 1])
    losses = []
    for _ in range(20):
        requires_grad(model, False)
        for p in stage.trainable("g"):
            p.requires_grad_(True)
        stage.opt["g"].zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss, logs = stage.g_loss(batch, 1)  # step 1: z̃₂ = z₂, l = 5
        loss.backward()
        stage.opt["g"].step()
        losses.append(logs["perceptual"])
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses


def test_stage2_maps_encoder_codes_with_the_encoder_files_decoder(tmp_path, vgg, monkeypatch):
    """The reference maps E(g(z₂)) with the mapping of the decoder inside encoder.pt (pSp's decoder.style), not with
    the FFHQ generator's; pretrain() loads that decoder from the file and passes its mapping."""
    from dualstylegan.nets.stylegan2 import map_rows
    from dualstylegan.train import pretrain as pretrain_module

    g, d = ffhq_nets()
    decoder, _ = ffhq_nets(seed=7)  # an encoder.pt whose decoder is not this FFHQ model
    encoder = tiny_encoder()
    image = SampledFaces(g, n=2).fetch([0, 1])
    stage = PretrainStage(init_dualstylegan(g), d, encoder, vgg, mapping=decoder.style)
    with torch.no_grad():
        code = encoder(image)
        want = map_rows(decoder.style, code)
    assert torch.equal(stage.encode_extrinsic(image), want)
    assert not torch.allclose(want, stage.g.map_extrinsic(code))
    default = PretrainStage(init_dualstylegan(g), d, encoder, vgg)  # no decoder given: the intrinsic mapping
    assert torch.equal(default.encode_extrinsic(image), stage.g.map_extrinsic(code))

    official.save_encoder(tmp_path / "encoder.pt", encoder, decoder)
    seen = {}
    real_init = PretrainStage.__init__

    def spy(self, *args, **kwargs):
        seen["mapping"] = kwargs.get("mapping")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(pretrain_module.PretrainStage, "__init__", spy)
    pretrain((g, d), tmp_path / "encoder.pt", tmp_path / "run", vgg, steps=1,
             loop=LoopConfig(batch_size=2, progress=False, tensorboard=False, sample_every=0, device="cpu"))
    assert same(state_copy(seen["mapping"]), state_copy(decoder.style))


def test_pretrain_writes_a_resumable_generator_pretrain_file(tmp_path, vgg):
    g, d = ffhq_nets()
    model = pretrain((g, d), tiny_encoder(), tmp_path, vgg, steps=2, inject_schedule=((7, 1), (5, 1)),
                     loop=LoopConfig(batch_size=2, progress=False, tensorboard=False, sample_every=2, device="cpu"))
    loaded = official.load_dualstylegan(tmp_path / "generator.pt")
    assert same(state_copy(loaded), state_copy(model))
    nets = load_pretrain_checkpoint(tmp_path / "generator.pt")
    assert {"g", "d", "g_ema", "g_optim", "d_optim"} <= set(nets)
    assert same(state_copy(nets["g"].generator), state_copy(g))
    assert (tmp_path / "samples" / "000002.png").exists()


# ------------------------------------------------------------------------------------------- stage III
N_STYLES = 3


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory) -> Path:
    """A stage-II file (generator-pretrain.pt layout) with a visibly non-zero extrinsic path."""
    g, d = ffhq_nets()
    model = init_dualstylegan(g)
    with torch.no_grad():
        for k in range(model.res_index + 1):
            model.res[k].conv[0].weight.mul_(10)
    path = tmp_path_factory.mktemp("pretrained") / "generator-pretrain.pt"
    from dualstylegan.checkpoints import save_torch_file

    save_torch_file(path, {"g": model.state_dict(), "d": d.state_dict(), "g_ema": model.state_dict()})
    return path


def style_set(seed: int = 0) -> StyleSet:
    rng = torch.Generator().manual_seed(seed)
    low = torch.rand(N_STYLES, 3, 4, 4, generator=rng) * 2 - 1
    images = torch.nn.functional.interpolate(low, size=SIZE, mode="bilinear", align_corners=False)
    codes = {f"s{i}.png": np.random.default_rng(seed + i).standard_normal((2, 1, 10, 512)).astype(np.float32)
             for i in range(N_STYLES)}
    bank_in = CodeBank({k: v[0] for k, v in codes.items()})
    bank_ex = CodeBank({k: v[1] for k, v in codes.items()})
    return StyleSet(images, torch.stack([bank_in[n] for n in bank_in]), torch.stack([bank_ex[n] for n in bank_ex]),
                    names=bank_in.names)


def run_finetune(pretrained_file: Path, out: Path, steps: int, vgg, **kw):
    kw = {"d_reg_every": 2, "g_reg_every": 3, "ada_target": -1.0, "ada_kimg": 0.1, "ada_interval": 2, **kw}
    loop = LoopConfig(batch_size=2, progress=False, tensorboard=False, sample_every=0, checkpoint_every=100,
                      device="cpu")
    return finetune(pretrained_file, style_set(), out, vgg, cheap_id_loss, style="cartoon", steps=steps, loop=loop,
                    **kw)


def test_stage3_steps_alternate_and_train_res_only(pretrained_file, vgg, tmp_path):
    nets = load_pretrain_checkpoint(pretrained_file)
    g, d, g_ema = nets["g"], nets["d"], nets["g_ema"]
    data = style_set()
    stage = FinetuneStage(g, d, vgg, cheap_id_loss, g_ema, style="caricature", d_reg_every=2,
                          g_reg_every=3, sample_exstyles=data.exstyles[:2], style_set=data)
    assert (stage.lambda_id, stage.lambda_reg) == (4.0, 0.005)
    assert stage.ema_decay == 0.5 ** (32 / 10_000)  # the reference's per-step constant
    before = {"generator": state_copy(g.generator), "res": state_copy(g.res), "ema_res": state_copy(g_ema.res),
              "ema_style": state_copy(g_ema.style), "ema_generator": state_copy(g_ema.generator)}
    history = TrainLoop(stage, data.fetch, len(data), cfg(tmp_path, 4, sample_every=4)).run()
    assert [int(h["paired"]) for h in history] == [0, 1, 0, 1]
    assert all("perceptual" in h for h in history[1::2]) and not any("perceptual" in h for h in history[::2])
    assert all({"cx", "fm", "id", "g", "l2", "d"} <= set(h) for h in history)
    assert {"r1", "path", "ada_p"} <= set().union(*history)
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert same(state_copy(g.generator), before["generator"])
    assert not same(state_copy(g.res), before["res"])
    assert not same(state_copy(g_ema.res), before["ema_res"])
    assert same(state_copy(g_ema.style), before["ema_style"]) and same(state_copy(g_ema.generator),
                                                                        before["ema_generator"])
    assert (tmp_path / "samples" / "000004.png").exists()


def test_style_losses_read_vgg_once_and_match_the_separate_losses(pretrained_file, vgg):
    """Contextual (relu3_1, h 0.2), feature matching and the paired perceptual L1 from one VGG pass per image."""
    from dualstylegan import losses as L

    class Counting(VGG19Features):
        def forward(self, x, n_layers=5):
            self.calls.append(n_layers)
            return super().forward(x, n_layers)

    counting = Counting()
    counting.load_state_dict(vgg.state_dict())
    counting.calls = []
    nets = load_pretrain_checkpoint(pretrained_file)
    stage = FinetuneStage(nets["g"], nets["d"], counting.eval(), cheap_id_loss, nets["g_ema"], exemplars="per_epoch")
    images = style_set().images
    fake, target = images[:2].flip(3), images[1:3]
    for paired in (False, True):
        counting.calls.clear()
        terms = stage.style_losses(fake, target, paired)
        assert counting.calls == [3, 3]  # S, then the fake: relu1_1 … relu3_1
        cx = L.ContextualLoss()(vgg(fake, 3)[2], vgg(target, 3)[2])
        torch.testing.assert_close(terms["cx"], 0.25 * cx)
        torch.testing.assert_close(terms["fm"], 0.25 * L.FeatureMatchingLoss(vgg)(fake, target))
        assert ("perceptual" in terms) == paired
    torch.testing.assert_close(terms["perceptual"], L.PerceptualLoss(vgg, (0, 0.5, 1, 0, 0))(fake, target))


def test_paired_codes_recolor_rows_8_on_and_jitter_the_extrinsic_code(pretrained_file, vgg):
    nets = load_pretrain_checkpoint(pretrained_file)
    stage = FinetuneStage(nets["g"], nets["d"], vgg, cheap_id_loss, nets["g_ema"], style_set=style_set())
    batch = style_set().fetch([0, 1])
    codes = stage.draw(batch, step=1)
    assert codes["z_plus"] and len(codes["styles"]) == 1
    z = codes["styles"][0]
    assert torch.equal(z[:, :8], batch["instyle"][:, :8]) and not torch.equal(z[:, 8:], batch["instyle"][:, 8:])
    jitter = codes["exstyle"] - stage.g.map_extrinsic(batch["exstyle"])
    assert 0.08 < jitter.std().item() < 0.12
    random_codes = stage.draw(batch, step=2)
    assert not random_codes["z_plus"] and random_codes["styles"][0].shape == (2, 512)


def test_stage3_phases_draw_their_own_exemplars_as_the_reference(pretrained_file, vgg):
    """Each phase draws exemplars uniformly with replacement (the reference's get_paired_data); R1 of a paired step
    reads the D phase's S; exemplars='per_epoch' uses the loop's batch instead."""
    nets = load_pretrain_checkpoint(pretrained_file)
    data = style_set()
    stage = FinetuneStage(nets["g"], nets["d"], vgg, cheap_id_loss, nets["g_ema"], style_set=data)
    batch = data.fetch([0, 1])
    torch.manual_seed(0)
    drawn = []
    for _ in range(20):
        ex = stage.exemplar_batch(batch)
        rows = [int(torch.nonzero((data.exstyles == e).flatten(1).all(1))[0]) for e in ex["exstyle"]]
        for r, image, instyle in zip(rows, ex["image"], ex["instyle"]):
            assert torch.equal(image, data.images[r]) and torch.equal(instyle, data.instyles[r])
        drawn.append(rows)
    assert {r for rows in drawn for r in rows} == set(range(N_STYLES))
    assert any(a == b for a, b in drawn) and len({tuple(r) for r in drawn}) > 3  # with replacement, varying
    with torch.no_grad():
        stage.d_loss(batch, 1)
    d_images = stage.d_real(batch, 1)
    assert any(torch.equal(d_images, data.images[list(r)]) for r in
               [(i, j) for i in range(N_STYLES) for j in range(N_STYLES)])
    assert stage.d_real(batch, 2) is batch["real"]  # random-content steps: the loop's mirrored images
    epoch = FinetuneStage(nets["g"], nets["d"], vgg, cheap_id_loss, nets["g_ema"], exemplars="per_epoch")
    assert epoch.exemplar_batch(batch)["exstyle"] is not None
    assert torch.equal(epoch.exemplar_batch(batch)["exstyle"], batch["exstyle"])
    assert epoch.d_real(batch, 1) is batch["image"]
    with pytest.raises(ValueError, match="style_set"):
        FinetuneStage(nets["g"], nets["d"], vgg, cheap_id_loss, nets["g_ema"])


@pytest.mark.parametrize("id_inject", ["fresh", "shared"])
def test_stage3_identity_content_inject_index(pretrained_file, vgg, id_inject, monkeypatch):
    """The ID loss's content image G(z) draws a new inject index (the reference) or reuses the fake's."""
    nets = load_pretrain_checkpoint(pretrained_file)
    data = style_set()
    stage = FinetuneStage(nets["g"], nets["d"], vgg, cheap_id_loss, nets["g_ema"], style_set=data,
                          id_inject=id_inject, mixing=1.0, cx_weight=0, fm_weight=0)
    seen = []
    real_generate = stage.generate

    def generate(codes, use_res=True):
        seen.append((use_res, codes["inject"]))
        return real_generate(codes, use_res)

    monkeypatch.setattr(stage, "generate", generate)
    torch.manual_seed(0)
    batch = data.fetch([0, 1])
    for step in (0, 2, 4, 6, 8, 10):  # random-content steps, two z always (mixing 1)
        stage.g_loss(batch, step)
    pairs = list(zip(seen[::2], seen[1::2]))
    assert all(fake[0] and not content[0] and fake[1] is not None for fake, content in pairs)
    same_index = [fake[1] == content[1] for fake, content in pairs]
    assert all(same_index) if id_inject == "shared" else not all(same_index)


def test_stage3_resume_is_exact_and_writes_an_official_generator(pretrained_file, vgg, tmp_path):
    straight = run_finetune(pretrained_file, tmp_path / "straight", 6, vgg)
    run_finetune(pretrained_file, tmp_path / "split", 4, vgg)
    resumed = run_finetune(pretrained_file, tmp_path / "split", 6, vgg, snapshots=(5,))
    assert same(state_copy(straight), state_copy(resumed))
    from dualstylegan.checkpoints import load_torch_file

    ckpts = [load_torch_file(tmp_path / run / "checkpoint.pt") for run in ("straight", "split")]
    assert ckpts[0]["step"] == ckpts[1]["step"] == 6
    for net in ("g", "d", "g_ema"):
        assert same(ckpts[0]["networks"][net], ckpts[1]["networks"][net]), net
    assert ckpts[0]["stage_state"] == ckpts[1]["stage_state"]
    for name in ("generator.pt", "generator-000005.pt"):
        loaded = official.load_dualstylegan(tmp_path / "split" / name)
        assert isinstance(loaded, type(straight))
    assert same(state_copy(official.load_dualstylegan(tmp_path / "split" / "generator.pt")), state_copy(straight))
    assert set(load_torch_file(tmp_path / "split" / "generator.pt")) == {"g_ema"}


def test_style_set_from_files_and_presets(tmp_path):
    data = style_set()
    folder = tmp_path / "images"
    folder.mkdir()
    for name, img in zip(data.names, data.images):
        arr = ((img.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).resize((80, 80)).save(folder / name)
    CodeBank(dict(zip(data.names, data.instyles))).save(tmp_path / "instyle_code.npy")
    CodeBank(dict(zip(data.names, data.exstyles))).save(tmp_path / "exstyle_code.npy")
    loaded = StyleSet.from_files(folder, tmp_path / "exstyle_code.npy", tmp_path / "instyle_code.npy", SIZE)
    assert loaded.names == data.names and loaded.images.shape == (N_STYLES, 3, SIZE, SIZE)
    assert torch.equal(loaded.exstyles, data.exstyles) and torch.equal(loaded.instyles, data.instyles)
    batch = loaded.fetch([2, 0])
    assert batch["image"].shape == (2, 3, SIZE, SIZE) and batch["instyle"].shape == (2, 10, 512)
    (folder / data.names[1]).unlink()
    with pytest.raises(FileNotFoundError, match="s1.png"):
        StyleSet.from_files(folder, tmp_path / "exstyle_code.npy", tmp_path / "instyle_code.npy", SIZE)
    # (λ_ID, λ_reg) of the paper's styles come from the style registry
    from dualstylegan.styles import DEFAULT, get_style

    assert {s: get_style(s).training for s in ("cartoon", "caricature", "anime")} == \
        {"cartoon": (1, 0.015), "caricature": (4, 0.005), "anime": (1, 0.02)}
    assert get_style("Anime").training == (1, 0.02) and get_style("pixar").training == DEFAULT.training
