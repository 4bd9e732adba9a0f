"""CUDA-graph replay of an inference call.

On a GPU a 1024² DualStyleGAN forward is bound by kernel launches, not arithmetic (an H200 runs it in 14 ms
eagerly, at 2 % of its bfloat16 matmul rate). Recording the call once as a CUDA graph and replaying it launches the
whole network at once: 7 ms in float32 and 6 ms in bfloat16 on an H200 (``bench/bench_forward.py``), same kernels,
same results to the vectors' tolerance. :class:`GraphedCall` does this for any ``fn(*tensors, **options)``: one
graph per input shapes, dtypes and options, inputs copied into the graph's static tensors, outputs cloned so that
the next replay cannot overwrite them. Anything else — CPU tensors, autograd, options that are not plain values — runs ``fn`` eagerly.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import torch

log = logging.getLogger(__name__)


def _freeze(value: Any) -> Hashable:
    """Options as a hashable key; a tensor (or anything unhashable) cannot be baked into a graph → TypeError."""
    if isinstance(value, torch.Tensor):
        raise TypeError("tensor options are inputs, not constants")
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    hash(value)
    return value


def _clone(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_clone(o) for o in out)
    return out


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    output: Any


class GraphedCall:
    """``fn(*tensors, **options)`` replayed from a CUDA graph when every tensor is on one CUDA device and autograd
    is off; eager otherwise. At most ``max_graphs`` graphs are kept (least recently used dropped first).

    The graphs hold the parameters' addresses: call :meth:`reset` after moving or replacing the networks. Calls are
    serialised by a lock (the static inputs are shared), so threads may share one instance.
    """

    def __init__(self, fn: Callable[..., Any], max_graphs: int = 4, warmup: int = 2):
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.enabled = True
        self._graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self._eager: set[Hashable] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._graphs.clear()
            self._eager.clear()

    def _key(self, tensors: tuple[torch.Tensor, ...], options: dict[str, Any]) -> Hashable | None:
        if (not self.enabled or not tensors or torch.is_grad_enabled()
                or not all(isinstance(t, torch.Tensor) for t in tensors)):
            return None
        device = tensors[0].device
        if device.type != "cuda" or any(t.device != device for t in tensors):
            return None
        if torch.cuda.is_current_stream_capturing():
            return None
        try:
            frozen = _freeze(options)
        except TypeError:
            return None
        return tuple((tuple(t.shape), t.dtype, t.device) for t in tensors), frozen

    def __call__(self, *tensors: torch.Tensor, **options: Any) -> Any:
        key = self._key(tensors, options)
        if key is None:
            return self.fn(*tensors, **options)
        with self._lock:
            if key in self._eager:
                return self.fn(*tensors, **options)
            entry = self._graphs.get(key)
            if entry is None:
                try:
                    entry = self._capture(tensors, options)
                except RuntimeError as e:  # e.g. an op that synchronises with the host: this call stays eager
                    log.warning("cannot record %s as a CUDA graph (%s); running it eagerly", self.fn, e)
                    self._eager.add(key)
                    return self.fn(*tensors, **options)
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
            for static, t in zip(entry.inputs, tensors):
                static.copy_(t)
            entry.graph.replay()
            return _clone(entry.output)

    def _capture(self, tensors: tuple[torch.Tensor, ...], options: dict[str, Any]) -> _Graph:
        inputs = [t.detach().clone() for t in tensors]
        stream = torch.cuda.Stream(device=inputs[0].device)
        stream.wait_stream(torch.cuda.current_stream(inputs[0].device))
        with torch.cuda.stream(stream):  # warm-up outside the graph: cuDNN picks its algorithms, caches fill
            for _ in range(self.warmup):
                self.fn(*inputs, **options)
        torch.cuda.current_stream(inputs[0].device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.fn(*inputs, **options)
        return _Graph(graph, inputs, output)
