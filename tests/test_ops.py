"""Each fast op equals its plain reference on random inputs, forward and backward (float64 gradcheck)."""
from __future__ import annotations

import pytest
import torch

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
    fast = ops.upfirdn2d(x, kernel, up, down, pad)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref)
    gy = rand(*ref.shape, grad=False, seed=2)
    (g_ref,) = torch.autograd.grad(ref, x, gy)
    (g_fast,) = torch.autograd.grad(fast, x, gy)
    torch.testing.assert_close(g_fast, g_ref)
    assert torch.autograd.gradcheck(lambda t: ops.upfirdn2d(t, kernel, up, down, pad), (rand(1, 2, 5, 5),))


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


@pytest.mark.parametrize("grad", [True, False])
def test_fused_leaky_relu_fast_matches_reference(grad):
    x, b = rand(2, 5, 4, 4, grad=grad), rand(5, grad=grad, seed=1)
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(ops.fused_leaky_relu(x, b), ops.fused_leaky_relu_ref(x, b))
        torch.testing.assert_close(ops.fused_leaky_relu(x), ops.fused_leaky_relu_ref(x))
    if grad:
        assert torch.autograd.gradcheck(ops.fused_leaky_relu, (rand(2, 3, 2, 2) + 0.05, rand(3, seed=4)))


def test_fused_leaky_relu_does_not_modify_its_input():
    x = rand(1, 3, 2, 2, grad=False)
    before = x.clone()
    with torch.no_grad():
        ops.fused_leaky_relu(x, torch.ones(3, dtype=x.dtype))
    torch.testing.assert_close(x, before)


MODCONV_CASES = [  # (up, down, padding, kernel, demodulate)
    (1, 1, 1, 3, True),
    (1, 1, 0, 1, False),  # ToRGB
    (2, 1, 0, 3, True),   # the upsampling conv (before its blur)
    (1, 2, 0, 3, True),
]


@pytest.mark.parametrize("batch", [1, 3], ids=["one-sample", "batch"])  # the fast path has a branch for each
@pytest.mark.parametrize("up,down,padding,k,demod", MODCONV_CASES)
def test_modulated_conv2d_fast_matches_reference(up, down, padding, k, demod, batch):
    x = rand(batch, 4, 6, 6)
    weight = rand(5, 4, k, k, seed=1)
    styles = rand(batch, 4, seed=2)
    ref = ops.modulated_conv2d_ref(x, weight, styles, demod, up, down, padding)
    fast = ops.modulated_conv2d(x, weight, styles, demod, up, down, padding)
    torch.testing.assert_close(fast, ref)
    gy = rand(*ref.shape, grad=False, seed=5)
    for a, b in zip(torch.autograd.grad(ref, (x, weight, styles), gy),
                    torch.autograd.grad(fast, (x, weight, styles), gy)):
        torch.testing.assert_close(b, a)
    small = (rand(batch, 2, 4, 4), rand(3, 2, k, k, seed=1), rand(batch, 2, seed=2))
    assert torch.autograd.gradcheck(lambda *t: ops.modulated_conv2d(*t, demod, up, down, padding), small)
    assert torch.autograd.gradcheck(lambda *t: ops.modulated_conv2d_ref(*t, demod, up, down, padding), small)


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
        out = ops.fused_leaky_relu(x.clone(), b, inplace=True)
    torch.testing.assert_close(out, expect)
