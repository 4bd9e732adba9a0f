"""File-level I/O: official layouts round-trip, hostile files run nothing, damaged files give one clear sentence."""
from __future__ import annotations

import errno
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import format as npformat

from dualstylegan import checkpoints as ck
from dualstylegan.checkpoints import (CheckpointError, check_state_dict, load_code_bank, load_torch_file,
                                      save_code_bank, save_torch_file, strip_prefix, take)


# ------------------------------------------------------------------------------------------- fixtures
def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"style.1.weight": torch.randn(8, 8, generator=g), "style.1.bias": torch.randn(8, generator=g),
            "conv1.conv.weight": torch.randn(1, 4, 4, 3, 3, generator=g),
            "noises.noise_0": torch.randn(1, 1, 4, 4, generator=g)}


def _sampler_net() -> dict[str, torch.Tensor]:
    return {"lin1.weight": torch.randn(4, 4), "bn1.weight": torch.ones(4), "bn1.bias": torch.zeros(4),
            "bn1.running_mean": torch.randn(4), "bn1.running_var": torch.rand(4),
            "bn1.num_batches_tracked": torch.tensor(1234, dtype=torch.int64), "lin_out.weight": torch.randn(16, 4)}


LAYOUTS = {
    "stylegan2-ffhq-config-f.pt": lambda: {"g": _state(1), "d": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)},
                                           "g_ema": _state(2), "latent_avg": torch.randn(512)},
    "generator.pt": lambda: {"g_ema": {**_state(3), "res.0.conv.0.weight": torch.randn(4, 4, 3, 3)}},
    "encoder.pt": lambda: {"state_dict": {**{f"encoder.{k}": v for k, v in _sampler_net().items()},
                                          **{f"decoder.{k}": v for k, v in _state(4).items()}},
                           "opts": {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "lr": 1e-4, "exp_dir": "x",
                                    "start_from_latent_avg": True, "learn_in_w": False, "lpips_lambda": [0.8, 0.2],
                                    "resume": None},
                           "latent_avg": torch.randn(18, 512)},
    "sampler.pt": lambda: {"color": _sampler_net(), "structure": _sampler_net()},
    "model_ir_se50.pth": _sampler_net,
}


def _assert_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_equal(a[k], b[k])
    else:
        assert a == b


def _bank(names=("z.png", "a.jpg", "m.jpg", "b.jpg")) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal((1, 18, 512)).astype(np.float32) for n in names}


def _npy(path: Path, payload: bytes, header: dict | None = None) -> Path:
    """A .npy file: a real header (object dtype, 0-d by default) followed by ``payload``."""
    with open(path, "wb") as f:
        npformat.write_array_header_1_0(f, header or {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    return path


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy globals under their numpy 1.x names (``numpy.core.multiarray._reconstruct``), as np.save did
    with numpy 1.x."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core", 1)
            self.write(pickle.GLOBAL + f"{module}\n{name or obj.__name__}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


class _RunsCode:
    """An object whose unpickling calls ``func(arg)``: the classic pickle attack."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _attacks(marker: Path) -> dict[str, _RunsCode]:
    return {"os.system": _RunsCode(os.system, f"touch {marker}"),
            "builtins.exec": _RunsCode(exec, f"open({str(marker)!r}, 'w').close()")}


# ------------------------------------------------------------------------------------------- torch files
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_official_layouts_round_trip(tmp_path, name, zipfile):
    obj = LAYOUTS[name]()
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=zipfile)
    _assert_equal(obj, load_torch_file(path))
    _assert_equal(obj, load_torch_file(str(path)))


def test_save_torch_file_round_trip_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "generator.pt"
    save_torch_file(path, {"g_ema": _state(0)})
    save_torch_file(path, {"g_ema": _state(5)})  # overwrite
    _assert_equal({"g_ema": _state(5)}, torch.load(path, weights_only=True))
    assert sorted(p.name for p in path.parent.iterdir()) == ["generator.pt"]


def test_take_and_strip_prefix(tmp_path):
    obj = LAYOUTS["encoder.pt"]()
    state = take(obj, "state_dict", tmp_path / "encoder.pt", "a pSp encoder checkpoint")
    enc, dec = strip_prefix(state, "encoder."), strip_prefix(state, "decoder.")
    assert list(enc) == list(_sampler_net()) and list(dec) == list(_state())
    with pytest.raises(CheckpointError, match=r"sampler\.pt is not a DualStyleGAN generator\.pt: it has no 'g_ema' "
                                              r"entry \(its top-level keys are \['color', 'structure'\]\)"):
        take(LAYOUTS["sampler.pt"](), "g_ema", tmp_path / "sampler.pt", "a DualStyleGAN generator.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        take([1, 2], "g_ema", "x.pt", "a DualStyleGAN generator.pt")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.exec"])
def test_malicious_torch_file_runs_nothing(tmp_path, attack, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "generator.pt"
    torch.save({"g_ema": _state(), "extra": _attacks(marker)[attack]}, path,
               _use_new_zipfile_serialization=not legacy)
    try:
        with pytest.raises(CheckpointError) as info:
            load_torch_file(path)
    finally:
        assert not marker.exists(), "the file's code ran"
    msg = str(info.value)
    assert str(path) in msg and "run code" in msg
    assert ("global posix.system" if attack == "os.system" else "global exec") in msg  # torch's spelling


def test_damaged_torch_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"g_ema": _state()}, good)
    legacy = tmp_path / "legacy.pt"
    torch.save({"g_ema": _state()}, legacy, _use_new_zipfile_serialization=False)
    cases = {"half.pt": good.read_bytes()[: good.stat().st_size // 2],
             "half_legacy.pt": legacy.read_bytes()[: legacy.stat().st_size // 2],
             "empty.pt": b"",
             "page.pt": b"<!DOCTYPE html>\n<html><body>Google Drive - Virus scan warning</body></html>\n",
             "lfs.pt": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
             "noise.pt": bytes(range(256)) * 4}
    expect = {"half.pt": "truncated", "half_legacy.pt": "truncated", "empty.pt": "empty",
              "page.pt": "text file", "lfs.pt": "text file", "noise.pt": "truncated or not a PyTorch checkpoint"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_torch_file(tmp_path / name)
        assert name in str(info.value) and expect[name] in str(info.value), str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_torch_file(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_torch_file(tmp_path)
    save_code_bank(tmp_path / "codes.npy", _bank())
    with pytest.raises(CheckpointError, match=r"codes\.npy is a \.npy file, not a PyTorch checkpoint"):
        load_torch_file(tmp_path / "codes.npy")


def test_save_torch_file_full_disk_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "generator.pt"
    save_torch_file(path, {"g_ema": _state(0)})
    before = path.read_bytes()

    def half_then_full(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(CheckpointError, match="disk is full") as info:
        save_torch_file(path, {"g_ema": _state(1)})
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["generator.pt"]

    def not_picklable(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise pickle.PicklingError("cannot pickle a lambda")

    monkeypatch.setattr(torch, "save", not_picklable)
    with pytest.raises(pickle.PicklingError):  # a programming error stays what it is, but leaves nothing behind
        save_torch_file(path, {"g_ema": lambda: 0})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["generator.pt"]


def test_save_torch_file_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="Could not write"):
        save_torch_file(blocker / "generator.pt", {})


# ------------------------------------------------------------------------------------------- state dicts
def test_check_state_dict():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1)}
    check_state_dict(expected, {k: v.clone() for k, v in expected.items()}, "x.pt['g_ema']")
    with pytest.raises(CheckpointError, match=r"^x\.pt\['g_ema'\] does not match the network: missing key 'b' "
                                              r"\(shape \(3, 4\)\); the file"):
        check_state_dict(expected, {"a": torch.zeros(2), "c": torch.zeros(1)}, "x.pt['g_ema']")
    with pytest.raises(CheckpointError, match=r"'a' has shape \(3,\), expected \(2,\) \(and 2 more differences\)"):
        check_state_dict(expected, {"a": torch.zeros(3), "c": torch.zeros(1), "z": torch.zeros(1)}, "x")
    with pytest.raises(CheckpointError, match=r"unexpected key 'z'; the file"):
        check_state_dict(expected, {**expected, "z": torch.zeros(1)}, "x")
    with pytest.raises(CheckpointError, match=r"'c' is a float, not a tensor"):
        check_state_dict(expected, {**expected, "c": 1.0}, "x")


# ------------------------------------------------------------------------------------------- code banks
def test_code_bank_round_trip_keeps_order(tmp_path):
    bank = _bank()
    path = tmp_path / "exstyle_code.npy"
    save_code_bank(path, bank)
    got = load_code_bank(path)
    assert list(got) == list(bank)
    for k in bank:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], bank[k])
    assert [p.name for p in tmp_path.iterdir()] == ["exstyle_code.npy"]
    # the file is exactly what the authors' np.load(..., allow_pickle=True).item() expects
    authors = np.load(path, allow_pickle=True).item()
    assert list(authors) == list(bank) and all(np.array_equal(authors[k], bank[k]) for k in bank)


def test_code_bank_written_by_np_save(tmp_path):
    bank = {**_bank(), "x.jpg": np.ones((18, 512), np.float64)}
    path = tmp_path / "refined_exstyle_code.npy"
    np.save(path, bank)  # how the official files were written
    got = load_code_bank(path)
    assert list(got) == list(bank) and got["x.jpg"].dtype == np.float32 and got["x.jpg"].shape == (18, 512)
    assert np.array_equal(got["a.jpg"], bank["a.jpg"])


def test_code_bank_written_by_numpy_1(tmp_path):
    bank = _bank()
    buf = io.BytesIO()
    _Numpy1Pickler(buf, protocol=3).dump(np.asanyarray(bank))
    payload = buf.getvalue()
    assert b"numpy.core.multiarray\n_reconstruct\n" in payload and b"numpy._core" not in payload
    got = load_code_bank(_npy(tmp_path / "instyle_code.npy", payload))
    assert list(got) == list(bank) and all(np.array_equal(got[k], bank[k]) for k in bank)


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "inside-dict"])
def test_malicious_code_bank_runs_nothing(tmp_path, attack, nested):
    marker = tmp_path / "pwned"
    evil = _attacks(marker)[attack]
    obj = np.asanyarray({"a.jpg": np.zeros((1, 18, 512), np.float32), "b.jpg": evil}) if nested else evil
    path = _npy(tmp_path / "exstyle_code.npy", pickle.dumps(obj, protocol=3))
    try:
        with pytest.raises(CheckpointError) as info:
            load_code_bank(path)
    finally:
        assert not marker.exists(), "the file's code ran"
    msg = str(info.value)
    assert str(path) in msg and "run code" in msg
    assert ("posix.system" if attack == "os.system" else "builtins.exec") in msg


def test_malicious_npy_header_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    header = f"{{'descr': __import__('os').system('touch {marker}'), 'fortran_order': False, 'shape': ()}}"
    header = header.ljust(118) + "\n"
    path = tmp_path / "exstyle_code.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    with pytest.raises(CheckpointError, match=r"exstyle_code\.npy is truncated or not a \.npy code bank"):
        load_code_bank(path)
    assert not marker.exists()


def test_damaged_and_wrong_code_banks(tmp_path):
    good = tmp_path / "good.npy"
    save_code_bank(good, _bank())
    data = good.read_bytes()

    def fails(name: str, data: bytes, match: str) -> None:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=match) as info:
            load_code_bank(tmp_path / name)
        assert name in str(info.value)

    fails("half.npy", data[: len(data) // 2], "truncated or damaged")
    fails("head.npy", data[:40], "truncated")
    fails("empty.npy", b"", r"empty \(0 bytes\)")
    fails("page.npy", b"<html>404</html>", "text file")
    np.save(tmp_path / "plain.npy", np.zeros((3, 18, 512), np.float32))
    with pytest.raises(CheckpointError, match=r"plain\.npy holds a float32 array of shape \(3, 18, 512\)"):
        load_code_bank(tmp_path / "plain.npy")
    for name, obj, match in [("list.npy", [1, 2], "holds a list"),
                             ("keys.npy", {1: np.zeros((1, 18, 512), np.float32)}, "not a file name"),
                             ("ints.npy", {"a": np.zeros((1, 18, 512), np.int64)}, "dtype int64"),
                             ("shape.npy", {"a": np.zeros((2, 18, 512), np.float32)}, r"shape \(2, 18, 512\)"),
                             ("none.npy", {}, "holds no codes")]:
        arr = np.empty((), dtype=object)
        arr[()] = obj
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(CheckpointError, match=match):
            load_code_bank(tmp_path / name)
    torch.save({"g_ema": _state()}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match=r"generator\.pt is a zip archive .*, not a \.npy code bank"):
        load_code_bank(tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match=r"missing\.npy does not exist"):
        load_code_bank(tmp_path / "missing.npy")


def test_save_code_bank_validates_and_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "exstyle_code.npy"
    save_code_bank(path, {"a.jpg": torch.ones(1, 18, 512, dtype=torch.float64)})  # tensors are converted
    assert load_code_bank(path)["a.jpg"].dtype == np.float32
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="shape"):
        save_code_bank(path, {"a.jpg": np.zeros((18, 7))})

    def full(f, arr, allow_pickle=True):
        f.write(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.np, "save", full)
    with pytest.raises(CheckpointError, match="disk is full"):
        save_code_bank(path, _bank())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["exstyle_code.npy"]


# ------------------------------------------------------------------------------------------- issue 10 messages
_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


class _FullDisk(io.RawIOBase):
    """A file object that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return self.f.write(b)


def test_disk_full_during_torch_save_says_the_disk_is_full(tmp_path):
    """Issue 10 item 7: torch's "[enforce fail at inline_container.cc:672] unexpected pos" → the full-disk sentence."""
    path = tmp_path / "ckpt.pt"
    ck.save_torch_file(path, {"old": torch.ones(3)})

    def raising(f):
        raise RuntimeError(_SHORT_WRITE)

    for write in (raising, lambda f: torch.save({"w": torch.zeros(10000)}, _FullDisk(f, 5000))):
        with pytest.raises(CheckpointError, match=r"Could not write .*ckpt\.pt because the disk is full; free some "
                                                  r"space") as e:
            ck.write_file(path, write)
        assert "inline_container" not in str(e.value)
        assert torch.equal(load_torch_file(path)["old"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_other_write_failures_keep_their_reason(tmp_path):
    class _Broken(_FullDisk):
        def write(self, b):
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(CheckpointError, match=r"Could not write .*x\.pt \(.*Input/output error\)"):
        ck.write_file(tmp_path / "x.pt", lambda f: torch.save({"w": torch.zeros(10)}, _Broken(f, 0)))
    with pytest.raises(RuntimeError, match="unrelated"):  # a bug in the writer is not a disk problem
        ck.write_file(tmp_path / "y.pt", lambda f: (_ for _ in ()).throw(RuntimeError("unrelated")))


def test_symlink_loop_checkpoint_says_loop(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(CheckpointError, match=r"a\.pt is a symbolic link loop"):
        load_torch_file(a)
    with pytest.raises(CheckpointError, match=r"b\.pt is a symbolic link loop"):
        load_code_bank(b)


def test_stale_temp_files_are_cleaned_by_the_next_write(tmp_path):
    """Issue 10 item 11: a .tmp left by a SIGKILLed writer goes with the next successful write to that path; a
    recent temp file or one whose writer is alive (a concurrent write) stays."""
    import subprocess
    import sys
    import time

    from dualstylegan import atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    path = tmp_path / "ckpt.pt"
    old = time.time() - 2 * atomic.STALE_AFTER_S
    stale = [tmp_path / f".ckpt.pt.0123abcd-{dead_pid}.tmp", tmp_path / ".ckpt.pt.89abcdef.tmp"]
    kept = [tmp_path / f".ckpt.pt.00000000-{os.getpid()}.tmp",  # a live writer, however old
            tmp_path / f".ckpt.pt.11111111-{dead_pid}.tmp",      # recent: maybe still being written
            tmp_path / ".other.pt.22222222.tmp"]                 # another file's
    for p in stale + kept:
        p.write_bytes(b"partial")
    for p in stale + kept[:1] + kept[2:]:
        os.utime(p, (old, old))
    ck.save_torch_file(path, {"w": torch.zeros(2)})
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert torch.equal(load_torch_file(path)["w"], torch.zeros(2))


def test_models_home_on_a_file_says_so(tmp_path, monkeypatch):
    """Issue 10 item 11: DUALSTYLEGAN_HOME pointing at a file → one sentence."""
    from dualstylegan.packs import StylePackError, models_dir, models_home

    f = tmp_path / "home.txt"
    f.write_text("not a folder")
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(f))
    with pytest.raises(StylePackError, match=r"DUALSTYLEGAN_HOME is set to the file .*home\.txt, not a folder"):
        models_home()
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(f / "below"))
    with pytest.raises(StylePackError, match=r"lies under the file .*home\.txt"):
        models_dir()
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(tmp_path / "new" / "home"))
    assert models_home() == tmp_path / "new" / "home"
