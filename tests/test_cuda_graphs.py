"""GraphedCall without a GPU: everything runs eagerly, options become graph keys, tensors never do.

That replaying a graph equals the eager pipeline is a GPU test (tests/test_gpu.py,
``test_cuda_graph_replay_equals_eager_and_never_overwrites_results``): on a CPU both sides would be eager.
"""
from __future__ import annotations

import pytest
import torch

from dualstylegan.cuda_graphs import GraphedCall, _freeze


def test_cpu_tensors_and_autograd_run_eagerly():
    calls = []

    def fn(x, *, scale=1.0):
        calls.append(scale)
        return x * scale

    graphed = GraphedCall(fn)
    x = torch.arange(4.0)
    with torch.no_grad():
        assert torch.equal(graphed(x, scale=2.0), x * 2)
    assert torch.equal(graphed(x, scale=3.0), x * 3)  # autograd on: eager as well
    assert calls == [2.0, 3.0] and not graphed._graphs


def test_options_are_frozen_into_keys_and_tensor_options_are_refused():
    assert _freeze({"w": [0.5, 1], "t": 0.7, "flag": True}) == (("flag", True), ("t", 0.7), ("w", (0.5, 1)))
    with pytest.raises(TypeError):
        _freeze({"noise": torch.zeros(1)})
    with pytest.raises(TypeError):
        _freeze({"unhashable": {1, 2}})
