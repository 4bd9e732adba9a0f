"""The same command gives the same pack, bit for bit: a `dualstylegan train` run in a fresh process, and runs killed
(SIGKILL) in the middle — during destylization, and at a random point — then started again, give byte-identical
step outputs and packs to one uninterrupted run in this process (whose global generators are wherever the earlier
tests left them).

The runs are the tiny ones of :mod:`test_train_recipe` (narrow networks, random feature nets, two iterations per
step). A subprocess run imports that module for its stand-in feature nets. The random kill point is the N-th call of
``Tensor.backward`` (every training step, destylization, refinement and sampler iteration calls it), N drawn from
``DUALSTYLEGAN_KILL_SEED`` (default: a fresh seed, printed in the failure message).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_recipe import (NAME, assets, no_home_files, one_thread, run_cli,  # noqa: F401 (fixtures)
                               tiny_feature_net_loading, train_once)

TESTS = Path(__file__).resolve().parent

RUNNER = r'''
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
import test_train_recipe as recipe_tests
from dualstylegan.cli import main
from dualstylegan.train import destylize as destylize_module

calls = {{"backward": 0, "destylize": 0}}
kill_backward = int(os.environ.get("KILL_AT_BACKWARD", "0"))
kill_destylize = int(os.environ.get("KILL_AT_DESTYLIZE_IMAGE", "0"))
backward = torch.Tensor.backward

def counted_backward(self, *args, **kwargs):
    calls["backward"] += 1
    if calls["backward"] == kill_backward:
        os.kill(os.getpid(), signal.SIGKILL)
    return backward(self, *args, **kwargs)

torch.Tensor.backward = counted_backward
destylize_image = destylize_module.destylize_image

def counted_destylize_image(*args, **kwargs):
    calls["destylize"] += 1
    if calls["destylize"] == kill_destylize:  # the earlier images are done and saved, this one is not
        os.kill(os.getpid(), signal.SIGKILL)
    return destylize_image(*args, **kwargs)

destylize_module.destylize_image = counted_destylize_image
with recipe_tests.tiny_feature_net_files():
    rc = main(sys.argv[1:])
print("CALLS", calls["backward"], calls["destylize"], flush=True)
sys.exit(rc)
'''


def run_process(argv: list[str], root: Path, **kill: int) -> subprocess.CompletedProcess:
    """`dualstylegan ARGV` in a fresh Python process (KILL_AT_BACKWARD / KILL_AT_DESTYLIZE_IMAGE from ``kill``)."""
    script = root / "runner.py"
    script.write_text(RUNNER.format(tests=str(TESTS)))
    env = {**os.environ, "DUALSTYLEGAN_HOME": str(root / "home"), "TORCH_HOME": str(root / "torch"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **{k.upper(): str(v) for k, v in kill.items()}}
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, env=env,
                          timeout=600)


def argv_for(base: dict, root: Path) -> list[str]:
    """The baseline run's command with its style folder, but its own work dir and pack folder under ``root``."""
    swap = {str(base["work"]): str(root / "work"), str(base["out"]): str(root / "packs")}
    return [swap.get(a, a) for a in base["argv"]]


def digests(work: Path, pack: Path) -> dict[str, str]:
    """SHA-1 of every output of every step (as its done.json lists them) and of the pack's files but training.json
    (paths and times)."""
    out = {}
    for marker in sorted(work.glob("*/done.json")):
        for key, rel in json.loads(marker.read_text())["outputs"].items():
            path = work / rel
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                if f.name.startswith("."):  # prepare's record of its sources (names, sizes, times)
                    continue
                out[f"{marker.parent.name}/{key}/{f.name}"] = hashlib.sha1(f.read_bytes()).hexdigest()
    for f in sorted(pack.iterdir()):
        if f.name != "training.json":
            out[f"pack/{f.name}"] = hashlib.sha1(f.read_bytes()).hexdigest()
    return out


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@pytest.fixture(scope="module")
def baseline(assets, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """One uninterrupted run in this process: {style, work, out, argv, stdout, digests}."""
    from test_train_recipe import tiny_feature_net_files

    with tiny_feature_net_files():
        run = train_once(assets, tmp_path_factory.mktemp("baseline"))
    return {**run, "digests": digests(run["work"], run["out"] / NAME)}


@pytest.fixture(scope="module")
def fresh_process(baseline, tmp_path_factory):
    """The same command in a fresh process: its digests and how often it called backward."""
    root = tmp_path_factory.mktemp("fresh")
    proc = run_process(argv_for(baseline, root), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    backward = int(proc.stdout.split("CALLS ")[1].split()[0])
    return {"digests": digests(root / "work", root / "packs" / NAME), "backward": backward}


def test_a_fresh_process_gives_the_same_step_outputs_and_pack(baseline, fresh_process):
    assert len(baseline["digests"]) >= 15  # every step's outputs (4 prepared images) and the pack's files
    assert differences(baseline["digests"], fresh_process["digests"]) == []


def own_work_dir(baseline: dict, root: Path) -> Path:
    """A copy of the baseline's work dir whose pack goes to ``root/packs``."""
    import shutil

    work = root / "work"
    shutil.copytree(baseline["work"], work)
    recipe = json.loads((work / "recipe.json").read_text())
    (work / "recipe.json").write_text(json.dumps({**recipe, "out": str(root / "packs")}))
    return work


def step_digests(digests: dict[str, str], steps) -> dict[str, str]:
    return {k: v for k, v in digests.items() if k.split("/")[0] in steps}


def test_the_pretrain_verb_in_a_fresh_process(baseline, tmp_path):
    """The issue's first case: `dualstylegan pretrain WORK_DIR` started over in a new process (its network
    initialisation drew from the process's unseeded generator) gives the same generator-pretrain.pt."""
    work = own_work_dir(baseline, tmp_path)
    proc = run_process(["pretrain", str(work), "--restart"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretrain: starting over" in proc.stdout
    got = step_digests(digests(work, baseline["out"] / NAME), ("pretrain",))
    assert got and differences(step_digests(baseline["digests"], ("pretrain",)), got) == []


@pytest.mark.slow
def test_every_step_verb_in_its_own_fresh_process(baseline, tmp_path):
    """Each step started over by its verb, each in a new process, in order: the same outputs and pack."""
    from dualstylegan.train.steps import step_names

    work = own_work_dir(baseline, tmp_path)
    for step in step_names():
        proc = run_process([step, str(work), "--restart"], tmp_path)
        assert proc.returncode == 0, f"{step}: {proc.stderr[-3000:]}"
    assert differences(baseline["digests"], digests(work, tmp_path / "packs" / NAME)) == []


def test_killed_during_destylization_then_resumed(baseline, tmp_path):
    """The issue's case: SIGKILL in destylization's second image, then the same train command."""
    killed = run_process(argv_for(baseline, tmp_path), tmp_path, kill_at_destylize_image=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    records = list((tmp_path / "work" / "destylize" / "codes").glob("*.pt"))
    assert len(records) == 1 and not (tmp_path / "work" / "destylize" / "done.json").exists()
    rc, stdout, stderr = run_cli(argv_for(baseline, tmp_path))  # resumed in this process
    assert rc == 0, stderr
    assert "step 3 of 8: destylize" in stdout and "finetune-stylegan: done, skipped" in stdout
    assert differences(baseline["digests"], digests(tmp_path / "work", tmp_path / "packs" / NAME)) == []


def test_killed_at_a_random_point_then_resumed(baseline, fresh_process, tmp_path):
    seed = int(os.environ.get("DUALSTYLEGAN_KILL_SEED") or random.SystemRandom().randrange(1 << 30))
    at = random.Random(seed).randint(1, fresh_process["backward"])
    why = f"killed at backward call {at} of {fresh_process['backward']} (DUALSTYLEGAN_KILL_SEED={seed})"
    killed = run_process(argv_for(baseline, tmp_path), tmp_path, kill_at_backward=at)
    assert killed.returncode == -signal.SIGKILL, f"{why}: {killed.stderr[-3000:]}"
    rc, _, stderr = run_cli(argv_for(baseline, tmp_path))
    assert rc == 0, f"{why}: {stderr}"
    assert differences(baseline["digests"], digests(tmp_path / "work", tmp_path / "packs" / NAME)) == [], why
