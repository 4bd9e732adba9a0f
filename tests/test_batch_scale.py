"""Issue 14: folder runs at scale — the resumable manifest, sharding under torchrun, worker processes and batches."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dualstylegan.batch import stylize_files, stylize_images
from dualstylegan.manifest import manifest_parts, read_records
from dualstylegan.sharding import Shard, shard_from_env

STYLE = "tiny"


def smooth(path: Path, size=(64, 64), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.BICUBIC).save(path)
    return path


def folder_of(tmp_path: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        if i in bad:
            (folder / f"p{i:03d}.jpg").write_text("not a photo")
        else:
            smooth(folder / f"p{i:03d}.png", size=(64 + 8 * (i % 3), 64), seed=i)
    return folder


def images_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cli(*argv, env=None, **kw) -> subprocess.Popen:
    e = {**os.environ, "DUALSTYLEGAN_HOME": str(Path(argv[-1]).parent / "home"), **(env or {})}
    return subprocess.Popen([sys.executable, *map(str, argv)], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def transfer_args(pack, photos, out, *more):
    return ["-m", "dualstylegan.cli", "transfer", photos, "--style", pack, "--device", "cpu", "--no-align",
            "--offline", "--quiet", *more, "-o", out]


# ----------------------------------------------------------------------------------------- sharding
def test_shards_cover_the_list_once():
    items = list(range(11))
    for world in (1, 2, 3, 5):
        parts = [Shard(r, world).take(items) for r in range(world)]
        assert sorted(sum(parts, [])) == items and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}) == Shard(2, 4, 0)
    assert shard_from_env({}) == Shard()


def test_a_shard_writes_its_share_with_the_names_of_the_whole(tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 5)
    whole = tmp_path / "whole"
    list(stylize_files(tiny_pipeline, [photos], whole, align=False))
    split = tmp_path / "split"
    for rank in range(2):
        results = stylize_files(tiny_pipeline, [photos], split, align=False, shard=Shard(rank, 2), resume=True)
        assert len(results) == (3, 2)[rank] and all(r.ok for r in results)
    assert images_in(split) == images_in(whole)
    assert [p.name for p in manifest_parts(split)] == ["manifest.rank-0.jsonl", "manifest.rank-1.jsonl"]


# ----------------------------------------------------------------------------------------- resume
def test_rerun_skips_what_is_done_and_retries_what_failed(tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 4, bad=(2,))
    out = tmp_path / "out"
    first = list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True))
    assert [r.ok for r in first] == [True, True, False, True]
    records = read_records(manifest_parts(out))
    assert [r["status"] for r in records if r["status"] != "started"] == ["ok", "ok", "failed", "ok"]
    assert "not an image" in records[-3]["error"] or any("not an image" in (r.get("error") or "") for r in records)
    before = images_in(out)

    (photos / "p002.jpg").unlink()
    smooth(photos / "p002.jpg", seed=2)  # the failed photo repaired
    damaged = out / f"p001_{STYLE}_000.png"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # an output damaged since: its checksum no longer matches
    again = list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True))
    assert [r.skipped for r in again] == [True, False, False, True] and all(r.ok for r in again)
    assert again[0].portraits == first[0].portraits
    after = images_in(out)
    assert after[damaged.name] == before[damaged.name] and set(after) == set(before) | {f"p002_{STYLE}_000.png"}

    third = list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True))
    assert all(r.skipped for r in third)
    other = list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True, seed=5))  # other settings
    assert not any(r.skipped or r.ok for r in other) and "already exists" in other[0].error


def test_files_in_flight_at_a_kill_are_redone(tiny_pipeline, tmp_path):
    """A photo recorded 'started' whose portrait exists (written, not yet recorded) is redone, not refused."""
    photos = folder_of(tmp_path, 2)
    out = tmp_path / "out"
    list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True))
    m = manifest_parts(out)[0]
    lines = m.read_text().splitlines()
    m.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:17])  # the last 'ok' line torn by the kill
    results = list(stylize_files(tiny_pipeline, [photos], out, align=False, resume=True))
    assert [r.skipped for r in results] == [True, False] and results[1].ok


def test_killed_mid_run_then_rerun_does_every_file_once(tiny_pack, tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 40)
    clean = tmp_path / "clean"
    assert all(r.ok for r in stylize_files(tiny_pipeline, [photos], clean, align=False))
    out = tmp_path / "out"
    proc = cli(*transfer_args(tiny_pack, photos, out, "--resume"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if sum('"ok"' in line for p in manifest_parts(out) for line in p.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = read_records(manifest_parts(out))
    done_before = {r["input"] for r in records if r["status"] == "ok"}
    assert 3 <= len(done_before) < 40, "the kill came after the run had finished"
    rerun = cli(*transfer_args(tiny_pack, photos, out, "--resume"))
    stdout, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and f"{len(done_before)} photo(s) done by an earlier run" in stdout
    oks = [r["input"] for r in read_records(manifest_parts(out)) if r["status"] == "ok"]
    assert len(oks) == len(set(oks)) == 40  # every photo done once
    assert images_in(out) == images_in(clean)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------- torchrun
def test_two_ranks_under_torchrun_write_what_one_process_writes(tiny_pack, tmp_path):
    photos = folder_of(tmp_path, 9, bad=(4,))
    one = tmp_path / "one"
    p = cli(*transfer_args(tiny_pack, photos, one))
    p.communicate(timeout=300)
    assert p.returncode == 1
    two = tmp_path / "two"
    args = transfer_args(tiny_pack, photos, two, "--resume")
    job = cli("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args,
              env={"OMP_NUM_THREADS": "1"})
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode != 0  # one photo failed: the job says so
    assert images_in(two) == images_in(one) and len(images_in(one)) == 8
    bad = [line for line in stderr.splitlines() if "skipped" in line and "p004.jpg" in line]
    assert len(bad) == 1 and bad[0].startswith("[rank 0] ")  # p004 is the 5th file: rank 4 % 2 = 0
    summaries = [line for line in stdout.splitlines() if "file(s) written" in line]
    assert summaries == [f"8 file(s) written to {two} (8 portraits); 2 processes; 1 of 9 photo(s) failed"]
    assert [m.name for m in manifest_parts(two)] == ["manifest.rank-0.jsonl", "manifest.rank-1.jsonl"]
    ranks = {r["input"]: r["rank"] for r in read_records(manifest_parts(two)) if r["status"] != "started"}
    assert len(ranks) == 9 and sorted(ranks.values()) == [0] * 5 + [1] * 4


# ----------------------------------------------------------------------------------------- pipelined and batched
def test_workers_write_the_one_by_one_files_bit_for_bit(tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 6, bad=(3,))
    one = tmp_path / "one"
    plain = list(stylize_files(tiny_pipeline, [photos], one, align=False, paste_back=True))
    piped = tmp_path / "piped"
    results = list(stylize_files(tiny_pipeline, [photos], piped, align=False, paste_back=True, workers=2))
    assert [r.input for r in results] == [r.input for r in plain]
    assert [r.ok for r in results] == [True, True, True, False, True, True]
    assert results[3].error == plain[3].error and type(results[3].exception) is type(plain[3].exception)
    assert images_in(piped) == images_in(one)


def test_batches_match_one_by_one_within_a_rounding_step(tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 5, bad=(1,))
    one = tmp_path / "one"
    list(stylize_files(tiny_pipeline, [photos], one, align=False, structure=0.6, overview=True))
    batched = tmp_path / "batched"
    results = list(stylize_files(tiny_pipeline, [photos], batched, align=False, structure=0.6, overview=True,
                                 batch_size=3))
    assert [r.ok for r in results] == [True, False, True, True, True]
    assert sorted(images_in(batched)) == sorted(images_in(one))
    for name in images_in(one):
        diff = np.abs(pixels(one / name).astype(int) - pixels(batched / name).astype(int))
        assert diff.max() <= 1, name


def test_memory_is_bounded_by_the_queues(tiny_pipeline, tmp_path, monkeypatch):
    """At most the prefetch window plus one batch of photos is prepared ahead of what was written."""
    import dualstylegan.batch as batch

    photos = folder_of(tmp_path, 24)
    prepared, written = [], []
    real_prepare, real_write = batch._prepare, batch._write
    monkeypatch.setattr(batch, "_prepare", lambda *a: (prepared.append(a[0]), real_prepare(*a))[1])
    monkeypatch.setattr(batch, "_write", lambda run, job: (written.append(job.path), real_write(run, job))[1])
    ahead = []
    for _ in stylize_files(tiny_pipeline, [photos], tmp_path / "out", align=False, batch_size=4):
        ahead.append(len(prepared) - len(written))
    assert len(written) == 24 and max(ahead) <= 4 + batch.PREFETCH_PER_WORKER + 4


def test_stylize_images_is_the_run_without_files(tiny_pipeline, tmp_path):
    photos = folder_of(tmp_path, 3)
    images = [Image.open(p) for p in sorted(photos.iterdir())]
    out = tmp_path / "out"
    list(stylize_files(tiny_pipeline, [photos], out, align=False))
    got = list(stylize_images(tiny_pipeline, iter(images), align=False))
    assert len(got) == 3 and all(len(faces) == 1 for faces in got)
    for i, faces in enumerate(got):
        np.testing.assert_array_equal(np.asarray(faces[0].pil.convert("RGB")), pixels(out / f"p{i:03d}_{STYLE}_000.png"))
