"""The official checkpoint files ↔ our networks (the ``legacy.py`` idea of NVlabs).

Every reader takes the file unchanged, loads it without executing code (:mod:`dualstylegan.checkpoints`), and
before building anything: checks every tensor (real storage for its shape, finite values), infers the network's
config from the tensor shapes (so narrow models saved in the official layout load too), checks that config against
the official families (:mod:`dualstylegan.limits`), and checks keys and shapes strictly against the network built
on the ``meta`` device (no memory). Only then is the network allocated, so what a file makes us allocate is what
it holds. Writers emit the same layouts (the training stages produce them).
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap as _mmap
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import limits
from .checkpoints import (
    CheckpointError,
    check_state_dict,
    check_weights,
    load_torch_file,
    refused,
    save_torch_file,
    strip_prefix,
    take,
)
from .errors import short
from .nets.config import default_channels
from .nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from .nets.encoder import EncoderConfig, IdentityNet, PSPEncoder
from .nets.sampler import ExtrinsicSampler, SamplerConfig
from .nets.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
)

Tensors = dict[str, torch.Tensor]


def _count(state: Tensors, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})


def _table_from(channels: dict[int, int]) -> tuple[int, dict[int, int] | None]:
    """(channel_multiplier, explicit table or None when it is the official table of that multiplier)."""
    for cm in (2, 1, 4):
        official = default_channels(cm)
        if all(official[r] == c for r, c in channels.items()):
            return cm, None
    return 2, channels


def _require(state: Tensors, keys: tuple[str, ...], path: str | Path, what: str) -> None:
    """Each of ``keys`` is in ``state``, or one sentence naming the file and the first missing key."""
    for key in keys:
        if key not in state:
            raise CheckpointError(f"{Path(path).name} is not {what}: it has no {key!r} tensor; check that you gave the "
                                  "right file.")


@contextlib.contextmanager
def _reading(path: str | Path, what: str) -> Iterator[None]:
    """Config inference and construction from a file's tensors: a malformed file (a value that is not a tensor, an
    impossible size, unknown opts) gives one CheckpointError naming the file instead of a bare ValueError/KeyError."""
    try:
        yield
    except CheckpointError:
        raise
    except limits.Refused as exc:
        raise refused(path, exc) from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{Path(path).name} is not {what} that this library can read ({short(exc)}); check "
                              "that you gave the right file.") from None


# ------------------------------------------------------------------------------------------- mapped pages
_MADV_DONTNEED, _MADV_POPULATE_READ = 4, 22
_libc = None


def _madvise(start: int, length: int, advice: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux") or length <= 0:
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc.madvise(start, length, advice) == 0


class FilePages:
    """The memory-mapped tensors of one checkpoint file (``load_torch_file(mmap=True)``, ``MAP_PRIVATE``).

    Loading maps the file and the checks read every tensor once, which makes its pages resident; they can go back
    to the page cache (``madvise(MADV_DONTNEED)``) and be read again from there when a network that adopted them
    (``assign=True``) next runs — resident only while used. Given back are only pages wholly inside a tensor that
    lies in a mapping of this very file (``/proc/self/maps``: never anonymous memory) and whose data was never
    written (its version counter unchanged since loading): a private mapping's written pages would be lost, so a
    network changed in place keeps its pages. The file's tensors are referenced here, so the mapping stays alive
    (its addresses cannot be reused) as long as this object does."""

    def __init__(self, obj: object, path: str | Path):
        maps = _file_mappings(Path(path))
        page = _mmap.PAGESIZE
        self._spans: list[tuple[torch.Tensor, int, int, int]] = []
        for _, t in limits.iter_tensors(obj):
            if t.layout != torch.strided or t.is_meta or t.is_quantized:
                continue  # refused by the checks
            s = t.untyped_storage()
            ptr, n = s.data_ptr(), s.nbytes()
            if t.device.type != "cpu" or not any(lo <= ptr and ptr + n <= hi for lo, hi in maps):
                continue
            start, end = -(-ptr // page) * page, (ptr + n) // page * page
            if end > start:
                self._spans.append((t, t._version, start, end - start))
        self._by_storage: dict[int, list[tuple[torch.Tensor, int, int, int]]] = {}
        for span in self._spans:
            self._by_storage.setdefault(span[0].untyped_storage().data_ptr(), []).append(span)

    def __bool__(self) -> bool:
        return bool(self._spans)

    def release_tensor(self, t: torch.Tensor) -> None:
        """:meth:`release` for the one tensor ``t`` (after a check read it)."""
        self.release({t.untyped_storage().data_ptr()})

    def _ranges(self, storages: set[int] | None = None) -> Iterator[tuple[int, int]]:
        spans = self._spans if storages is None else [x for p in storages for x in self._by_storage.get(p, ())]
        for t, version, start, length in spans:
            if t._version == version:
                yield start, length

    def release(self, storages: set[int] | None = None) -> None:
        """Give the unchanged tensors' pages (of ``storages``, data pointers; default all) back to the page cache
        (no-op off Linux)."""
        for start, length in self._ranges(storages):
            _madvise(start, length, _MADV_DONTNEED)

    def populate(self, storages: set[int] | None = None) -> None:
        """Map the tensors' pages (of ``storages``; default all) in one call each (``MADV_POPULATE_READ``, Linux ≥
        5.14) instead of one fault per page group while a forward pass first reads them."""
        for start, length in self._ranges(storages):
            if not _madvise(start, length, _MADV_POPULATE_READ):
                return

    def page_out_between_calls(self, module: torch.nn.Module) -> torch.nn.Module:
        """Hooks on every submodule of ``module`` that holds parameters: its pages populated before it runs and
        given back after it. A network run once per photo, e.g. the 1 GB pSp encoder, is then resident one layer
        at a time; with the checks' release tensor by tensor (:func:`_weights`) a full-size one-photo ``transfer``
        peaked at 1097 MiB instead of 1503 MiB on the 2-core EPYC (``bench/bench_cli.py``)."""
        first = next(iter(module.parameters()), None)
        if first is None:
            return module
        ptr = first.untyped_storage().data_ptr()

        def mapped() -> bool:  # not once the network moved to another device or dtype (new tensors)
            p = next(iter(module.parameters()))
            return p.device.type == "cpu" and p.untyped_storage().data_ptr() == ptr

        for sub in module.modules():
            own = {p.untyped_storage().data_ptr() for p in sub.parameters(recurse=False)}
            if own:
                sub.register_forward_pre_hook(lambda *_, own=own: self.populate(own) if mapped() else None)
                sub.register_forward_hook(lambda *_, own=own: self.release(own) if mapped() else None)
        module._file_pages = self  # type: ignore[attr-defined]
        return module


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from ``path`` (Linux ``/proc/self/maps``; empty elsewhere)."""
    try:
        target = str(path.resolve())
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5] == target:
            lo, hi = parts[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def _read(path: str | Path) -> tuple[object, FilePages | None]:
    """A checkpoint file memory-mapped (a zip; else read), and its :class:`FilePages`."""
    obj = load_torch_file(path, mmap=True)
    try:
        pages = FilePages(obj, path)
    except limits.Refused:
        return obj, None  # the checks that follow refuse the file in one sentence
    return obj, (pages if pages else None)


def _paged(model: torch.nn.Module, pages: FilePages | None) -> torch.nn.Module:
    """``model`` after its file's pages read by the checks went back to the page cache (see :class:`FilePages`)."""
    if pages is not None:
        pages.release()
    return model


# ------------------------------------------------------------------------------------------- configs
def generator_config(state: Tensors, path: str | Path = "state dict") -> GeneratorConfig:
    """The StyleGAN2 generator config implied by a state dict in the official layout."""
    what = "a StyleGAN2 generator"
    n_rgb = _count(state, r"to_rgbs\.(\d+)\.conv\.weight")
    _require(state, ("style.1.weight", "input.input", "conv1.conv.weight", "to_rgbs.0.conv.weight")
             + tuple(f"convs.{2 * j}.conv.weight" for j in range(n_rgb)), path, what)
    with _reading(path, what):
        channels = {4: int(state["input.input"].shape[1])}
        for j in range(n_rgb):
            channels[2 ** (j + 3)] = int(state[f"convs.{2 * j}.conv.weight"].shape[1])
        cm, table = _table_from(channels)
        n_mlp = _count(state, r"style\.(\d+)\.weight")
        size = 2 ** (n_rgb + 2)
        limits.check_stylegan(_Declared(size, channels, int(state["style.1.weight"].shape[1]), n_mlp), what)
        return GeneratorConfig(size=size, style_dim=int(state["style.1.weight"].shape[1]), n_mlp=n_mlp,
                               channel_multiplier=cm, channels=table)


def dualstylegan_config(state: Tensors, path: str | Path = "state dict") -> DualStyleGANConfig:
    g = generator_config(strip_prefix(state, "generator."), path)
    _require(state, ("res.0.conv.0.weight",), path, "a DualStyleGAN generator")
    with _reading(path, "a DualStyleGAN generator"):
        config = DualStyleGANConfig(**g.to_dict(), res_index=_count(state, r"res\.(\d+)\.conv\.0\.weight") - 1)
        limits.check_stylegan(config, "DualStyleGAN")
        return config


def discriminator_config(state: Tensors, path: str | Path = "state dict") -> DiscriminatorConfig:
    what = "a StyleGAN2 discriminator"
    n_blocks = _count(state, r"convs\.(\d+)\.conv1\.0\.weight")
    _require(state, ("convs.0.0.weight", "final_linear.1.weight")
             + tuple(f"convs.{b}.conv2.1.weight" for b in range(1, n_blocks + 1)), path, what)
    with _reading(path, what):
        size = 2 ** (n_blocks + 2)
        channels = {size: int(state["convs.0.0.weight"].shape[0])}
        for b in range(1, n_blocks + 1):
            channels[size >> b] = int(state[f"convs.{b}.conv2.1.weight"].shape[0])
        limits.check_stylegan(_Declared(size, channels), "discriminator")
        cm, table = _table_from(channels)
        return DiscriminatorConfig(size=size, channel_multiplier=cm, channels=table)


class _Declared:
    """The sizes a state dict declares, for :func:`dualstylegan.limits.check_stylegan` before any config exists
    (a config's own checks may build tables sized by them)."""

    def __init__(self, size: int, channels: dict[int, int], style_dim: int | None = None, n_mlp: int | None = None):
        self.size, self.channel_table, self.style_dim, self.n_mlp = size, channels, style_dim, n_mlp


class _Skeleton(torch.overrides.TorchFunctionMode):
    """Builds a network on the meta device: shapes only, no memory, no values (a skeleton's values are never read).

    ``torch.device("meta")`` alone runs random factories and arithmetic on meta tensors through torch's Python meta
    kernels, whose first call imports ``torch._dynamo``: 1.1 s of a 1.7 s generator build on a 2-core AMD EPYC, more
    than reading its weights (``bench/bench_cli.py``). Here factories by size make meta ``empty`` tensors, in-place
    initialisers return their tensor unchanged and elementwise arithmetic returns a meta tensor of the broadcast
    shape; tensors made from data (blur kernels) are small and stay on the CPU.
    """

    _BY_SIZE = (torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full, torch.empty_strided)
    _ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "pow", "__add__", "__radd__", "__sub__", "__rsub__",
                              "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__pow__", "__neg__"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._BY_SIZE:
            size = args[:1] if func is torch.full else args  # full(size, value)
            for key in ("generator", "requires_grad", "device", "fill_value", "pin_memory"):
                kwargs.pop(key, None)
            return torch.empty(*size, **kwargs, device="meta") if func is not torch.empty_strided else \
                torch.empty_strided(*args[:2], **kwargs, device="meta")
        if func is torch.eye:
            n = args[0]
            m = args[1] if len(args) > 1 and isinstance(args[1], int) else n
            return torch.empty(n, m, dtype=kwargs.get("dtype"), device="meta")
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]  # torch.nn.init's
        metas = [a for a in tensors if a.is_meta]  # functions pass theirs by keyword
        if metas:
            name = getattr(func, "__name__", "")
            if name.endswith("_") and not name.startswith("__") and tensors[0] is metas[0]:
                return tensors[0]  # fill_, zero_, div_, copy_, uniform_, kaiming_uniform_, …
            if name in self._ELEMENTWISE:
                shape = _broadcast(*(tuple(a.shape) for a in tensors))
                return torch.empty(shape, dtype=metas[0].dtype, device="meta")
        return func(*args, **kwargs)


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast shape (``torch.broadcast_shapes`` imports sympy on its first call: half a second)."""
    n = max(map(len, shapes))
    out = []
    for dims in zip(*((1,) * (n - len(s)) + s for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise RuntimeError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _build(make: Callable[[], torch.nn.Module], state: Tensors, what: str, *, adopt: bool = True) -> torch.nn.Module:
    """``make()`` loaded with ``state``: keys and shapes are checked first against ``make()`` on the meta device
    (no memory), so nothing is allocated for a state dict that does not fill the network exactly. With ``adopt``
    the checked tensors (contiguous, of the network's dtypes, each with its own bytes) become the network's
    parameters (``load_state_dict(assign=True)``): no random initialisation, no second copy. Otherwise — or if
    some tensor of the network is not in the state dict — the network is built and the state copied in."""
    with _Skeleton():
        skeleton = make()
    expected = skeleton.state_dict()
    check_state_dict(expected, state, what)
    if adopt and all(state[k].dtype == v.dtype and state[k].is_contiguous() for k, v in expected.items()):
        skeleton.load_state_dict(state, strict=True, assign=True)
        if not _on_meta(skeleton):
            return skeleton.eval()
    return _load_into(make(), state, what)


def _on_meta(model: torch.nn.Module) -> bool:
    """Whether any tensor of ``model`` (parameter, buffer or plain attribute) is still on the meta device."""
    for module in model.modules():
        tensors = [*module._parameters.values(), *module._buffers.values(), *vars(module).values()]
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
            return True
    return False


def _load_into(model: torch.nn.Module, state: Tensors, what: str) -> torch.nn.Module:
    check_state_dict(model.state_dict(), state, what)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _weights(obj: object, key: str, path: str | Path, what: str, pages: FilePages | None = None) -> Tensors:
    """``obj[key]`` as a state dict whose tensors passed :func:`~dualstylegan.checkpoints.check_weights`; the
    pages the checks read go back to the page cache tensor by tensor (``pages``): the 1.2 GB ``encoder.pt`` is
    then never resident as a whole."""
    state = take(obj, key, path, what)
    check_weights(state, path, checked=pages.release_tensor if pages is not None else None)
    return state


# ------------------------------------------------------------------------------------------- readers
def load_stylegan2(path: str | Path, key: str = "g_ema") -> Generator:
    """``stylegan2-ffhq-config-f.pt`` (or any rosinality checkpoint): the generator under ``key``."""
    obj, pages = _read(path)
    state = _weights(obj, key, path, "a StyleGAN2 checkpoint", pages)
    config = generator_config(state, path)
    return _paged(_build(lambda: Generator(config), state, f"{Path(path).name}['{key}']"), pages)


def load_discriminator(path: str | Path) -> Discriminator:
    state = _weights(load_torch_file(path), "d", path, "a StyleGAN2 checkpoint with a discriminator")
    config = discriminator_config(state, path)
    return _build(lambda: Discriminator(config), state, f"{Path(path).name}['d']")


def load_dualstylegan(path: str | Path) -> DualStyleGAN:
    """``<style>/generator.pt``: {'g_ema': DualStyleGAN state dict} (memory-mapped, see :class:`FilePages`)."""
    obj, pages = _read(path)
    state = take(obj, "g_ema", path, "a DualStyleGAN generator.pt")
    if "res.0.conv.0.weight" not in state:
        raise CheckpointError(f"{Path(path).name} holds a plain StyleGAN2 generator, not a DualStyleGAN "
                              "(no extrinsic style path 'res.*'); give the style's generator.pt.")
    check_weights(state, path)
    config = dualstylegan_config(state, path)
    return _paged(_build(lambda: DualStyleGAN(config), state, f"{Path(path).name}['g_ema']"), pages)


def load_training_checkpoint(path: str | Path, dualstylegan: bool = False, *, what: str,
                             no_discriminator: str) -> dict:
    """A rosinality-style training checkpoint {'g_ema', 'd', 'g'?, 'g_optim'?, 'd_optim'?} → {'g', 'g_ema', 'd'
    networks, optimizer states}: StyleGAN2 generators (``stylegan2-ffhq-config-f.pt``) or, with ``dualstylegan``,
    DualStyleGANs (``generator-pretrain.pt``). ``g`` is a copy of ``g_ema`` when the file has none; ``d`` is
    required (``no_discriminator`` says what to give instead). The reference also pickles its argparse options
    ('args'): that one class is allowed, nothing else that runs code. Every tensor, optimizer states included, is
    checked before anything is built (:func:`~dualstylegan.checkpoints.check_weights`)."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = load_torch_file(path)
    name = Path(path).name
    ema_state = _weights(obj, "g_ema", path, what)
    if not isinstance(obj.get("d"), dict):
        raise CheckpointError(f"{name} has no discriminator ('d'), which training needs; {no_discriminator}")
    net_cls, config_of = (DualStyleGAN, dualstylegan_config) if dualstylegan else (Generator, generator_config)
    check_weights({k: obj[k] for k in ("g", "d", "g_optim", "d_optim") if isinstance(obj.get(k), dict)}, path)
    out: dict = {}
    ema_storages = {t.untyped_storage().data_ptr() for t in ema_state.values() if isinstance(t, torch.Tensor)}
    for key in ("g_ema", "g"):
        state = dict(obj[key]) if key == "g" and isinstance(obj.get("g"), dict) else ema_state
        config = config_of(state, path)
        # g must never share tensors with g_ema (training g would move g_ema): without its own 'g' it starts as a
        # copy, and a 'g' whose tensors torch.save stored once with g_ema's (the same tensors saved twice) is copied
        shared = state is not ema_state and any(
            t.untyped_storage().data_ptr() in ema_storages for t in state.values() if isinstance(t, torch.Tensor))
        adopt = key == "g_ema" or (state is not ema_state and not shared)
        out[key] = _build(lambda: net_cls(config), state, f"{name}['{key}']", adopt=adopt).train()
    d_state = dict(obj["d"])
    d_config = discriminator_config(d_state, path)
    out["d"] = _build(lambda: Discriminator(d_config), d_state, f"{name}['d']").train()
    out.update({k: obj[k] for k in ("g_optim", "d_optim") if isinstance(obj.get(k), dict)})
    return out


def load_encoder(path: str | Path, z_plus: bool | None = None, with_decoder: bool = True, *,
                 page_out: bool = False) -> tuple[PSPEncoder, Generator | None]:
    """``encoder.pt`` (Z+ codes) or ``encoder_wplus.pt`` (W+): {'state_dict': {'encoder.*', 'decoder.*'}, 'opts',
    'latent_avg'?} → (the encoder, its StyleGAN2 decoder or None). ``z_plus`` defaults to the file name's kind.
    ``opts`` must describe an encoder of the official family (:func:`dualstylegan.limits.check_encoder`). The file
    is memory-mapped; the 1024² decoder is built only ``with_decoder`` (:func:`load_decoder` builds it later).
    ``page_out`` (inference): the encoder's 1 GB of weights are resident only while it runs
    (:meth:`FilePages.page_out_between_calls`), so that the generator's activations fit beside them."""
    what = "a pSp encoder checkpoint"
    obj, pages = _read(path)
    state = _weights(obj, "state_dict", path, what, pages)
    opts = obj.get("opts") if isinstance(obj.get("opts"), dict) else {}
    if z_plus is None:
        z_plus = "wplus" not in Path(path).name
    enc_state = strip_prefix(state, "encoder.")
    if not enc_state:
        raise CheckpointError(f"{Path(path).name} is not {what}: its 'state_dict' has no 'encoder.*' tensors; check "
                              "that you gave the right file.")
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None:
        check_weights({"latent_avg": latent_avg}, path)
    with _reading(path, what):
        config = EncoderConfig.from_opts(opts, z_plus=z_plus)
        limits.check_encoder(config)
        if config.start_from_latent_avg and latent_avg is None:
            raise CheckpointError(f"{Path(path).name} starts from latent_avg (its opts say so) but does not store "
                                  "one; the file is incomplete, download it again.")
    enc_state = {f"encoder.{k}": v for k, v in enc_state.items()}
    if latent_avg is not None:
        enc_state["latent_avg"] = latent_avg
    with _reading(path, what):
        encoder = _build(lambda: PSPEncoder(config, latent_avg=_like(latent_avg)), enc_state,
                         f"{Path(path).name}['state_dict']['encoder.*']")
    decoder = _decoder(state, path) if with_decoder else None
    _paged(encoder, pages)
    if page_out and pages is not None:
        pages.page_out_between_calls(encoder)
    return encoder, decoder


def _decoder(state: Tensors, path: str | Path) -> Generator | None:
    dec_state = strip_prefix(state, "decoder.")
    if not dec_state:
        return None
    dec_config = generator_config(dec_state, path)
    return _build(lambda: Generator(dec_config), dec_state, f"{Path(path).name}['state_dict']['decoder.*']")


def load_decoder(path: str | Path) -> Generator | None:
    """The StyleGAN2 decoder stored in a pSp ``encoder.pt`` (``decoder.*``; the reconstruction's generator), or
    None when the file has none; the same checks as :func:`load_encoder`, without building the encoder."""
    obj, pages = _read(path)
    state = _weights(obj, "state_dict", path, "a pSp encoder checkpoint", pages)
    decoder = _decoder(state, path)
    return _paged(decoder, pages) if decoder is not None else decoder


def _like(t: torch.Tensor | None) -> torch.Tensor | None:
    """A tensor of ``t``'s shape and dtype on the current default device (meta while checking, else zeros)."""
    return None if not isinstance(t, torch.Tensor) else torch.zeros(t.shape, dtype=t.dtype)


def load_sampler(path: str | Path) -> ExtrinsicSampler:
    """``sampler.pt``: {'structure': state dict, 'color': state dict} (eval mode)."""
    obj = load_torch_file(path)
    parts = {}
    for part in ("structure", "color"):
        state = _weights(obj, part, path, "a DualStyleGAN sampler.pt")
        _require(state, ("lin1.weight", "lin_out.weight"), path, f"a DualStyleGAN sampler.pt (in its {part!r} part)")
        with _reading(path, "a DualStyleGAN sampler.pt"):
            out, hidden = state["lin_out.weight"].shape
            noise_dim = state["lin1.weight"].shape[1]
            parts[part] = SamplerConfig(rows=out // 512, noise_dim=noise_dim, style_dim=512, hidden_dim=hidden)
            limits.check_sampler(parts[part], part)
    with torch.device("meta"):
        skeleton = ExtrinsicSampler(parts["structure"], parts["color"])
    for part in ("structure", "color"):
        check_state_dict(getattr(skeleton, part).state_dict(), obj[part], f"{Path(path).name}['{part}']")
    sampler = ExtrinsicSampler(parts["structure"], parts["color"])
    for part in ("structure", "color"):
        _load_into(getattr(sampler, part), obj[part], f"{Path(path).name}['{part}']")
    return sampler.eval()


def load_identity_net(path: str | Path) -> IdentityNet:
    """``model_ir_se50.pth``: a bare IR-SE50 state dict (ArcFace features for the identity loss)."""
    state = load_torch_file(path)
    if not isinstance(state, dict) or "output_layer.3.weight" not in state:
        raise CheckpointError(f"{Path(path).name} is not an IR-SE50 identity network (model_ir_se50.pth).")
    check_weights(state, path)
    return _build(IdentityNet, state, Path(path).name)


# ------------------------------------------------------------------------------------------- writers
def save_stylegan2(path: str | Path, g_ema: Generator, discriminator: Discriminator | None = None,
                   **extra) -> None:
    """Write the rosinality layout {'g_ema': …, 'd': …} atomically."""
    obj = {"g_ema": g_ema.state_dict(), **extra}
    if discriminator is not None:
        obj["d"] = discriminator.state_dict()
    save_torch_file(path, obj)


def save_dualstylegan(path: str | Path, g_ema: DualStyleGAN, **extra) -> None:
    """Write ``generator.pt`` in the official layout {'g_ema': state dict} atomically."""
    save_torch_file(path, {"g_ema": g_ema.state_dict(), **extra})


def save_encoder(path: str | Path, encoder: PSPEncoder, decoder: Generator, opts: dict | None = None) -> None:
    """Write the pSp layout {'state_dict': {'encoder.*', 'decoder.*'}, 'opts', 'latent_avg'}."""
    cfg = encoder.config
    opts = {"encoder_type": cfg.encoder_type, "input_nc": cfg.input_nc, "output_size": cfg.output_size,
            "start_from_latent_avg": cfg.start_from_latent_avg, "learn_in_w": cfg.learn_in_w, **(opts or {})}
    for field in ("widths", "units"):  # narrow models only: our extra opts fields
        if getattr(cfg, field) is not None:
            opts[field] = list(getattr(cfg, field))
    if cfg.head_channels != 512:
        opts["head_channels"] = cfg.head_channels
    state = {f"encoder.{k}": v for k, v in encoder.encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    obj = {"state_dict": state, "opts": opts}
    if encoder.latent_avg is not None:
        obj["latent_avg"] = encoder.latent_avg
    save_torch_file(path, obj)


def save_sampler(path: str | Path, sampler: ExtrinsicSampler) -> None:
    save_torch_file(path, {"structure": sampler.structure.state_dict(), "color": sampler.color.state_dict()})
