"""Each fast kernel equals its plain reference on random inputs, forward and backward (float64 gradcheck).

The fast kernels (``*_fast``) are called directly, so a comparison never ends up comparing the reference with itself;
separate tests check which kernel each op dispatches to.
"""
from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from dualstylegan import ops
from dualstylegan.nets.layers import make_kernel


def rand(*shape, dtype=torch.float64, grad=True, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


UPFIRDN_CASES = [  # (up, down, pad, kernel size): every configuration the networks use, and a few others
    (1, 1, (1, 1), 4),  # Blur after the upsampling modulated conv
    (2, 1, (2, 1), 4),  # Upsample of the ToRGB skip
    (1, 2, (2, 2), 4),  # Blur before a stride-2 3x3 conv (discriminator)
    (1, 2, (1, 1), 4),  # Blur before a stride-2 1x1 conv (discriminator skip)
    (1, 1, (0, 0), 3),
    (1, 1, (-1, 2), 4),
    (2, 2, (1, 1), 4),
    (3, 1, (2, 2), 3),
]


@pytest.mark.parametrize("up,down,pad,k", UPFIRDN_CASES)
def test_upfirdn2d_fast_matches_reference(up, down, pad, k):
    x = rand(2, 3, 9, 9)
    kernel = rand(k, k, grad=False, seed=1)
    ref = ops.upfirdn2d_ref(x, kernel, up, down, pad)
    fast = ops.upfirdn2d_fast(x, kernel, up, down, pad)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref)
    gy = rand(*ref.shape, grad=False, seed=2)
    (g_ref,) = torch.autograd.grad(ref, x, gy)
    (g_fast,) = torch.autograd.grad(fast, x, gy)
    torch.testing.assert_close(g_fast, g_ref)
    assert torch.autograd.gradcheck(lambda t: ops.upfirdn2d_fast(t, kernel, up, down, pad), (rand(1, 2, 5, 5),))


@pytest.mark.parametrize("up,down,pad", [(2, 1, (0, 3)), (2, 1, (-1, 0)), (1, 1, (2, -1)), (4, 2, (1, 5))])
def test_upfirdn2d_fast_handles_asymmetric_and_negative_pads_and_nonsquare_kernels(up, down, pad):
    x = rand(1, 2, 7, 7, grad=False)
    kernel = rand(3, 4, grad=False, seed=3)
    torch.testing.assert_close(ops.upfirdn2d_fast(x, kernel, up, down, pad), ops.upfirdn2d_ref(x, kernel, up, down, pad))


def _spy(monkeypatch, name: str) -> list:
    """Record calls of ops.NAME (the dispatching op looks it up in the module at call time)."""
    calls, real = [], getattr(ops, name)
    monkeypatch.setattr(ops, name, lambda *a, **k: calls.append(name) or real(*a, **k))
    return calls


def test_ops_dispatch_to_the_fast_kernels_unless_reference_ops_are_on(monkeypatch):
    fast = [_spy(monkeypatch, n) for n in ("upfirdn2d_fast", "fused_leaky_relu_fast", "modulated_conv2d_fast")]
    ref = [_spy(monkeypatch, n) for n in ("upfirdn2d_ref", "fused_leaky_relu_ref", "modulated_conv2d_ref")]
    x, k = rand(2, 3, 6, 6, grad=False), rand(4, 4, grad=False, seed=1)
    w, s = rand(5, 3, 3, 3, grad=False, seed=2), rand(2, 3, grad=False, seed=3)

    def run():
        with torch.no_grad():
            ops.upfirdn2d(x, k, up=2, pad=(2, 1))
            ops.fused_leaky_relu(x, torch.ones(3, dtype=x.dtype))
            ops.modulated_conv2d(x, w, s, padding=1)

    run()
    assert [len(c) for c in fast] == [1, 1, 1] and [len(c) for c in ref] == [0, 0, 0]
    with ops.use_reference_ops():
        run()
    assert [len(c) for c in fast] == [1, 1, 1] and [len(c) for c in ref] == [1, 1, 1]


def test_fused_leaky_relu_takes_the_reference_under_autograd(monkeypatch):
    """The fast kernel works in place and has no backward: with autograd on, the op is the reference."""
    fast, ref = _spy(monkeypatch, "fused_leaky_relu_fast"), _spy(monkeypatch, "fused_leaky_relu_ref")
    out = ops.fused_leaky_relu(rand(1, 2, 3, 3), rand(2, seed=1))
    assert out.requires_grad and not fast and len(ref) == 1
    with pytest.raises(RuntimeError):
        ops.fused_leaky_relu_fast(rand(1, 2, 3, 3), None)


def test_upfirdn2d_reference_is_the_textbook_definition():
    """Zero insertion + pad + true 2-D convolution, written with explicit loops on a tiny input."""
    x = rand(1, 1, 3, 3, grad=False)
    k = make_kernel([1, 3, 3, 1]).double() * 4
    up, pad = 2, (2, 1)
    z = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    z[..., ::2, ::2] = x
    z = torch.nn.functional.pad(z, [pad[0], pad[1], pad[0], pad[1]])
    n = z.shape[-1] - k.shape[0] + 1
    expect = torch.zeros(1, 1, n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            expect[0, 0, i, j] = (z[0, 0, i:i + 4, j:j + 4] * torch.flip(k, [0, 1])).sum()
    torch.testing.assert_close(ops.upfirdn2d_ref(x, k, up=up, pad=pad), expect)


def test_upfirdn2d_reference_switch():
    x, k = rand(1, 2, 6, 6, grad=False), rand(4, 4, grad=False, seed=3)
    with ops.use_reference_ops():
        assert ops.reference_ops_enabled()
        torch.testing.assert_close(ops.upfirdn2d(x, k, up=2, pad=(2, 1)), ops.upfirdn2d_ref(x, k, up=2, pad=(2, 1)))
    assert not ops.reference_ops_enabled()


def test_fused_leaky_relu_fast_matches_reference():
    x, b = rand(2, 5, 4, 4, grad=False), rand(5, grad=False, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(ops.fused_leaky_relu_fast(x, b), ops.fused_leaky_relu_ref(x, b))
        torch.testing.assert_close(ops.fused_leaky_relu_fast(x), ops.fused_leaky_relu_ref(x))


def test_fused_leaky_relu_reference_gradient():
    """Under autograd the op is the reference (see the dispatch test): its gradient is checked numerically."""
    assert torch.autograd.gradcheck(ops.fused_leaky_relu, (rand(2, 3, 2, 2) + 0.05, rand(3, seed=4)))


def test_fused_leaky_relu_does_not_modify_its_input():
    x = rand(1, 3, 2, 2, grad=False)
    before = x.clone()
    with torch.no_grad():
        ops.fused_leaky_relu_fast(x, torch.ones(3, dtype=x.dtype))
    torch.testing.assert_close(x, before)


MODCONV_CASES = [  # (up, down, padding, kernel, demodulate)
    (1, 1, 1, 3, True),
    (1, 1, 0, 1, False),  # ToRGB
    (2, 1, 0, 3, True),   # the upsampling conv (before its blur)
    (1, 2, 0, 3, True),
]


# the fast path has a branch for each: one sample, a batch sharing one convolution, a batch of large maps on the
# CPU convolved sample by sample (ops.PER_SAMPLE_PIXELS, lowered here so that 6×6 maps take it); an up-sampling
# one by phases (ops.phase_sides, set here so that 6×6 maps take it) or directly
@pytest.mark.parametrize("phases", [False, True], ids=["direct", "phases"])
@pytest.mark.parametrize("batch,per_sample", [(1, False), (3, False), (3, True)],
                         ids=["one-sample", "batch", "batch-per-sample"])
@pytest.mark.parametrize("up,down,padding,k,demod", MODCONV_CASES)
def test_modulated_conv2d_fast_matches_reference(up, down, padding, k, demod, batch, per_sample, phases, monkeypatch):
    if phases and up == 1:
        pytest.skip("phases are for up-sampling layers")
    monkeypatch.setattr(ops, "PER_SAMPLE_PIXELS", 1 if per_sample else 10 ** 9)
    monkeypatch.setattr(ops, "phase_sides", lambda: (6,) if phases else ())
    assert ops.per_sample(rand(batch, 4, 6, 6)) == per_sample
    x = rand(batch, 4, 6, 6)
    weight = rand(5, 4, k, k, seed=1)
    styles = rand(batch, 4, seed=2)
    ref = ops.modulated_conv2d_ref(x, weight, styles, demod, up, down, padding)
    fast = ops.modulated_conv2d_fast(x, weight, styles, demod, up, down, padding)
    torch.testing.assert_close(fast, ref)
    with torch.no_grad():  # inference writes the modulated weight straight into the convolution's layout
        torch.testing.assert_close(ops.modulated_conv2d_fast(x, weight, styles, demod, up, down, padding), ref)
    gy = rand(*ref.shape, grad=False, seed=5)
    for a, b in zip(torch.autograd.grad(ref, (x, weight, styles), gy),
                    torch.autograd.grad(fast, (x, weight, styles), gy)):
        torch.testing.assert_close(b, a)
    small = (rand(batch, 2, 4, 4), rand(3, 2, k, k, seed=1), rand(batch, 2, seed=2))
    assert torch.autograd.gradcheck(lambda *t: ops.modulated_conv2d_fast(*t, demod, up, down, padding), small)
    assert torch.autograd.gradcheck(lambda *t: ops.modulated_conv2d_ref(*t, demod, up, down, padding), small)


@pytest.mark.parametrize("stride,k,shape", [(2, 3, (5, 7)), (2, 4, (4, 4)), (3, 5, (3, 6)), (2, 2, (1, 1))])
def test_conv_transpose2d_phases_is_the_transposed_convolution(stride, k, shape):
    x = rand(2, 3, *shape).contiguous(memory_format=torch.channels_last)
    weight = rand(4, 3, k, k, seed=1)  # (Cout, Cin, k, k)
    expected = F.conv_transpose2d(x, weight.transpose(0, 1), stride=stride)
    torch.testing.assert_close(ops.conv_transpose2d_phases(x, weight, stride), expected)
    gy = rand(*expected.shape, grad=False, seed=3)
    for a, b in zip(torch.autograd.grad(expected, (x, weight), gy),
                    torch.autograd.grad(ops.conv_transpose2d_phases(x, weight, stride), (x, weight), gy)):
        torch.testing.assert_close(b, a)
    with pytest.raises(ValueError):
        ops.conv_transpose2d_phases(x, rand(4, 3, 1, 1), 2)


def test_modulated_conv2d_demodulation_normalises_each_output_filter():
    """With demodulation and unit-variance i.i.d. input, each output channel has about unit variance."""
    x = rand(4, 64, 16, 16, dtype=torch.float32, grad=False)
    out = ops.modulated_conv2d_ref(x, rand(8, 64, 3, 3, dtype=torch.float32, grad=False, seed=1),
                                   rand(4, 64, dtype=torch.float32, grad=False, seed=2) * 3, padding=1)
    std = out[..., 1:-1, 1:-1].std(dim=(2, 3))
    assert ((std > 0.8) & (std < 1.2)).all()


def test_fused_leaky_relu_inplace_matches_reference():
    x, b = rand(2, 5, 4, 4, grad=False), rand(5, grad=False, seed=1)
    expect = ops.fused_leaky_relu_ref(x, b)
    with torch.no_grad():
        y = x.clone()
        out = ops.fused_leaky_relu_fast(y, b, inplace=True)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(out, expect)


# ------------------------------------------------------------------------------------ styled conv (inference)
@pytest.mark.parametrize("phases", [False, True], ids=["direct", "phases"])
@pytest.mark.parametrize("upsample", [False, True], ids=["same-size", "up"])
@pytest.mark.parametrize("given_noise", [True, False], ids=["noise-given", "noise-drawn"])
def test_styled_conv2d_fused_matches_the_reference_modules(upsample, given_noise, phases, monkeypatch):
    """StyledConv's fused inference path (ops.styled_conv2d_fused) equals its modules under the reference ops:
    convolution (+ blur), noise, bias and activation, with the noise it draws itself being the same numbers."""
    from dualstylegan.nets.layers import StyledConv

    monkeypatch.setattr(ops, "phase_sides", lambda: (6,) if phases else ())
    if phases and not upsample:
        pytest.skip("phases are for up-sampling layers")
    torch.manual_seed(0)
    layer = StyledConv(8, 6, 3, 16, upsample=upsample).double()
    with torch.no_grad():
        layer.noise.weight.fill_(0.7)
        layer.activate.bias.normal_()
    x, style = rand(1, 8, 6, 6, grad=False), rand(1, 16, grad=False, seed=1)
    noise = rand(1, 1, 12 if upsample else 6, 12 if upsample else 6, grad=False, seed=2) if given_noise else None
    with torch.no_grad():
        assert ops.fuses_styled_conv(x)
        torch.manual_seed(5)
        fast = layer(x, style, noise)
        with ops.use_reference_ops():
            assert not ops.fuses_styled_conv(x)
            torch.manual_seed(5)
            ref = layer(x, style, noise)
    torch.testing.assert_close(fast, ref)
    with torch.enable_grad():  # autograd takes the modules
        assert not ops.fuses_styled_conv(x)
        torch.manual_seed(5)
        torch.testing.assert_close(layer(x, style, noise), ref)
    assert not ops.fuses_styled_conv(rand(2, 8, 6, 6, grad=False))  # batches: the modules (split per sample above)


def test_weight_energy_is_kept_until_the_weight_changes():
    from dualstylegan.nets.layers import ModulatedConv2d

    conv = ModulatedConv2d(4, 3, 3, 8)
    e = conv.weight_energy()
    torch.testing.assert_close(e, conv.weight[0].detach().pow(2).sum([2, 3]))
    assert conv.weight_energy() is e and not e.requires_grad
    with torch.no_grad():
        conv.weight.mul_(2)  # an optimizer step, a loaded checkpoint: in place
    torch.testing.assert_close(conv.weight_energy(), 4 * e)
    conv.weight = torch.nn.Parameter(torch.ones_like(conv.weight))
    torch.testing.assert_close(conv.weight_energy(), torch.full((3, 4), 9.0))
    conv.to(torch.float64)  # the same Parameter, new data
    assert conv.weight_energy().dtype == torch.float64
    copy = pickle.loads(pickle.dumps(conv))  # nothing kept on the module
    torch.testing.assert_close(copy.weight_energy(), torch.full((3, 4), 9.0, dtype=torch.float64))


def test_phase_sides_follow_the_cpu_capability(monkeypatch):
    for capability, sides in [("AVX2", ops.PHASE_SIDES["AVX2"]), ("AVX512", ops.PHASE_SIDES["AVX512"]),
                              ("SVE256", ops.PHASE_SIDES["default"])]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert ops.phase_sides() == sides
    x = torch.zeros(1, 2, 512, 512)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert ops._by_phases(x)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert not ops._by_phases(x)
