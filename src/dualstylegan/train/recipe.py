"""The whole training recipe: a folder of style images → a style pack that ``transfer`` loads (paper §3).

:func:`train_style` (``dualstylegan train STYLE_DIR --name NAME``) runs the registered steps
(:mod:`dualstylegan.train.steps`, in order) in a *work dir* (default ``runs/<name>``), one folder per step::

    prepare/            images/ (checked, aligned, square PNGs at the training size), rejected.txt
    finetune-stylegan/  finetune-<iters>.pt (g′), checkpoint.pt, samples/        finetune_stylegan.py
    destylize/          instyle_code.npy, exstyle_code.npy, codes/, log/          destylize.py
    pretrain/           generator.pt (the reference's generator-pretrain.pt), …   pretrain_dualstylegan.py
    finetune/           generator.pt ({'g_ema'}), checkpoint.pt, samples/         finetune_dualstylegan.py
    refine-codes/       refined_exstyle_code.npy, log/refine/                     refine_exstyle.py
    fit-sampler/        sampler.pt                                                train_sampler.py
    pack/               (the marker of the last step: the pack written to ``<out>/<name>/``)

(right: the reference's script each step does the work of). Every step writes ``<step>/done.json`` (atomically,
after its outputs exist): its settings, a token, and the tokens of the steps it read. A re-run skips a step whose
marker is there with the same settings and the same inputs; a step without a marker resumes from its own
checkpoint (the training loop's, destylization's per-image results); a step whose settings or inputs changed starts
over (a larger iteration count alone continues the checkpoint). When a step runs again, the steps that read its
outputs run again after it.

The same command gives the same pack, bit for bit, on one machine: each step runs with the global generators seeded
by the recipe's seed and the step's name (:func:`dualstylegan.train.seeding.seeded`), the training loops seed and
checkpoint their own generators, and destylization and refinement seed each image by its name — so neither a fresh
process nor a run killed anywhere and started again draws differently. (On a GPU, bit-identical also needs
deterministic kernels; torch does not promise them by default.)

The feature nets of the losses are weight files the user supplies (:mod:`dualstylegan.weight_files` says where
they are looked for); every file a step still to run needs is checked before anything runs, and missing ones stop
the run with one sentence, then one line per missing file saying where to get it. Tests (and callers with their own networks) pass :class:`FeatureNets` instead.
"""
from __future__ import annotations

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

from ..atomic import read_json, write_json
from ..weight_files import WEIGHT_FILES, FeatureNets, MissingWeightsError, find_weights, load_feature_net, lpips_is_full
from .config import MIN_STYLE_IMAGES, LoopConfig, RecipeConfig
from .seeding import seeded
from .step import RecipeError, Step
from .steps import get_step, step_names, steps

log = logging.getLogger(__name__)

MARKER = "done.json"
STARTED = "started.json"
RECIPE_FILE = "recipe.json"
#: How long the other ranks wait under ``torchrun`` while rank 0 runs destylization, refinement and the sampler.
DIST_TIMEOUT_HOURS = 72


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


class Recipe:
    """One style's training run in ``work_dir``: its inputs, settings and steps — what every :class:`Step` reads.

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
        stored = read_json(work / RECIPE_FILE)
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
        write_json(self.work_dir / RECIPE_FILE, {
            "name": self.name, "style_dir": os.fspath(self.style_dir) if self.style_dir else None,
            "out": os.fspath(self.out.resolve()) if self.out_given else None,  # default: WORK_DIR/models
            "files": {k: v for k, v in self.files.items() if v},
            "config": {**self.config.to_dict(), "device": None}})  # the device belongs to the machine, not the run

    # -------------------------------------------------------------------------------- what steps read
    @property
    def dist(self):
        """This process's rank under ``torchrun`` (joining the process group once, with a timeout long enough for
        the other ranks to wait while rank 0 runs the per-image steps)."""
        if self._dist is None:
            import datetime

            from .loop import Dist, init_distributed

            single = int(os.environ.get("WORLD_SIZE", "1")) <= 1
            self._dist = Dist() if single else init_distributed(
                self.device, timeout=datetime.timedelta(hours=DIST_TIMEOUT_HOURS))
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
        from ..devices import resolve_device

        return resolve_device(self.config.device)

    def loop_config(self) -> LoopConfig:
        """The training loop's settings of the loop steps (their steps and folder are theirs)."""
        return self.config.loop()

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

    def feature(self, key: str) -> Any:
        """Feature net ``key`` ('vgg', 'lpips', 'identity' — the identity loss): given, or from its file."""
        return load_feature_net(key, self.feature_nets, self.weights)

    def output(self, step: str, key: str) -> Path:
        record = self.marker(step)
        if record is None or key not in record.get("outputs", {}):
            raise RecipeError(f"the step {step} has not finished in {self.work_dir}; run it first.")
        return self.work_dir / record["outputs"][key]

    # -------------------------------------------------------------------------------- weight files
    def needed_files(self, names: Iterable[str]) -> list[str]:
        """The weight files the given steps need, minus those given as modules."""
        keys: list[str] = []
        for name in names:
            for key in get_step(name).needed(self):
                if key in ("vgg", "lpips", "identity") and getattr(self.feature_nets, key) is not None:
                    continue
                if key not in keys:
                    keys.append(key)
        if "lpips" in keys and (self.files.get("lpips_vgg16") or not self._lpips_full()):
            keys.insert(keys.index("lpips") + 1, "lpips_vgg16")
        return keys

    def _lpips_full(self) -> bool:
        try:
            return lpips_is_full(self.weights("lpips"))
        except MissingWeightsError:
            return False

    def check_files(self, names: Iterable[str]) -> dict[str, Path]:
        """Check what ``names`` need, up front: each step's own check, then every weight file (the missing ones →
        one :class:`MissingWeightsError`)."""
        names = list(names)
        for name in names:
            check = get_step(name).check
            if check is not None:
                check(self)
        found, missing = {}, []
        for key in self.needed_files(names):
            try:
                found[key] = self.weights(key)
            except MissingWeightsError as exc:
                missing.append(exc)
        if len(missing) == 1:
            raise missing[0]
        if missing:
            raise MissingWeightsError.several(missing)
        return found

    # -------------------------------------------------------------------------------- markers
    def marker(self, step: str) -> dict | None:
        return read_json(self.step_dir(step) / MARKER)

    def settings(self, step: str) -> dict[str, Any]:
        """What a step's result depends on besides its inputs' tokens (a change makes it run again). The batch
        and the number of GPUs are not among them: a step trained on 8 GPUs stays done in a one-GPU run."""
        return get_step(step).settings(self)

    def input_tokens(self, step: str) -> dict[str, str | None]:
        return {dep: (self.marker(dep) or {}).get("token") for dep in get_step(step).depends}

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
        for step in steps():
            if not self.is_done(step.name)[0] or any(dep in todo for dep in step.depends):
                todo.append(step.name)
        return todo

    # -------------------------------------------------------------------------------- running
    def run(self, names: Iterable[str] | None = None) -> TrainResult:
        """Run the steps ``names`` (default all, in order), skipping finished ones; returns what ran."""
        names = list(step_names() if names is None else names)
        chosen = [get_step(n) for n in names]
        if any(s.style_dir for s in chosen) and self.style_dir is None:
            raise RecipeError("the style image folder is not known; give STYLE_DIR.")
        self.check_files([s for s in self.plan() if s in names])
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.save()
        results = []
        for k, name in enumerate(names, 1):
            done, why = self.is_done(name)
            head = f"step {k} of {len(names)}: {name}"
            if done:
                self.say(f"{head}: done, skipped")
                results.append(StepResult(name, False, record=self.marker(name) or {}))
                continue
            self.say(f"{head}: {get_step(name).help}" + ("" if why == "not done yet" else f" ({why})"))
            results.append(self.run_step(name))
        return TrainResult(self.pack_dir, self.work_dir, results)

    def run_step(self, name: str, restart: bool = False) -> StepResult:
        """Run one step now (whatever its marker says), after its inputs are done; resume it from its checkpoint
        unless ``restart`` or its settings / inputs changed since it started."""
        step = get_step(name)
        for dep in step.depends:
            if not self.is_done(dep)[0]:
                if get_step(dep).instant is not None and get_step(dep).instant(self):
                    self.run_step(dep)  # e.g. a given pre-trained file: nothing to run, just record it
                    continue
                raise RecipeError(f"the step {name} needs {dep} first: run dualstylegan {dep} {self.work_dir} "
                                  f"(or dualstylegan train, which runs every step).")
        self.check_files([name])
        folder = self.step_dir(name)
        settings, inputs = _jsonable(self.settings(name)), self.input_tokens(name)
        if self.dist.main:
            started = read_json(folder / STARTED)
            fresh = restart or (started is not None and not _can_resume(step, started, settings, inputs))
            if fresh and folder.exists():
                self.say(f"  {name}: starting over")
                shutil.rmtree(folder)
            elif started is not None:
                self.say(f"  {name}: resuming where the last run stopped")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MARKER).unlink(missing_ok=True)
            write_json(folder / STARTED, {"settings": settings, "inputs": inputs})
        self._barrier()
        t0 = time.time()
        with seeded(self.config.seed, "step", name):  # the same draws in any process: fresh, resumed, a test's
            outputs, extra = step.run(self, folder) if step.loop or self.dist.main else ({}, {})
        if step.loop:
            extra.update(batch=self.config.batch * self.dist.world, world=self.dist.world)
        record = {"step": name, "token": extra.pop("token", None) or secrets.token_hex(8), "settings": settings,
                  "inputs": inputs, "outputs": {k: self._relative(v) for k, v in outputs.items()},
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - t0, 3), **extra}
        if self.dist.main:
            write_json(folder / MARKER, record)
        self._barrier()
        return StepResult(name, True, record["seconds"], record)

    def _relative(self, path: str | os.PathLike) -> str:
        """A path inside the work dir relative to it (the work dir can move), any other absolute."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.work_dir.resolve()).as_posix()
        except ValueError:
            return os.fspath(path)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _can_resume(step: Step, started: Mapping[str, Any], settings: Mapping[str, Any],
                inputs: Mapping[str, Any]) -> bool:
    """Whether an interrupted (or finished) step's folder can be continued with the current settings and inputs:
    the same ones, or — for the training-loop steps — only a larger iteration count."""
    if started.get("inputs") != inputs:
        return False
    old = dict(started.get("settings") or {})
    if old == dict(settings):
        return True
    if not step.loop:
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
    stored = read_json(Path(work_dir or Path("runs") / name) / RECIPE_FILE) or {}
    for key, value in (stored.get("files") or {}).items():  # paths given to an earlier run of this work dir
        if files.get(key) is None and key in WEIGHT_FILES:
            files[key] = value
    recipe = Recipe(work_dir if work_dir is not None else Path("runs") / name, name, style_dir, out=out,
                    config=config, files=files, feature_nets=feature_nets, download=download, echo=echo)
    if not recipe.style_dir.is_dir():
        raise RecipeError(f"the style image folder {recipe.style_dir} does not exist; give the folder of style images.")
    return recipe.run()


__all__ = [
    "MIN_STYLE_IMAGES",
    "WEIGHT_FILES",
    "FeatureNets",
    "LoopConfig",
    "MissingWeightsError",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "StepResult",
    "TrainResult",
    "find_weights",
    "train_style",
]
