"""The whole training recipe (``dualstylegan train`` and the per-step verbs) on a tiny synthetic style set.

The FFHQ StyleGAN2 and the pSp encoder are narrow 64² networks written in the official layouts. The feature nets
(VGG19, LPIPS, IR-SE50) are narrow random stand-ins: the weight files are placeholders that must be found, and
loading them gives the stand-ins (:func:`tiny_feature_nets`). The slow test runs the CLI on full-size random
feature nets written in their official key layouts, so every file is loaded the way a real run does. A couple of
iterations per step. The module's one training run (:func:`trained`) is never changed: a test that writes copies it.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NARROW_CHANNELS
from PIL import Image

from dualstylegan.cli import main

SIZE = 64
NAME = "toy"
QUICK = ["--size", str(SIZE), "--batch", "2", "--device", "cpu", "--no-align", "--quiet", "--no-tensorboard",
         "--finetune-stylegan-iters", "2", "--destylize-iters", "2", "--pretrain-iters", "2", "--finetune-iters", "2",
         "--refine-iters", "2", "--sampler-epochs", "2", "--sample-every", "1", "--checkpoint-every", "1"]


def smooth_image(seed: int, w: int, h: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
    return Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def write_style_set(folder: Path, n: int = 4) -> Path:
    """n smooth images of different sizes and formats, a text file and a damaged image."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fmt = ("png", "jpg", "webp", "bmp")[i % 4]
        smooth_image(i, 64 + 16 * i, 80 - 8 * i).save(folder / f"style{i}.{fmt}")
    (folder / "notes.txt").write_text("where these came from\n")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the run is tiny, and two processes each spinning two OpenMP threads on two shared cores
    slow it down some 20× (about 8 s alone)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


FEATURE_FILES = {"vgg": "vgg19-dcbb9e9d.pth", "lpips-vgg16": "vgg16-397923af.pth", "lpips": "vgg.pth",
                 "identity": "model_ir_se50.pth"}


def write_networks(root: Path) -> dict[str, Path]:
    """The narrow FFHQ StyleGAN2 (with D) and Z+ encoder.pt in the official layouts."""
    from dualstylegan import official
    from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
    from dualstylegan.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=SIZE, channels=NARROW_CHANNELS))
    d = Discriminator(DiscriminatorConfig(size=SIZE, channels=NARROW_CHANNELS))
    official.save_stylegan2(root / "stylegan2-ffhq-config-f.pt", g, d)
    enc = PSPEncoder(EncoderConfig(output_size=SIZE, widths=(16, 16, 16, 32), units=(1, 1, 1, 1), head_channels=32,
                                   start_from_latent_avg=True, z_plus=True), latent_avg=torch.randn(512) * 0.1)
    official.save_encoder(root / "encoder.pt", enc, g)
    return {"ffhq": root / "stylegan2-ffhq-config-f.pt", "encoder": root / "encoder.pt"}


def write_full_size_feature_nets(root: Path) -> dict[str, Path]:
    """Full-size random feature nets in their official key layouts: torchvision's (features.N.*), the lpips
    package's vgg.pth (linK.model.1.weight), model_ir_se50.pth."""
    from dualstylegan.nets.encoder import IdentityNet
    from dualstylegan.nets.perceptual import LPIPS, VGG16Features, VGG19Features

    torch.manual_seed(0)
    torch.save(VGG19Features().state_dict(), root / FEATURE_FILES["vgg"])
    torch.save(VGG16Features().state_dict(), root / FEATURE_FILES["lpips-vgg16"])
    lins = {k: v.abs() * 0.1 for k, v in LPIPS().state_dict().items() if k.startswith("lin")}
    torch.save({k: torch.rand_like(v) for k, v in lins.items()}, root / FEATURE_FILES["lpips"])
    torch.save(IdentityNet().eval().state_dict(), root / FEATURE_FILES["identity"])
    return {k: root / v for k, v in FEATURE_FILES.items()}


def narrow_vgg19(divide: int = 16):
    """A VGG19Features with 1/``divide`` of the channels in every layer (same layers, taps and input scaling),
    random weights."""
    from dualstylegan.nets.perceptual import (IMAGENET_MEAN, IMAGENET_STD, VGG19_CFG, VGG19Features, make_vgg_features,
                                              relu_indices)

    class NarrowVGG19(VGG19Features):
        def __init__(self):
            torch.nn.Module.__init__(self)  # not the full-size stack
            self.features = make_vgg_features([v if v == "M" else max(4, v // divide) for v in VGG19_CFG])
            self.taps = relu_indices(VGG19_CFG, "first")
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 2 - 1, persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 2, persistent=False)
            self.requires_grad_(False)

    return NarrowVGG19()


def tiny_feature_nets() -> dict:
    """{'vgg', 'lpips', 'identity'}: what the recipe would load from the feature-net files, narrow and random."""
    torch.manual_seed(0)
    vgg, backbone = narrow_vgg19().eval(), narrow_vgg19().eval()

    def lpips(x, y):  # per-sample distance of unit-normalised features, as LPIPS
        return sum(((a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)) ** 2)
                   .sum(1).mean((1, 2)) for a, b in zip(backbone(x, 3), backbone(y, 3)))

    def identity(x, y):
        return 1 - torch.nn.functional.cosine_similarity(torch.nn.functional.avg_pool2d(x, 8).flatten(1),
                                                        torch.nn.functional.avg_pool2d(y, 8).flatten(1)).mean()

    return {"vgg": vgg, "lpips": lpips, "identity": identity}


@contextlib.contextmanager
def tiny_feature_net_files():
    """Feature-net files load as :func:`tiny_feature_nets` (they must still be found); given modules are used."""
    from dualstylegan.train import recipe

    real, nets = recipe.load_feature_net, tiny_feature_nets()

    def load(key, given, find):
        if getattr(given, key) is not None:
            return real(key, given, find)
        find(key)
        return nets[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe, "load_feature_net", load)
        yield


@pytest.fixture(autouse=True)
def tiny_feature_net_loading():
    with tiny_feature_net_files():
        yield


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The user-supplied files: narrow FFHQ StyleGAN2 + encoder.pt; placeholder feature-net files."""
    root = tmp_path_factory.mktemp("assets")
    files = write_networks(root)
    for key, name in FEATURE_FILES.items():
        (root / name).write_bytes(b"a placeholder: loading gives tiny_feature_nets()")
        files[key] = root / name
    return files


def file_args(assets, **replace) -> list[str]:
    out = []
    for key, path in {**assets, **replace}.items():
        out += [f"--{key}", str(path)]
    return out


@pytest.fixture(autouse=True)
def no_home_files(tmp_path_factory, monkeypatch):
    """No weight file is found outside the test (the default search folders are empty)."""
    empty = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(empty / "dsg"))
    monkeypatch.setenv("TORCH_HOME", str(empty / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(empty / "hf"))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def markers(work: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in work.glob("*/done.json")}


def train_once(assets, root: Path) -> dict:
    """One whole `dualstylegan train` run: {style dir, work dir, out dir, argv, stdout}."""
    style = write_style_set(root / "styles")
    work, out = root / "work", root / "packs"
    argv = ["train", str(style), "--name", NAME, "--work-dir", str(work), "--out", str(out), *QUICK,
            *file_args(assets)]
    env = {"DUALSTYLEGAN_HOME": str(root / "home"), "TORCH_HOME": str(root / "torch"), "HF_HUB_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        rc, stdout, stderr = run_cli(argv)
    assert rc == 0, stderr
    return {"style": style, "work": work, "out": out, "argv": argv, "stdout": stdout}


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    """The module's one training run; tests read it, and those that write work on :func:`own_copy`."""
    with tiny_feature_net_files():
        return train_once(assets, tmp_path_factory.mktemp("run"))


def own_copy(trained: dict, tmp_path: Path) -> dict:
    """A copy of the trained work dir (markers are relative to it) whose pack goes to ``tmp_path/packs``."""
    work, out = tmp_path / "work", tmp_path / "packs"
    shutil.copytree(trained["work"], work)
    recipe = json.loads((work / "recipe.json").read_text())
    (work / "recipe.json").write_text(json.dumps({**recipe, "out": str(out)}))
    swap = {str(trained["work"]): str(work), str(trained["out"]): str(out)}
    return {**trained, "work": work, "out": out, "argv": [swap.get(a, a) for a in trained["argv"]]}


# ------------------------------------------------------------------------------------------- end to end
def test_train_writes_a_pack_that_transfer_loads(trained, tmp_path):
    from dualstylegan.codes import CodeBank
    from dualstylegan.pipeline import StyleTransferPipeline
    from dualstylegan.train.steps import steps

    work, pack = trained["work"], trained["out"] / NAME
    for k, step in enumerate(steps(), 1):  # "step k of n: name: what it does", one line per step
        assert f"step {k} of {len(steps())}: {step.name}: {step.help}\n" in trained["stdout"]
        assert (work / step.name / "done.json").is_file()
    for name in ("generator.pt", "exstyle_code.npy", "refined_exstyle_code.npy", "instyle_code.npy", "sampler.pt",
                 "training.json"):
        assert (pack / name).is_file(), name
    assert (trained["out"] / "encoder.pt").is_file() and not (pack / "encoder.pt").exists()
    # every usable image became a 64² PNG and a code; the others are listed with a reason
    prepared = sorted(p.name for p in (work / "prepare" / "images").glob("*.png"))
    assert prepared == [f"style{i}.png" for i in range(4)]
    assert all(Image.open(work / "prepare" / "images" / n).size == (SIZE, SIZE) for n in prepared)
    assert CodeBank.load(pack / "refined_exstyle_code.npy").names == prepared
    rejected = (work / "prepare" / "rejected.txt").read_text()
    assert "notes.txt\t" in rejected and "not an image file" in rejected and "broken.png\t" in rejected
    assert "rejected notes.txt:" in trained["stdout"] and "rejected broken.png:" in trained["stdout"]
    # sample grids every --sample-every steps, checkpoints of the training-loop steps
    for step in ("finetune-stylegan", "pretrain", "finetune"):
        assert sorted(p.name for p in (work / step / "samples").glob("*.png")) == ["000001.png", "000002.png"], step
        assert (work / step / "checkpoint.pt").is_file()
    assert json.loads((work / "finetune" / "done.json").read_text())["settings"]["lambda_id"] == 1.0

    pipe = StyleTransferPipeline.from_pretrained(str(pack), sampler=True)
    assert pipe.sampler is not None and len(pipe.codes) == 4 and pipe.generator.size == SIZE

    photo = tmp_path / "photo.png"
    smooth_image(9, 256, 256).save(photo)
    rc, _, stderr = run_cli(["transfer", str(photo), "--style", str(pack), "--style-id", "1", "--no-align",
                             "--device", "cpu", "-o", str(tmp_path / "out"), "--quiet"])
    assert rc == 0, stderr
    written = list((tmp_path / "out").glob("*.png"))
    assert len(written) == 1 and Image.open(written[0]).size == (SIZE, SIZE)


def test_second_run_skips_every_step(trained):
    """On the module's run itself: it changes nothing there (recipe.json is written again, the same)."""
    from dualstylegan.train.steps import step_names

    before, recipe = markers(trained["work"]), (trained["work"] / "recipe.json").read_text()
    rc, stdout, stderr = run_cli(trained["argv"])
    assert rc == 0, stderr
    for step in step_names():
        assert f"{step}: done, skipped" in stdout
    assert "ran: nothing" in stdout
    assert markers(trained["work"]) == before and (trained["work"] / "recipe.json").read_text() == recipe


def test_deleting_a_marker_reruns_only_that_step(trained, tmp_path):
    run = own_copy(trained, tmp_path)
    work = run["work"]
    (work / "fit-sampler" / "done.json").unlink()
    before = markers(work)
    rc, stdout, stderr = run_cli(run["argv"])
    assert rc == 0, stderr
    assert "step 7 of 8: fit-sampler: train the extrinsic style code sampler: sampler.pt\n" in stdout
    assert "ran: fit-sampler, pack" in stdout  # the pack is rewritten with the new sampler
    after = markers(work)
    assert {s for s in after if after[s] != before.get(s)} == {"fit-sampler", "pack"}


def test_a_step_verb_and_its_dependents(trained, tmp_path):
    """`dualstylegan refine-codes WORK_DIR` runs that step from the stored recipe; then `train` reruns only what
    reads its outputs (fit-sampler, pack)."""
    run = own_copy(trained, tmp_path)
    work = run["work"]
    before = markers(work)
    rc, stdout, stderr = run_cli(["refine-codes", str(work), "--quiet"])
    assert rc == 0, stderr
    assert "refine-codes: done in" in stdout
    rc, stdout, stderr = run_cli(run["argv"])
    assert rc == 0, stderr
    assert "ran: fit-sampler, pack" in stdout
    after = markers(work)
    assert {s for s in after if after[s] != before.get(s)} == {"refine-codes", "fit-sampler", "pack"}


# ------------------------------------------------------------------------------------------- errors
def test_missing_feature_net_file_stops_before_training(assets, tmp_path):
    style = write_style_set(tmp_path / "styles", n=2)
    work = tmp_path / "work"
    missing = tmp_path / "nowhere" / "model_ir_se50.pth"
    rc, _, stderr = run_cli(["train", str(style), "--name", NAME, "--work-dir", str(work), *QUICK,
                             *file_args(assets, identity=missing)])
    assert rc == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(missing) in lines[0] and "--identity" in lines[0]
    assert not work.exists()  # nothing prepared, nothing trained


def test_weight_file_not_given_and_not_found(assets, tmp_path):
    style = write_style_set(tmp_path / "styles", n=2)
    argv = ["train", str(style), "--name", NAME, "--work-dir", str(tmp_path / "work"), *QUICK,
            *file_args({k: v for k, v in assets.items() if k != "vgg"})]
    rc, _, stderr = run_cli(argv)
    assert rc == 1 and "vgg19-dcbb9e9d.pth" in stderr and "--vgg" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()


def test_several_missing_weight_files_are_listed_one_per_line(tmp_path):
    """With no weight file at all: a first sentence, then one line per file with its option and where to get it."""
    from dualstylegan.weight_files import WEIGHT_FILES

    style = write_style_set(tmp_path / "styles", n=2)
    rc, stdout, stderr = run_cli(["train", str(style), "--name", NAME, "--work-dir", str(tmp_path / "work"), *QUICK])
    assert rc == 1 and stdout == ""
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("error: 6 weight files are missing:") and len(lines) == 7
    heads = {f"  {spec.flag} {spec.names[0]}: {spec.source}; looked in " for spec in WEIGHT_FILES.values()}
    assert {next(h for h in heads if line.startswith(h)) for line in lines[1:]} == heads
    assert all(len(line) < 400 for line in lines)
    assert not (tmp_path / "work").exists()


def test_weight_files_are_found_in_the_usual_places(assets, tmp_path, monkeypatch):
    from dualstylegan.weight_files import find_weights, search_folders

    torch_home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(assets["vgg"], torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    assert find_weights("vgg") == torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert search_folders("identity")[0].name == "models"


def test_too_few_usable_images_fail_clearly(assets, tmp_path):
    style = tmp_path / "styles"
    style.mkdir()
    smooth_image(0, 64, 64).save(style / "only.png")
    (style / "readme.txt").write_text("x")
    rc, _, stderr = run_cli(["train", str(style), "--name", NAME, "--work-dir", str(tmp_path / "work"), *QUICK,
                             *file_args(assets)])
    assert rc == 1
    assert "only 1 of the images" in stderr and "at least 2" in stderr and "readme.txt" in stderr
    assert not (tmp_path / "work" / "prepare" / "done.json").exists()
    assert not (tmp_path / "work" / "finetune-stylegan").exists()


def test_colliding_file_names_get_distinct_prepared_names(tmp_path):
    """a.png a.PNG a_png.png b.jpg b.JPG: five images, five prepared PNGs (distinct also ignoring case), a true count;
    a second run reuses them, and a replaced source is prepared again."""
    from dualstylegan.train.data import prepare_style_images, target_names

    names = ["a.PNG", "a.png", "a_png.png", "b.JPG", "b.jpg"]
    assert target_names([Path(n) for n in names]) == ["a_png_2.png", "a_png_3.png", "a_png.png", "b_jpg.png",
                                                      "b_jpg_2.png"]
    assert target_names([Path("x.png"), Path("X.jpg"), Path("y.png")]) == ["x_png.png", "X_jpg.png", "y.png"]
    style = tmp_path / "styles"
    style.mkdir()
    for i, name in enumerate(names):
        smooth_image(i, 64, 64).save(style / name, format="JPEG" if name.lower().endswith("jpg") else "PNG")
    if len({p.name for p in style.iterdir()}) < len(names):
        pytest.skip("this file system folds case")
    argv = ["prepare", str(tmp_path / "work"), "--name", NAME, "--style-dir", str(style), "--size", "64",
            "--no-align", "--quiet"]
    rc, stdout, stderr = run_cli(argv)
    assert rc == 0, stderr
    assert "5 style image(s) ready" in stdout and "a.png is prepared as a_png_3.png" in stdout
    images = tmp_path / "work" / "prepare" / "images"
    prepared = sorted(p.name for p in images.glob("*.png"))
    assert prepared == ["a_png.png", "a_png_2.png", "a_png_3.png", "b_jpg.png", "b_jpg_2.png"]
    assert len({(images / n).read_bytes() for n in prepared}) == 5  # five different images
    marker = json.loads((tmp_path / "work" / "prepare" / "done.json").read_text())
    assert sorted(marker["kept"]) == prepared
    before = {n: (images / n).stat().st_mtime_ns for n in prepared}
    smooth_image(9, 64, 64).save(style / "a_png.png")  # a replaced source: prepared again, the others kept
    kept, rejected = prepare_style_images(style, images, 64, align=False, progress=False)
    assert sorted(p.name for p in kept) == prepared and not rejected
    after = {n: (images / n).stat().st_mtime_ns for n in prepared}
    assert {n for n in prepared if after[n] != before[n]} == {"a_png.png"}


def test_step_verb_needs_the_earlier_steps(tmp_path):
    rc, _, stderr = run_cli(["finetune", str(tmp_path / "nothing")])
    assert rc == 1 and "no recipe.json" in stderr
    (tmp_path / "w").mkdir()
    rc, _, stderr = run_cli(["prepare", str(tmp_path / "w"), "--name", NAME])
    assert rc == 1 and "--style-dir" in stderr


# ------------------------------------------------------------------------------------------- settings
def test_reference_defaults_and_scaling():
    from dualstylegan.refine import REFINE_ITERATIONS
    from dualstylegan.train.destylize import DESTYLIZE_ITERATIONS
    from dualstylegan.train.finetune import FINETUNE_STEPS
    from dualstylegan.train.finetune_stylegan import FINETUNE_STYLEGAN_STEPS
    from dualstylegan.train.pretrain import PRETRAIN_STEPS
    from dualstylegan.train.recipe import RecipeConfig
    from dualstylegan.train.steps import destylize, finetune, finetune_stylegan, fit_sampler, pretrain

    c = RecipeConfig()
    assert (c.size, c.batch) == (1024, 4)
    assert [finetune_stylegan.iterations(c), destylize.iterations(c), pretrain.iterations(c),
            finetune.iterations(c), c.iterations("refine_iters", REFINE_ITERATIONS)] == \
        [FINETUNE_STYLEGAN_STEPS, DESTYLIZE_ITERATIONS, PRETRAIN_STEPS, FINETUNE_STEPS, REFINE_ITERATIONS] == \
        [600, 300, 3600, 1500, 100]
    assert fit_sampler.epochs_for(c, 200) == 500 and fit_sampler.epochs_for(c, 3) == 500_000 // 999
    quick = RecipeConfig(scale=0.01)
    assert finetune_stylegan.iterations(quick) == 6 and quick.iterations("refine_iters", REFINE_ITERATIONS) == 1
    assert finetune.iterations(RecipeConfig(finetune_iters=1400)) == 1400
    assert RecipeConfig().preset("caricature") == (4.0, 0.005)
    assert RecipeConfig(style="anime").preset("mine") == (1.0, 0.02)
    assert RecipeConfig(lambda_id=0).preset("cartoon") == (0.0, 0.015)
    assert RecipeConfig().preset("mine") == (1.0, 0.01)
    with pytest.raises(ValueError):
        RecipeConfig(size=100)
    assert json.loads(json.dumps(RecipeConfig().to_dict())) == RecipeConfig().to_dict()


def test_more_iterations_continue_the_checkpoint(trained, tmp_path):
    """A larger iteration count resumes the step from its checkpoint (no start over); what reads it runs again."""
    from dualstylegan.checkpoints import load_torch_file

    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)  # the work dir can move: markers hold paths relative to it
    first = (work / "finetune" / "samples" / "000001.png").stat().st_mtime_ns
    argv = [a if a != str(trained["work"]) else str(work) for a in trained["argv"]]
    argv[argv.index("--out") + 1] = str(tmp_path / "packs")
    argv[argv.index("--finetune-iters") + 1] = "3"
    rc, stdout, stderr = run_cli(argv)
    assert rc == 0, stderr
    assert "step 5 of 8: finetune: fine-tune DualStyleGAN on the style set: the style's generator.pt (its settings " \
        "changed)" in stdout
    assert "finetune: starting over" not in stdout and "finetune: resuming where the last run stopped" in stdout
    assert "ran: finetune, refine-codes, fit-sampler, pack" in stdout
    assert load_torch_file(work / "finetune" / "checkpoint.pt")["step"] == 3
    assert (work / "finetune" / "samples" / "000001.png").stat().st_mtime_ns == first
    assert (work / "finetune" / "samples" / "000003.png").is_file()
    assert (tmp_path / "packs" / NAME / "generator.pt").is_file()


def test_pack_never_replaces_a_foreign_pack(trained, tmp_path):
    run = own_copy(trained, tmp_path)
    foreign = tmp_path / "models" / NAME
    foreign.mkdir(parents=True)
    (foreign / "generator.pt").write_bytes(b"someone else's")
    rc, _, stderr = run_cli(["pack", str(run["work"]), "--out", str(tmp_path / "models")])
    assert rc == 1 and "did not write" in stderr
    assert (foreign / "generator.pt").read_bytes() == b"someone else's"


def test_injected_feature_nets_need_no_weight_files(trained, tmp_path):
    """Library use: FeatureNets modules replace the VGG19 / LPIPS / IR-SE50 files (the other paths come from the
    work dir's recipe.json)."""
    from dualstylegan.train.recipe import RecipeConfig, train_style
    from dualstylegan.weight_files import FeatureNets

    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)
    (work / "refine-codes" / "done.json").unlink()
    recipe = json.loads((work / "recipe.json").read_text())
    assert set(recipe["files"]) == {"ffhq", "encoder", "vgg", "lpips", "lpips_vgg16", "identity"}
    recipe["files"] = {k: v for k, v in recipe["files"].items() if k in ("ffhq", "encoder")}
    (work / "recipe.json").write_text(json.dumps(recipe))
    lines: list[str] = []
    calls = []

    nets = tiny_feature_nets()

    def lpips(x, y):
        calls.append(x.shape)
        return nets["lpips"](x, y)

    config = RecipeConfig(**{**recipe["config"], "progress": False})
    result = train_style(trained["style"], NAME, work, out=tmp_path / "packs", config=config,
                         feature_nets=FeatureNets(vgg=nets["vgg"], lpips=lpips, identity=lambda x, y: x.sum() * 0),
                         echo=lines.append)
    assert result.ran == ["refine-codes", "fit-sampler", "pack"] and calls
    assert result.pack == tmp_path / "packs" / NAME and (result.pack / "refined_exstyle_code.npy").is_file()


def test_images_without_faces_are_rejected_when_aligning(assets, tmp_path):
    pytest.importorskip("dlib")
    style = tmp_path / "styles"
    style.mkdir()
    for i in range(2):
        smooth_image(i, 96, 96).save(style / f"s{i}.png")
    argv = ["train", str(style), "--name", NAME, "--work-dir", str(tmp_path / "work"), *QUICK, *file_args(assets)]
    argv.remove("--no-align")
    rc, stdout, stderr = run_cli(argv)
    assert rc == 1 and "only 0 of the images" in stderr and "no face" in stderr and "--no-align" in stderr
    assert "rejected s0.png: no face was found" in stdout


# ------------------------------------------------------------------------------------------- real files
@pytest.mark.slow
def test_train_loads_full_size_feature_net_files(tmp_path):
    """The CLI on full-size random VGG19, VGG16 + LPIPS linear layers and IR-SE50 files in their official layouts:
    every file is loaded the way a real run does."""
    files = {**write_networks(tmp_path), **write_full_size_feature_nets(tmp_path)}
    from dualstylegan.train import recipe, weights

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe, "load_feature_net", weights.load_feature_net)  # undo the stand-ins
        run = train_once(files, tmp_path / "run")
    assert (run["out"] / NAME / "refined_exstyle_code.npy").is_file()
    lpips = weights.load_lpips(files["lpips"], files["lpips-vgg16"])
    assert lpips(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).shape == (1,)
