"""The same computations on a CUDA GPU: reference vectors, fast ops against their references, the pipeline on
the tiny pack (float32 equal to the CPU; float16/bfloat16 close), a bf16-autocast training run and its exact
resume. Skipped without CUDA (CI has none); run on a GPU machine with ``python -m pytest tests/test_gpu.py``."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def no_tf32():
    """TF32 matmuls/convolutions round to 10 mantissa bits: the vectors' 1e-4 tolerance needs full float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _generator_cases():
    from test_reference_generators import GENERATOR_CASES

    return [pytest.param(c, ref, id=f"{c}-{'refops' if ref else 'fast'}") for c in GENERATOR_CASES
            for ref in (False, True)]


@pytest.mark.parametrize("case,reference_ops", _generator_cases())
def test_reference_case_on_cuda(case, reference_ops):
    from dualstylegan.ops import use_reference_ops
    from test_reference_generators import _run_case

    with use_reference_ops(reference_ops):
        _run_case(case, device="cuda")


@pytest.mark.parametrize("up,down,padding,k,demod", [(1, 1, 1, 3, True), (1, 1, 0, 1, False), (2, 1, 0, 3, True)])
@pytest.mark.parametrize("batch", [1, 3])
def test_modulated_conv2d_fast_matches_reference_on_cuda(up, down, padding, k, demod, batch):
    from dualstylegan import ops

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(batch, 16, 12, 12, device="cuda", generator=g, requires_grad=True)
    weight = torch.randn(8, 16, k, k, device="cuda", generator=g, requires_grad=True)
    styles = torch.randn(batch, 16, device="cuda", generator=g, requires_grad=True)
    ref = ops.modulated_conv2d_ref(x, weight, styles, demod, up, down, padding)
    fast = ops.modulated_conv2d(x, weight, styles, demod, up, down, padding)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    gy = torch.randn(ref.shape, device="cuda", generator=g)
    for a, b in zip(torch.autograd.grad(ref, (x, weight, styles), gy),
                    torch.autograd.grad(fast, (x, weight, styles), gy)):
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-4)


def test_pipeline_on_cuda_equals_cpu_and_half_precision_is_close(tiny_pack, face_tensor):
    from dualstylegan.pipeline import StyleTransferPipeline

    cpu = StyleTransferPipeline.from_pretrained(str(tiny_pack), wplus=True)
    gpu = StyleTransferPipeline.from_pretrained(str(tiny_pack), wplus=True, device="cuda")
    for kw in ({}, {"preserve_color": True}, {"wplus": True}, {"seed": 3}):
        expect = cpu.transfer(face_tensor, 1, **kw).image
        got = gpu.transfer(face_tensor.cuda(), 1, **kw).image
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expect, atol=1e-4, rtol=1e-4, msg=f"{kw}")
    for dtype in (torch.float16, torch.bfloat16):
        half = StyleTransferPipeline.from_pretrained(str(tiny_pack), device="cuda", dtype=dtype)
        for kw in ({}, {"seed": 3}):
            got = half.transfer(face_tensor.cuda(), 1, **kw).image.float().cpu()
            expect = cpu.transfer(face_tensor, 1, **kw).image
            assert torch.isfinite(got).all()
            assert (got - expect).abs().mean() < 0.05, f"{dtype}: mean |diff| {(got - expect).abs().mean():.3g}"


def test_training_with_bf16_autocast_on_cuda_resumes_exactly(tmp_path):
    from test_train_finetune_stylegan import SIZE, tiny_nets, write_style_set

    from dualstylegan.checkpoints import load_torch_file
    from dualstylegan.train.data import prepare_style_images
    from dualstylegan.train.config import LoopConfig
    from dualstylegan.train.finetune_stylegan import finetune_stylegan

    write_style_set(tmp_path / "raw")
    prepare_style_images(tmp_path / "raw", tmp_path / "prep", size=SIZE, align=False, progress=False)
    kw = dict(loop=LoopConfig(batch_size=4, device="cuda", amp=True, checkpoint_every=2, sample_every=0,
                              progress=False, tensorboard=False), d_reg_every=2, g_reg_every=3)
    whole = finetune_stylegan(tiny_nets(), tmp_path / "prep", tmp_path / "whole", steps=4, **kw)
    finetune_stylegan(tiny_nets(), tmp_path / "prep", tmp_path / "split", steps=2, name="first", **kw)
    split = finetune_stylegan(tiny_nets(), tmp_path / "prep", tmp_path / "split", steps=4, **kw)
    a, b = load_torch_file(whole)["g_ema"], load_torch_file(split)["g_ema"]
    assert all(torch.isfinite(v).all() for v in a.values())
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0, rtol=0, msg=k)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 3])
def test_modulated_conv2d_half_precision_stays_close_to_float32(dtype, batch):
    """In half precision the fast path is no less accurate than the reference's own computation."""
    from dualstylegan import ops

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(batch, 64, 16, 16, device="cuda", generator=g)
    weight = torch.randn(32, 64, 3, 3, device="cuda", generator=g)
    styles = torch.randn(batch, 64, device="cuda", generator=g) * 3
    exact = ops.modulated_conv2d_ref(x, weight, styles, True, 1, 1, 1)
    ref = ops.modulated_conv2d_ref(x.to(dtype), weight.to(dtype), styles.to(dtype), True, 1, 1, 1).float()
    fast = ops.modulated_conv2d(x.to(dtype), weight.to(dtype), styles.to(dtype), True, 1, 1, 1).float()
    err_ref, err_fast = (ref - exact).abs().mean(), (fast - exact).abs().mean()
    assert err_fast <= 1.5 * err_ref + 1e-6, f"{dtype}: fast {err_fast:.3g} vs reference {err_ref:.3g}"


def test_train_recipe_end_to_end_on_cuda_with_amp(tmp_path, monkeypatch):
    """`dualstylegan train --device cuda --amp` on the tiny synthetic set; the pack transfers on the GPU."""
    import test_train_recipe as recipe_test

    from dualstylegan.pipeline import StyleTransferPipeline

    for key in ("DUALSTYLEGAN_HOME", "TORCH_HOME", "HF_HOME"):
        monkeypatch.setenv(key, str(tmp_path / "home" / key))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assets = recipe_test.assets.__wrapped__(_Factory(tmp_path))  # the module fixture's body, run here
    style = recipe_test.write_style_set(tmp_path / "styles")
    quick = [a if a != "cpu" else "cuda" for a in recipe_test.QUICK]
    rc, _, stderr = recipe_test.run_cli(["train", str(style), "--name", "toy", "--work-dir", str(tmp_path / "work"),
                                         "--out", str(tmp_path / "packs"), "--amp", *quick,
                                         *recipe_test.file_args(assets)])
    assert rc == 0, stderr
    pipe = StyleTransferPipeline.from_pretrained(str(tmp_path / "packs" / "toy"), device="cuda")
    face = torch.rand(1, 3, 256, 256, device="cuda") * 2 - 1
    image = pipe.transfer(face, 0).image
    assert image.shape == (1, 3, recipe_test.SIZE, recipe_test.SIZE) and torch.isfinite(image).all()


class _Factory:
    """Enough of pytest's tmp_path_factory for a module fixture's body."""

    def __init__(self, root):
        self.root = root

    def mktemp(self, name):
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path



def test_cuda_graph_replay_equals_eager_and_never_overwrites_results(tiny_pack, face_tensor):
    from dualstylegan.pipeline import StyleTransferPipeline

    graphed = StyleTransferPipeline.from_pretrained(str(tiny_pack), device="cuda")
    eager = StyleTransferPipeline.from_pretrained(str(tiny_pack), device="cuda", cuda_graphs=False)
    other = torch.flip(face_tensor, [3]).cuda()
    first = graphed.transfer(face_tensor.cuda(), 1).image
    second = graphed.transfer(other, 2, structure=0.5).image  # new inputs and options: a second graph
    again = graphed.transfer(face_tensor.cuda(), 1).image      # replayed
    torch.testing.assert_close(first, eager.transfer(face_tensor.cuda(), 1).image, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(second, eager.transfer(other, 2, structure=0.5).image, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, first, atol=1e-4, rtol=1e-4)  # cuDNN kernels need not be bitwise deterministic
    assert not torch.equal(first, second)
    assert len(graphed._synthesize_graphed._graphs) == 2 and graphed._encode_graphed._graphs
    seeded = graphed.transfer(face_tensor.cuda(), 1, seed=5).image  # fresh noise: graph inputs too
    torch.testing.assert_close(seeded, eager.transfer(face_tensor.cuda(), 1, seed=5).image, atol=1e-4, rtol=1e-4)
    frames = graphed.blend(face_tensor.cuda(), 0, 1, steps=3)
    for f, e in zip(frames, eager.blend(face_tensor.cuda(), 0, 1, steps=3)):
        torch.testing.assert_close(f, e, atol=1e-4, rtol=1e-4)
