"""The whole training recipe: a folder of style images → a style pack that ``transfer`` loads (paper §3; SPEC §7).

:func:`train_style` (``dualstylegan train STYLE_DIR --name NAME``) runs the steps in order, each one the library
function of its module, in a *work dir* (default ``runs/<name>``) with one folder per step::

    prepare/            images/ (checked, aligned, square PNGs at the training size), rejected.txt
    finetune-stylegan/  finetune-<iters>.pt (g′), checkpoint.pt, samples/        finetune_stylegan.finetune_stylegan
    destylize/          instyle_code.npy, exstyle_code.npy, codes/, log/          destylize.destylize
    pretrain/           generator.pt (the reference's generator-pretrain.pt), …   pretrain.pretrain
    finetune/           generator.pt ({'g_ema'}), checkpoint.pt, samples/         finetune.finetune
    refine-codes/       refined_exstyle_code.npy, log/refine/                     refine_codes.refine_codes
    fit-sampler/        sampler.pt                                                fit_sampler.fit_sampler
    pack/               (the marker of the last step: the pack written to ``<out>/<name>/``)

Every step writes ``<step>/done.json`` (atomically, after its outputs exist): its settings, a token, and the tokens
of the steps it read. A re-run skips a step whose marker is there with the same settings and the same inputs; a
step without a marker resumes from its own checkpoint (the training loop's, destylization's per-image results);
a step whose settings or inputs changed starts over (a larger iteration count alone continues the checkpoint).
When a step runs again, the steps that read its outputs run again after it.

The pack is the official layout: ``<out>/<name>/generator.pt``, ``exstyle_code.npy``, ``refined_exstyle_code.npy``,
``instyle_code.npy``, ``sampler.pt`` and ``training.json``, and ``<out>/encoder.pt`` shared by the styles in
``<out>`` (in the style folder instead when ``<out>`` already holds a different encoder.pt).

The feature nets of the losses are weight files the user supplies (:func:`find_weights` says where they are looked
for); every file a step still to run needs is checked before anything runs, and a missing one stops the run with
one sentence naming it. Tests (and callers with their own networks) pass :class:`FeatureNets` instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DualStyleGANError

log = logging.getLogger(__name__)

STEPS: tuple[str, ...] = ("prepare", "finetune-stylegan", "destylize", "pretrain", "finetune", "refine-codes",
                          "fit-sampler", "pack")
#: The steps whose outputs each step reads.
DEPENDS: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "finetune-stylegan": ("prepare",),
    "destylize": ("prepare", "finetune-stylegan"),
    "pretrain": (),
    "finetune": ("prepare", "destylize", "pretrain"),
    "refine-codes": ("prepare", "destylize", "finetune"),
    "fit-sampler": ("refine-codes",),
    "pack": ("destylize", "finetune", "refine-codes", "fit-sampler"),
}
#: The weight files each step needs (``identity`` in finetune only when λ_ID > 0; ``lpips_vgg16`` with ``lpips``
#: when the LPIPS file holds the linear layers only).
NEEDS: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "finetune-stylegan": ("ffhq",),
    "destylize": ("ffhq", "encoder", "lpips", "identity"),
    "pretrain": ("ffhq", "encoder", "vgg"),
    "finetune": ("vgg", "identity"),
    "refine-codes": ("lpips", "vgg"),
    "fit-sampler": (),
    "pack": ("encoder",),
}
#: Steps run by the shared training loop: under ``torchrun`` every rank runs them (the others run on rank 0).
LOOP_STEPS = frozenset({"finetune-stylegan", "pretrain", "finetune"})
MARKER = "done.json"
STARTED = "started.json"
RECIPE_FILE = "recipe.json"
PACK_RECORD = "training.json"
#: A style needs at least this many usable images (the paper's sets have a few hundred).
MIN_STYLE_IMAGES = 2
#: How long the other ranks wait under ``torchrun`` while rank 0 runs destylization, refinement and the sampler.
DIST_TIMEOUT_HOURS = 72


class RecipeError(DualStyleGANError, RuntimeError):
    """A training run that cannot go on; the message is one sentence saying what to do."""


class MissingWeightsError(RecipeError, FileNotFoundError):
    """A weight file the recipe needs is not there; the message names it and says where to get it."""


# ------------------------------------------------------------------------------------------- weight files
@dataclass(frozen=True)
class WeightFile:
    key: str
    what: str          # in words
    names: tuple[str, ...]   # official file names, looked for in the search folders
    flag: str          # the CLI option
    source: str        # where to get it
    url: str | None = None   # a direct download (--download), None when there is none


WEIGHT_FILES: dict[str, WeightFile] = {w.key: w for w in (
    WeightFile("ffhq", "the FFHQ StyleGAN2 checkpoint", ("stylegan2-ffhq-config-f.pt",), "--ffhq",
               "rosinality's stylegan2-pytorch conversion with the discriminator, linked from "
               "https://github.com/williamyang1991/DualStyleGAN#pretrained-models"),
    WeightFile("encoder", "the pSp encoder", ("encoder.pt",), "--encoder",
               "the DualStyleGAN models (dualstylegan download cartoon fetches it, or "
               "https://huggingface.co/CVPR/DualStyleGAN/tree/main/models)"),
    WeightFile("vgg", "the VGG19 weights", ("vgg19-dcbb9e9d.pth",), "--vgg",
               "torchvision's ImageNet vgg19, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    WeightFile("lpips", "the LPIPS v0.1 linear layers", ("vgg.pth",), "--lpips",
               "the lpips package's lpips/weights/v0.1/vgg.pth (pip install lpips, or "
               "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1)",
               "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"),
    WeightFile("lpips_vgg16", "the VGG16 weights of LPIPS", ("vgg16-397923af.pth",), "--lpips-vgg16",
               "torchvision's ImageNet vgg16, https://download.pytorch.org/models/vgg16-397923af.pth",
               "https://download.pytorch.org/models/vgg16-397923af.pth"),
    WeightFile("identity", "the IR-SE50 identity network", ("model_ir_se50.pth",), "--identity",
               "the pSp / DualStyleGAN pretrained models, linked from "
               "https://github.com/williamyang1991/DualStyleGAN#pretrained-models"),
)}


def _torch_hub_dir() -> Path:
    env = os.environ.get("TORCH_HOME")
    base = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return base / "hub" / "checkpoints"


def search_folders(key: str) -> list[Path]:
    """Where :func:`find_weights` looks for a weight file that was not given (in this order)."""
    from ..hub import models_home

    home = models_home()
    if key == "lpips":
        folders = [home / "lpips" / "v0.1"]
        try:
            import importlib.util

            spec = importlib.util.find_spec("lpips")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            folders.insert(0, Path(spec.origin).parent / "weights" / "v0.1")
        return folders
    if key in ("vgg", "lpips_vgg16"):
        return [_torch_hub_dir(), home / "models", home]
    return [home / "models", home]


def _download(spec: WeightFile) -> Path | None:
    """Fetch a weight file that has a direct URL (or encoder.pt from the Hugging Face Hub); None when impossible."""
    if spec.key == "encoder":
        from ..hub import HUB_REPO, HUB_REVISION, Hub

        return Hub(HUB_REPO, HUB_REVISION, None, False).get("models/encoder.pt")
    if spec.url is None:
        return None
    import torch

    folder = search_folders(spec.key)[-1] if spec.key == "lpips" else _torch_hub_dir()
    target = folder / spec.names[0]
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", spec.what, spec.url)
    try:
        torch.hub.download_url_to_file(spec.url, os.fspath(target), progress=True)
    except Exception as exc:  # noqa: BLE001 - any failure: the file stays missing and the message says so
        log.warning("could not download %s: %s", spec.url, exc)
        return None
    return target


def find_weights(key: str, given: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """The path of weight file ``key`` (see :data:`WEIGHT_FILES`): ``given`` when set, else the first of its official
    names in :func:`search_folders` (encoder.pt also from the Hugging Face cache), else — with ``download`` — a
    download where one exists. Raises :class:`MissingWeightsError` with one sentence otherwise."""
    spec = WEIGHT_FILES[key]
    if given is not None:
        path = Path(given).expanduser()
        if path.is_file():
            return path
        raise MissingWeightsError(f"{spec.what[0].upper()}{spec.what[1:]} file {path} does not exist: give "
                                  f"{spec.flag} PATH to {spec.names[0]} ({spec.source}).")
    for folder in search_folders(key):
        for name in spec.names:
            if (folder / name).is_file():
                return folder / name
    if key == "encoder":
        from ..hub import HUB_REPO, HUB_REVISION, Hub

        hit = Hub(HUB_REPO, HUB_REVISION, None, True).cached("models/encoder.pt")
        if hit is not None:
            return hit
    if download:
        got = _download(spec)
        if got is not None and Path(got).is_file():
            return Path(got)
    where = ", ".join(str(f) for f in search_folders(key))
    hint = " (or run with --download)" if spec.url or key == "encoder" else ""
    raise MissingWeightsError(f"Could not find {spec.what} ({spec.names[0]}): give {spec.flag} PATH or put it in "
                              f"{where}{hint}; it is {spec.source}.")


@dataclass
class FeatureNets:
    """Feature networks of the losses given as modules (tests inject random ones). Any left None is loaded from
    its weight file. ``vgg``: a :class:`~dualstylegan.nets.perceptual.VGG19Features`; ``lpips``: an
    :class:`~dualstylegan.nets.perceptual.LPIPS` or a callable (x, y) → (B,) distance; ``identity``: an
    :class:`~dualstylegan.nets.encoder.IdentityNet` or a callable (x, y) → identity loss."""

    vgg: Any = None
    lpips: Any = None
    identity: Any = None


def load_lpips(lin: str | os.PathLike, vgg16: str | os.PathLike | None = None):
    """LPIPS from the lpips package's ``vgg.pth`` (the linear layers) and torchvision's ``vgg16`` weights — or from
    one full LPIPS state dict (backbone included), which needs no ``vgg16``."""
    from ..checkpoints import load_torch_file
    from ..nets.perceptual import LPIPS

    state = load_torch_file(lin)
    if not isinstance(state, Mapping):
        raise RecipeError(f"{Path(lin).name} is not an LPIPS weights file (vgg.pth of the lpips package).")
    net = LPIPS()
    if any(str(k).startswith("net.") for k in state):
        net.load_state_dict(dict(state))
        return net.eval()
    try:
        net.load_lin_state_dict(state)
    except KeyError as exc:
        raise RecipeError(f"{Path(lin).name} is not the LPIPS v0.1 VGG file vgg.pth ({exc.args[0]}).") from None
    if vgg16 is None:
        raise MissingWeightsError(f"{Path(lin).name} holds LPIPS's linear layers only: give --lpips-vgg16 PATH to "
                                  f"vgg16-397923af.pth ({WEIGHT_FILES['lpips_vgg16'].source}).")
    net.net.load_state_dict(load_torch_file(vgg16))
    return net.eval()


def _lpips_is_full(path: Path) -> bool:
    """Whether an LPIPS file holds the VGG16 backbone too (then no separate vgg16 file is needed)."""
    from ..checkpoints import load_torch_file

    try:
        state = load_torch_file(path)
    except Exception:  # noqa: BLE001 - an unreadable file is reported when the step loads it
        return False
    return isinstance(state, Mapping) and any(str(k).startswith("net.") for k in state)


# ------------------------------------------------------------------------------------------- settings
def _reference_defaults() -> dict[str, int]:
    from .destylize import DESTYLIZE_ITERATIONS
    from .finetune import FINETUNE_STEPS
    from .finetune_stylegan import FINETUNE_STYLEGAN_STEPS
    from .pretrain import PRETRAIN_STEPS
    from .refine_codes import REFINE_ITERATIONS

    return {"finetune_stylegan_iters": FINETUNE_STYLEGAN_STEPS, "destylize_iters": DESTYLIZE_ITERATIONS,
            "pretrain_iters": PRETRAIN_STEPS, "finetune_iters": FINETUNE_STEPS, "refine_iters": REFINE_ITERATIONS}


@dataclass
class RecipeConfig:
    """Settings of a training run; the defaults are the reference's (SPEC §7) for 1024² on GPUs.

    Iteration counts: ``finetune_stylegan_iters`` 600 (g′), ``destylize_iters`` 300 per image, ``pretrain_iters``
    3600 (300 + 300 + 3000 over inject indices 7, 6, 5), ``finetune_iters`` 1500, ``refine_iters`` 100 per
    exemplar, ``sampler_epochs`` None = 500 000 / (augmented code count) ≈ 500. ``scale`` multiplies all of them
    (at least 1 each) for a quick run. ``batch`` is per process (the reference: 4 on each of 8 GPUs;
    ``grad_accum`` splits it into micro-batches). ``style`` picks (λ_ID, λ_reg) from
    :data:`dualstylegan.train.finetune.STYLE_PRESETS` (default: the run's name when it is a preset, else (1, 0.01));
    ``lambda_id`` / ``lambda_reg`` override it. ``faces``: a folder of aligned real faces (FFHQ) for pre-training's
    discriminator, else faces sampled from the FFHQ generator. ``pretrained``: an existing pre-trained DualStyleGAN
    (``generator-pretrain.pt``, shared by all styles of one FFHQ model) instead of the pretrain step.
    """

    size: int = 1024
    batch: int = 4
    device: str | None = None
    align: bool = True
    min_images: int = MIN_STYLE_IMAGES
    finetune_stylegan_iters: int | None = None
    destylize_iters: int | None = None
    pretrain_iters: int | None = None
    finetune_iters: int | None = None
    refine_iters: int | None = None
    sampler_epochs: int | None = None
    scale: float = 1.0
    style: str | None = None
    lambda_id: float | None = None
    lambda_reg: float | None = None
    lr_color: float | None = None
    lr_structure: float | None = None
    faces: str | None = None
    pretrained: str | None = None
    seed: int = 0
    grad_accum: int = 1
    amp: bool = False
    checkpoint_every: int = 100
    sample_every: int = 100
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self):
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.batch < 1 or self.grad_accum < 1 or self.batch % self.grad_accum:
            raise ValueError("batch must be >= 1 and divisible by grad_accum")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.min_images < 1:
            raise ValueError("min_images must be >= 1")

    def iterations(self, field_name: str) -> int:
        """The iteration count of a step (its field or the reference default, times ``scale``, at least 1)."""
        value = getattr(self, field_name)
        if value is None:
            value = _reference_defaults()[field_name]
        return max(1, round(int(value) * self.scale))

    def sampler_epochs_for(self, n_codes: int) -> int:
        from .fit_sampler import augmented_count, default_epochs

        epochs = self.sampler_epochs
        if epochs is None:
            epochs = default_epochs(augmented_count(n_codes))
        return max(1, round(int(epochs) * self.scale))

    def preset(self, name: str | None) -> tuple[float, float]:
        """(λ_ID, λ_reg) of the run."""
        from .finetune import STYLE_PRESETS, style_preset

        style = self.style if self.style is not None else (name if name and name.lower() in STYLE_PRESETS else None)
        lam_id, lam_reg = style_preset(style)
        return (float(self.lambda_id if self.lambda_id is not None else lam_id),
                float(self.lambda_reg if self.lambda_reg is not None else lam_reg))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipeConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ------------------------------------------------------------------------------------------- helpers
def _write_json(path: Path, obj: Any) -> None:
    from ..atomic import write_json

    write_json(path, obj)


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _copy_atomic(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (a hard link when possible), never half-written."""
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def _same_file(a: Path, b: Path) -> bool:
    if not (a.is_file() and b.is_file()):
        return False
    if os.path.samefile(a, b):
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha1(a) == _sha1(b)


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_device(device: str | None) -> str:
    import torch

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device in (None, "auto"):
        return f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RecipeError("--device cuda was asked for, but no CUDA GPU is available.")
        return f"cuda:{local}"
    return device


@dataclass
class StepResult:
    step: str
    ran: bool
    seconds: float = 0.0
    record: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train_style` did: the pack folder and, per step, whether it ran or was skipped."""

    pack: Path
    work_dir: Path
    steps: list[StepResult]

    @property
    def ran(self) -> list[str]:
        return [s.step for s in self.steps if s.ran]

    @property
    def skipped(self) -> list[str]:
        return [s.step for s in self.steps if not s.ran]


# ------------------------------------------------------------------------------------------- the recipe
class Recipe:
    """One style's training run in ``work_dir``: its inputs, settings and steps.

    Weight files (``ffhq``, ``encoder``, ``vgg``, ``lpips``, ``lpips_vgg16``, ``identity``) are paths; those not
    given are looked for (:func:`find_weights`) when a step needs them. Everything given is stored in
    ``work_dir/recipe.json`` so that a single step can later run from the work dir alone (:meth:`from_work_dir`).
    ``echo`` gets one line per step (default: the log).
    """

    def __init__(self, work_dir: str | os.PathLike, name: str, style_dir: str | os.PathLike | None = None, *,
                 out: str | os.PathLike | None = None, config: RecipeConfig | None = None,
                 files: Mapping[str, str | os.PathLike | None] | None = None,
                 feature_nets: FeatureNets | None = None, download: bool = False,
                 echo: Callable[[str], None] | None = None):
        if not name or Path(name).name != name or name.startswith("."):
            raise RecipeError(f"the style name {name!r} must be a plain folder name (no slashes), e.g. 'mystyle'.")
        self.work_dir = Path(work_dir)
        self.name = name
        self.style_dir = Path(style_dir).expanduser().resolve() if style_dir is not None else None
        self.out_given = out is not None
        self.out = Path(out).expanduser() if out is not None else self.work_dir / "models"
        self.config = config or RecipeConfig()
        unknown = set(files or {}) - set(WEIGHT_FILES)
        if unknown:
            raise ValueError(f"unknown weight files {sorted(unknown)}; known: {sorted(WEIGHT_FILES)}")
        self.files = {k: (os.fspath(Path(v).expanduser().resolve()) if v is not None else None)
                      for k, v in (files or {}).items()}
        self.feature_nets = feature_nets or FeatureNets()
        self.download = download
        self.echo = echo or (lambda line: log.info("%s", line))
        self._resolved: dict[str, Path] = {}
        self._dist = None

    # -------------------------------------------------------------------------------- persistence
    @classmethod
    def from_work_dir(cls, work_dir: str | os.PathLike, *, name: str | None = None,
                      style_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                      config: Mapping[str, Any] | None = None, files: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> Recipe:
        """The recipe stored in ``work_dir/recipe.json``, with the given values (those not None) replacing the
        stored ones."""
        work = Path(work_dir)
        stored = _read_json(work / RECIPE_FILE)
        if stored is None and name is None:
            raise RecipeError(f"{work} is not a training work dir (it has no {RECIPE_FILE}); start with "
                              "dualstylegan train STYLE_DIR --name NAME, or give --name.")
        stored = stored or {}
        merged_config = dict(stored.get("config") or {})
        merged_config.update({k: v for k, v in (config or {}).items() if v is not None})
        merged_files = dict(stored.get("files") or {})
        merged_files.update({k: v for k, v in (files or {}).items() if v is not None})
        return cls(work, name or stored["name"],
                   style_dir if style_dir is not None else stored.get("style_dir"),
                   out=out if out is not None else stored.get("out"),
                   config=RecipeConfig.from_dict(merged_config), files=merged_files, **kwargs)

    def save(self) -> None:
        """Write ``work_dir/recipe.json`` (rank 0 only; every setting but the device)."""
        if not self.dist.main:
            return
        _write_json(self.work_dir / RECIPE_FILE, {
            "name": self.name, "style_dir": os.fspath(self.style_dir) if self.style_dir else None,
            "out": os.fspath(self.out.resolve()) if self.out_given else None,  # default: WORK_DIR/models
            "files": {k: v for k, v in self.files.items() if v},
            "config": {**self.config.to_dict(), "device": None}})  # the device belongs to the machine, not the run

    # -------------------------------------------------------------------------------- distributed
    @property
    def dist(self):
        """This process's rank under ``torchrun`` (joining the process group once, with a timeout long enough for
        the other ranks to wait while rank 0 runs the per-image steps)."""
        if self._dist is None:
            from .loop import Dist, init_distributed

            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                import datetime

                import torch
                import torch.distributed as td

                device = self.device
                if not td.is_initialized():
                    if device.startswith("cuda"):
                        torch.cuda.set_device(torch.device(device))
                    td.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                          timeout=datetime.timedelta(hours=DIST_TIMEOUT_HOURS))
                self._dist = init_distributed(device)
            else:
                self._dist = Dist()
        return self._dist

    def say(self, line: str) -> None:
        if self.dist.main:
            self.echo(line)

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as td

            td.barrier()

    @property
    def device(self) -> str:
        return _default_device(self.config.device)

    # -------------------------------------------------------------------------------- files
    def step_dir(self, step: str) -> Path:
        return self.work_dir / step

    @property
    def images_dir(self) -> Path:
        return self.step_dir("prepare") / "images"

    @property
    def pack_dir(self) -> Path:
        return self.out / self.name

    def weights(self, key: str) -> Path:
        """The resolved path of weight file ``key`` (checked once)."""
        if key not in self._resolved:
            self._resolved[key] = find_weights(key, self.files.get(key), download=self.download)
        return self._resolved[key]

    def needed_files(self, steps: Iterable[str]) -> list[str]:
        """The weight files the given steps need, minus those given as modules or made unnecessary by settings."""
        keys: list[str] = []
        for step in steps:
            for key in NEEDS[step]:
                if key in ("vgg", "lpips", "identity") and getattr(self.feature_nets, key) is not None:
                    continue
                if step == "pretrain" and self.config.pretrained is not None:
                    continue
                if step == "finetune" and key == "identity" and self.config.preset(self.name)[0] <= 0:
                    continue
                if key not in keys:
                    keys.append(key)
        if "lpips" in keys and (self.files.get("lpips_vgg16") or not self._lpips_full()):
            keys.insert(keys.index("lpips") + 1, "lpips_vgg16")
        return keys

    def _lpips_full(self) -> bool:
        try:
            return _lpips_is_full(self.weights("lpips"))
        except MissingWeightsError:
            return False

    def check_files(self, steps: Iterable[str]) -> dict[str, Path]:
        """Resolve every weight file ``steps`` need, up front; the missing ones → one :class:`MissingWeightsError`."""
        steps = list(steps)
        if self.config.pretrained is not None and "pretrain" in steps and not Path(self.config.pretrained).is_file():
            raise MissingWeightsError(f"The pre-trained DualStyleGAN {self.config.pretrained} does not exist: give "
                                      "--pretrained PATH to a generator-pretrain.pt, or leave it out to pre-train.")
        found, missing = {}, []
        for key in self.needed_files(steps):
            try:
                found[key] = self.weights(key)
            except MissingWeightsError as exc:
                missing.append(str(exc))
        if len(missing) == 1:
            raise MissingWeightsError(missing[0])
        if missing:
            raise MissingWeightsError(f"{len(missing)} weight files are missing — " +
                                      "; ".join(m.rstrip(".") for m in missing) + ".")
        return found

    # -------------------------------------------------------------------------------- feature nets
    def _vgg(self):
        from .pretrain import load_vgg

        return self.feature_nets.vgg if self.feature_nets.vgg is not None else load_vgg(os.fspath(self.weights("vgg")))

    def _lpips(self):
        if self.feature_nets.lpips is not None:
            return self.feature_nets.lpips
        lin = self.weights("lpips")
        return load_lpips(lin, None if _lpips_is_full(lin) else self.weights("lpips_vgg16"))

    def _identity(self):
        from .finetune import load_id_loss

        ident = self.feature_nets.identity
        return load_id_loss(ident if ident is not None else os.fspath(self.weights("identity")))

    # -------------------------------------------------------------------------------- markers
    def marker(self, step: str) -> dict | None:
        return _read_json(self.step_dir(step) / MARKER)

    def settings(self, step: str) -> dict[str, Any]:
        """What a step's result depends on besides its inputs' tokens (a change makes it run again). The batch
        and the number of GPUs are not among them: a step trained on 8 GPUs stays done in a one-GPU run."""
        c = self.config
        if step == "prepare":
            return {"size": c.size, "align": c.align, "sources": self._source_fingerprint(),
                    "style_dir": os.fspath(self.style_dir) if self.style_dir else None}
        if step == "finetune-stylegan":
            return {"iters": c.iterations("finetune_stylegan_iters"), "seed": c.seed}
        if step == "destylize":
            return {"iters": c.iterations("destylize_iters"), "seed": c.seed}
        if step == "pretrain":
            if c.pretrained is not None:
                return {"pretrained": os.fspath(Path(c.pretrained).expanduser().resolve())}
            return {"iters": c.iterations("pretrain_iters"), "seed": c.seed, "faces": c.faces}
        if step == "finetune":
            lam_id, lam_reg = c.preset(self.name)
            return {"iters": c.iterations("finetune_iters"), "seed": c.seed, "lambda_id": lam_id,
                    "lambda_reg": lam_reg}
        if step == "refine-codes":
            from .refine_codes import LR_COLOR, LR_STRUCTURE

            return {"iters": c.iterations("refine_iters"), "seed": c.seed,
                    "lr_color": c.lr_color if c.lr_color is not None else LR_COLOR,
                    "lr_structure": c.lr_structure if c.lr_structure is not None else LR_STRUCTURE}
        if step == "fit-sampler":
            return {"epochs": c.sampler_epochs, "scale": c.scale, "seed": c.seed}
        if step == "pack":
            return {"name": self.name, "out": os.fspath(self.out.resolve())}
        raise KeyError(step)

    def _source_fingerprint(self) -> str | None:
        """The style folder's files (names and sizes): adding or replacing images prepares them again."""
        if self.style_dir is None or not self.style_dir.is_dir():
            return None
        h = hashlib.sha1()
        for p in sorted(self.style_dir.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        return h.hexdigest()

    def input_tokens(self, step: str) -> dict[str, str | None]:
        return {dep: (self.marker(dep) or {}).get("token") for dep in DEPENDS[step]}

    def is_done(self, step: str) -> tuple[bool, str]:
        """(done, why not): the marker is there, with the current settings and the current inputs' tokens."""
        record = self.marker(step)
        if record is None:
            return False, "not done yet"
        if record.get("settings") != _jsonable(self.settings(step)):
            return False, "its settings changed"
        if record.get("inputs") != self.input_tokens(step):
            return False, "an earlier step ran again"
        missing = [p for p in record.get("outputs", {}).values() if not (self.work_dir / p).exists()]
        if missing:
            return False, f"its output {missing[0]} is gone"
        return True, "done"

    def plan(self) -> list[str]:
        """The steps a run would execute (conservatively: a step after one that runs runs too)."""
        todo: list[str] = []
        for step in STEPS:
            if not self.is_done(step)[0] or any(dep in todo for dep in DEPENDS[step]):
                todo.append(step)
        return todo

    # -------------------------------------------------------------------------------- running
    def run(self, steps: Iterable[str] | None = None) -> TrainResult:
        """Run ``steps`` (default all, in order), skipping finished ones; returns what ran."""
        steps = list(STEPS if steps is None else steps)
        for s in steps:
            if s not in STEPS:
                raise RecipeError(f"there is no step {s!r}; the steps are {', '.join(STEPS)}.")
        if "prepare" in steps and self.style_dir is None:
            raise RecipeError("the style image folder is not known; give STYLE_DIR.")
        todo = [s for s in self.plan() if s in steps]
        self.check_files(todo)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.save()
        results = []
        for step in steps:
            done, why = self.is_done(step)
            if done:
                self.say(f"{step}: done, skipped")
                results.append(StepResult(step, False, record=self.marker(step) or {}))
                continue
            self.say(f"{step}: running ({why})")
            results.append(self.run_step(step))
        return TrainResult(self.pack_dir, self.work_dir, results)

    def run_step(self, step: str, restart: bool = False) -> StepResult:
        """Run one step now (whatever its marker says), after its inputs are done; resume it from its checkpoint
        unless ``restart`` or its settings / inputs changed since it started."""
        for dep in DEPENDS[step]:
            if not self.is_done(dep)[0]:
                if dep == "pretrain" and self.config.pretrained is not None:
                    self.run_step(dep)  # a given pre-trained file: nothing to run, just record it
                    continue
                raise RecipeError(f"the step {step} needs {dep} first: run dualstylegan {dep} {self.work_dir} "
                                  f"(or dualstylegan train, which runs every step).")
        self.check_files([step])
        folder = self.step_dir(step)
        settings, inputs = _jsonable(self.settings(step)), self.input_tokens(step)
        started = _read_json(folder / STARTED)
        if self.dist.main:
            fresh = restart or (started is not None and not _can_resume(step, started, settings, inputs))
            if fresh and folder.exists():
                self.say(f"{step}: starting over")
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MARKER).unlink(missing_ok=True)
            _write_json(folder / STARTED, {"settings": settings, "inputs": inputs})
        self._barrier()
        t0 = time.time()
        outputs, extra = {}, {}
        if step in LOOP_STEPS or self.dist.main:
            outputs, extra = getattr(self, "_" + step.replace("-", "_"))(folder)
        if step in LOOP_STEPS:
            extra.update(batch=self.config.batch * self.dist.world, world=self.dist.world)
        record = {"step": step, "token": extra.pop("token", None) or secrets.token_hex(8), "settings": settings,
                  "inputs": inputs, "outputs": {k: self._relative(v) for k, v in outputs.items()},
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - t0, 3), **extra}
        if self.dist.main:
            _write_json(folder / MARKER, record)
        self._barrier()
        return StepResult(step, True, record["seconds"], record)

    def _loop_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {"device": self.device, "seed": c.seed, "grad_accum": c.grad_accum, "amp": c.amp,
                "checkpoint_every": c.checkpoint_every, "sample_every": c.sample_every, "progress": c.progress,
                "tensorboard": c.tensorboard, "resume": True}

    # -------------------------------------------------------------------------------- the steps
    def _prepare(self, folder: Path):
        from ..images import is_image_file
        from .data import prepare_style_images

        c = self.config
        src = self.style_dir
        images = folder / "images"
        try:
            kept, rejected = prepare_style_images(src, images, c.size, align=c.align, progress=c.progress)
        except ImportError as exc:  # no dlib: say how to do without it too
            raise RecipeError(f"{str(exc).strip().rstrip('.')}; or give --no-align when the style images are "
                              "already aligned face crops.") from None
        others = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith(".") and not
                        is_image_file(p))
        rejected += [(p, f"{p.name} is not an image file (by its extension, {p.suffix or 'none'}).") for p in others]
        names = {p.name for p in kept}
        for stale in images.iterdir():  # images of sources no longer there
            if stale.is_file() and stale.name not in names:
                stale.unlink()
        lines = [f"{p.name}\t{reason}" for p, reason in rejected]
        (folder / "rejected.txt").write_text("".join(line + "\n" for line in lines))
        for line in lines:
            self.say("  rejected " + line.replace("\t", ": ", 1))
        if len(kept) < c.min_images:
            first = f" ({rejected[0][1].rstrip('.')})" if rejected else ""
            hint = "; --no-align uses the centred squares instead of detected faces" if c.align else ""
            raise RecipeError(f"only {len(kept)} of the images in {src} can be used{first}; a style needs at least "
                              f"{c.min_images} (see {folder / 'rejected.txt'}){hint}.")
        self.say(f"  {len(kept)} style image(s) ready in {images}, {len(rejected)} rejected")
        h = hashlib.sha1()
        for p in sorted(kept):
            h.update(p.name.encode() + b"\0" + _sha1(p).encode())
        return {"images": images}, {"token": h.hexdigest()[:16], "kept": sorted(names),
                                    "rejected": {p.name: reason for p, reason in rejected}}

    def _finetune_stylegan(self, folder: Path):
        from .finetune_stylegan import finetune_stylegan

        c = self.config
        path = finetune_stylegan(os.fspath(self.weights("ffhq")), self.images_dir, folder,
                                 steps=c.iterations("finetune_stylegan_iters"), batch=c.batch, size=c.size,
                                 **self._loop_kwargs())
        return {"g_prime": path}, {}

    def _destylize(self, folder: Path):
        import torch

        from .. import official
        from .destylize import EXSTYLE_NAME, INSTYLE_NAME, destylize

        c = self.config
        device = self.device
        g_prime = official.load_stylegan2(self.output("finetune-stylegan", "g_prime")).to(device)
        g = official.load_stylegan2(self.weights("ffhq")).to(device)
        encoder, _ = official.load_encoder(self.weights("encoder"), z_plus=True, with_decoder=False)
        lpips, id_loss = _to(self._lpips(), device), _to(self._identity(), device)
        destylize(self.images_dir, encoder.to(device), g_prime, g, lpips, id_loss, folder,
                  c.iterations("destylize_iters"), seed=c.seed, progress=c.progress)
        del g_prime, g, encoder
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"instyle": folder / INSTYLE_NAME, "exstyle": folder / EXSTYLE_NAME}, {}

    def _pretrain(self, folder: Path):
        from .pretrain import pretrain

        c = self.config
        if c.pretrained is not None:
            from .finetune import load_pretrain_checkpoint

            path = Path(c.pretrained).expanduser().resolve()
            load_pretrain_checkpoint(path)  # fail now, not in the middle of finetune, when it is the wrong file
            return {"generator": path}, {}
        faces = Path(c.faces).expanduser() if c.faces else None
        pretrain(os.fspath(self.weights("ffhq")), os.fspath(self.weights("encoder")), folder, self._vgg(),
                 steps=c.iterations("pretrain_iters"), batch=c.batch, faces=faces, **self._loop_kwargs())
        return {"generator": folder / "generator.pt"}, {}

    def _finetune(self, folder: Path):
        from .finetune import finetune

        c = self.config
        lam_id, lam_reg = c.preset(self.name)
        finetune(self.output("pretrain", "generator"), self.images_dir, folder, self._vgg(),
                 id_loss=self._identity() if lam_id > 0 else None, steps=c.iterations("finetune_iters"),
                 batch=c.batch, exstyle_codes=self.output("destylize", "exstyle"),
                 instyle_codes=self.output("destylize", "instyle"), lambda_id=lam_id, lambda_reg=lam_reg,
                 **self._loop_kwargs())
        return {"generator": folder / "generator.pt"}, {}

    def _refine_codes(self, folder: Path):
        from .. import official
        from ..codes import CodeBank
        from .refine_codes import REFINED_NAME, refine_codes

        c = self.config
        settings = self.settings("refine-codes")
        device = self.device
        generator = official.load_dualstylegan(self.output("finetune", "generator")).to(device)
        refine_codes(generator, CodeBank.load(self.output("destylize", "instyle")),
                     CodeBank.load(self.output("destylize", "exstyle")), self.images_dir,
                     _to(self._lpips(), device), _to(self._vgg(), device), settings["iters"],
                     settings["lr_color"], settings["lr_structure"], out_dir=folder, seed=c.seed,
                     progress=c.progress)
        return {"refined": folder / REFINED_NAME}, {}

    def _fit_sampler(self, folder: Path):
        from .. import official
        from ..codes import CodeBank
        from .fit_sampler import fit_sampler

        c = self.config
        bank = CodeBank.load(self.output("refine-codes", "refined"))
        epochs = c.sampler_epochs_for(len(bank))
        device = self.device
        sampler = fit_sampler(bank, epochs, seed=c.seed, device=device, progress=c.progress)
        official.save_sampler(folder / "sampler.pt", sampler)
        return {"sampler": folder / "sampler.pt"}, {"epochs": epochs}

    def _pack(self, folder: Path):
        from ..hub import CODES, ENCODER, GENERATOR, INSTYLE_CODES, REFINED_CODES, SAMPLER, resolve_style_pack

        target = self.pack_dir
        if (target / GENERATOR).exists() and not (target / PACK_RECORD).exists():
            raise RecipeError(f"{target} already holds a style pack that this training did not write; give another "
                              "--name or --out.")
        target.mkdir(parents=True, exist_ok=True)
        for src, name in ((self.output("finetune", "generator"), GENERATOR),
                          (self.output("destylize", "exstyle"), CODES),
                          (self.output("destylize", "instyle"), INSTYLE_CODES),
                          (self.output("refine-codes", "refined"), REFINED_CODES),
                          (self.output("fit-sampler", "sampler"), SAMPLER)):
            _copy_atomic(src, target / name)
        encoder = self.weights("encoder")
        shared = self.out / ENCODER
        if not shared.exists() or _same_file(encoder, shared):
            if not shared.exists():
                _copy_atomic(encoder, shared)
            (target / ENCODER).unlink(missing_ok=True)
            placed = shared
        else:  # another encoder is shared there: this style keeps its own
            _copy_atomic(encoder, target / ENCODER)
            placed = target / ENCODER
        _write_json(target / PACK_RECORD, {
            "name": self.name, "work_dir": os.fspath(self.work_dir.resolve()),
            "style_dir": os.fspath(self.style_dir) if self.style_dir else None,
            "config": self.config.to_dict(),
            "steps": {s: {k: (self.marker(s) or {}).get(k) for k in ("token", "settings", "finished", "seconds")}
                      for s in STEPS if s != "pack"}})
        files = resolve_style_pack(os.fspath(target), local_files_only=True)  # what transfer will load
        if files.encoder.resolve() != placed.resolve():
            raise RecipeError(f"the pack {target} would load {files.encoder} instead of the encoder it was trained "
                              f"with; remove that file.")
        self.say(f"  style pack written to {target}")
        return {"pack": target / GENERATOR, "encoder": placed}, {}

    def output(self, step: str, key: str) -> Path:
        record = self.marker(step)
        if record is None or key not in record.get("outputs", {}):
            raise RecipeError(f"the step {step} has not finished in {self.work_dir}; run it first.")
        return self.work_dir / record["outputs"][key]

    def _relative(self, path: str | os.PathLike) -> str:
        """A path inside the work dir relative to it (the work dir can move), any other absolute."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.work_dir.resolve()).as_posix()
        except ValueError:
            return os.fspath(path)


def _to(module, device):
    import torch

    return module.to(device) if isinstance(module, torch.nn.Module) else module


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _can_resume(step: str, started: Mapping[str, Any], settings: Mapping[str, Any],
                inputs: Mapping[str, Any]) -> bool:
    """Whether an interrupted (or finished) step's folder can be continued with the current settings and inputs:
    the same ones, or — for the training-loop steps — only a larger iteration count."""
    if started.get("inputs") != inputs:
        return False
    old = dict(started.get("settings") or {})
    if old == dict(settings):
        return True
    if step not in LOOP_STEPS:
        return False
    new = dict(settings)
    old_iters, new_iters = old.pop("iters", None), new.pop("iters", None)
    return old == new and isinstance(old_iters, int) and isinstance(new_iters, int) and new_iters >= old_iters


def train_style(style_dir: str | os.PathLike, name: str, work_dir: str | os.PathLike | None = None, *,
                out: str | os.PathLike | None = None, ffhq: str | os.PathLike | None = None,
                encoder: str | os.PathLike | None = None, vgg: str | os.PathLike | None = None,
                lpips: str | os.PathLike | None = None, lpips_vgg16: str | os.PathLike | None = None,
                identity: str | os.PathLike | None = None, config: RecipeConfig | None = None,
                feature_nets: FeatureNets | None = None, download: bool = False,
                echo: Callable[[str], None] | None = None) -> TrainResult:
    """Train a new style from a folder of style images and write its pack (``<out>/<name>/``, default
    ``<work_dir>/models/<name>/``; ``work_dir`` defaults to ``runs/<name>``).

    ``ffhq``: ``stylegan2-ffhq-config-f.pt`` (with its discriminator); ``encoder``: the pSp ``encoder.pt``; ``vgg``:
    torchvision's ``vgg19-dcbb9e9d.pth``; ``lpips``: the lpips package's ``vgg.pth`` (linear layers) with
    ``lpips_vgg16``: torchvision's ``vgg16-397923af.pth``; ``identity``: ``model_ir_se50.pth``. Files not given are
    looked for (:func:`find_weights`); ``feature_nets`` replaces the VGG19 / LPIPS / identity files by modules.
    Every file a step still to run needs is checked first. Steps already done are skipped, an interrupted one
    resumes (see the module docstring). Returns what ran and where the pack is.
    """
    files = {"ffhq": ffhq, "encoder": encoder, "vgg": vgg, "lpips": lpips, "lpips_vgg16": lpips_vgg16,
             "identity": identity}
    stored = _read_json(Path(work_dir or Path("runs") / name) / RECIPE_FILE) or {}
    for key, value in (stored.get("files") or {}).items():  # paths given to an earlier run of this work dir
        if files.get(key) is None and key in WEIGHT_FILES:
            files[key] = value
    recipe = Recipe(work_dir if work_dir is not None else Path("runs") / name, name, style_dir, out=out,
                    config=config, files=files, feature_nets=feature_nets, download=download, echo=echo)
    if not recipe.style_dir.is_dir():
        raise RecipeError(f"the style image folder {recipe.style_dir} does not exist; give the folder of style images.")
    return recipe.run()


__all__ = [
    "DEPENDS",
    "NEEDS",
    "STEPS",
    "WEIGHT_FILES",
    "FeatureNets",
    "MissingWeightsError",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "TrainResult",
    "find_weights",
    "load_lpips",
    "search_folders",
    "train_style",
]
