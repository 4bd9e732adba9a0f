"""Hostile and broken files cost nothing (issue 10): tiny files that declare huge things are refused in one sentence
naming the file, before anything is built, under an address-space cap of ~300 MB above the loaded baseline.

Each hostile file is built here, then loaded in a subprocess that first imports everything, measures its address
space and caps it (``resource.setrlimit(RLIMIT_AS, baseline + 300 MB)``): a loader that allocates what the file
declares dies of MemoryError instead of refusing. Time and peak memory are printed (``-s``), never asserted.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import NARROW_CHANNELS, build_tiny_pack

from dualstylegan.checkpoints import CheckpointError, load_code_bank, save_code_bank

CAP_MB = 300

_HARNESS = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from dualstylegan import checkpoints, official
from dualstylegan.errors import DualStyleGANError
torch.zeros(8).add_(1)

def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

cap = vm_bytes() + int(sys.argv[3]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
module = checkpoints if hasattr(checkpoints, sys.argv[1]) else official
out = {}
start = time.perf_counter()
try:
    getattr(module, sys.argv[1])(sys.argv[2])
    out["ok"] = True
except DualStyleGANError as e:
    out["error"] = str(e)
except MemoryError:
    out["error"] = "MemoryError"
out["seconds"] = round(time.perf_counter() - start, 3)
out["peak_mb_above_baseline"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)
print(json.dumps(out))
"""


def load_capped(loader: str, path: Path) -> dict:
    """Run ``<checkpoints|official>.<loader>(path)`` in a subprocess capped at baseline + CAP_MB of address space."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _HARNESS, loader, str(path), str(CAP_MB)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{path.name} ({path.stat().st_size} bytes) via {loader}: {result}")
    return result


def assert_refused(result: dict, path: Path, *phrases: str) -> None:
    assert "error" in result, f"{path.name} was accepted"
    msg = result["error"]
    assert msg != "MemoryError", f"{path.name} exhausted memory instead of being refused"
    assert path.name in msg and len(msg.splitlines()) == 1, msg
    for phrase in phrases:
        assert phrase in msg, msg


# ------------------------------------------------------------------------------------------- code banks
def _npy_of(obj, protocol: int | None = None) -> bytes:
    """np.save of ``obj`` as the reference saves a code bank; with ``protocol``, the pickle written by hand at that
    protocol (3 has no frames, so its bytes can be patched)."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    f = io.BytesIO()
    if protocol is None:
        np.save(f, arr, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        pickle.dump(arr, f, protocol=protocol)
    return f.getvalue()


def test_code_bank_of_shared_nested_lists_is_refused_at_once(tmp_path):
    """Issue 10 item 1: 2^31 floats declared by ~30 lists that all reference one list (pickle memo reuse)."""
    nested = [0.0, 0.0]
    for _ in range(30):
        nested = [nested, nested]
    path = tmp_path / "exstyle_code.npy"
    path.write_bytes(_npy_of({"a.jpg": nested}))
    assert path.stat().st_size < 1000
    assert_refused(load_capped("load_code_bank", path), path, "shared references")


def test_code_bank_declaring_a_huge_array_is_refused(tmp_path):
    """A code whose __setstate__ shape is 2^40 floats on a few bytes, and one whose _reconstruct asks numpy for a
    2^31-byte array (harmless here: nothing from numpy runs while unpickling)."""
    good = _npy_of({"a.jpg": np.zeros((1, 2, 3), np.float32)}, protocol=3)
    header = good.index(b"\x80\x03")
    assert len(load_code_bank_bytes(tmp_path, good)) == 1
    # the code's setstate shape is the TUPLE3 of BININT1s 1, 2, 3: make its last dim 2^40 (a LONG1)
    pkl = good[header:]
    i = pkl.index(b"K\x01K\x02K\x03\x87")
    huge = pkl[:i] + b"K\x01K\x02\x8a\x06" + (2 ** 40).to_bytes(6, "little") + b"\x87" + pkl[i + 7:]
    path = tmp_path / "huge_shape_code.npy"
    path.write_bytes(good[:header] + huge)
    pickletools.dis(huge, out=io.StringIO())  # a well-formed pickle
    assert_refused(load_capped("load_code_bank", path), path, "shape")
    # _reconstruct(ndarray, (2**31,), b'b') for the code: numpy would allocate 2 GiB before __setstate__
    j = pkl.index(b"K\x00\x85", pkl.index(b"a.jpg"))
    alloc = pkl[:j] + b"J" + struct.pack("<i", 2 ** 31 - 1) + b"\x85" + pkl[j + 3:]
    path2 = tmp_path / "huge_reconstruct_code.npy"
    path2.write_bytes(good[:header] + alloc)
    result = load_capped("load_code_bank", path2)  # loads as far as its (1, 2, 3) code, which is too narrow
    assert "not a code bank" in result["error"] and str(path2) in result["error"], result


def load_code_bank_bytes(tmp_path: Path, data: bytes) -> dict:
    path = tmp_path / "bytes.npy"
    path.write_bytes(data)
    return load_code_bank(path, style_dim=3)


def test_code_bank_opcode_budget(tmp_path, monkeypatch):
    from dualstylegan import limits, safe_unpickle

    path = tmp_path / "many.npy"
    path.write_bytes(_npy_of({f"{i}.jpg": np.zeros((1, 2, 4), np.float32) for i in range(50)}))
    assert len(load_code_bank(path, style_dim=4)) == 50
    monkeypatch.setattr(safe_unpickle, "MAX_PICKLE_NODES", 100)
    with pytest.raises(CheckpointError, match=r"many\.npy.*more than 100 operations"):
        load_code_bank(path, style_dim=4)
    assert limits.MAX_PICKLE_NODES >= 100_000


@pytest.mark.parametrize("value, phrase", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                           (1e300, "too large for float32")])
def test_code_bank_with_non_finite_codes_is_refused(tmp_path, value, phrase):
    """Issue 10 item 5: NaN/Inf codes, and float64 codes that overflow float32, are refused naming the entry."""
    code = np.zeros((1, 18, 512), np.float64)
    code[0, 3, 7] = value
    path = tmp_path / "exstyle_code.npy"
    path.write_bytes(_npy_of({"good.jpg": np.zeros((1, 18, 512), np.float32), "bad.jpg": code}))
    with pytest.raises(CheckpointError, match=rf"exstyle_code\.npy: the code of 'bad\.jpg'.*{phrase}"):
        load_code_bank(path)
    with pytest.raises(CheckpointError, match=phrase):
        save_code_bank(tmp_path / "out.npy", {"bad.jpg": code})
    assert not (tmp_path / "out.npy").exists()


def test_code_bank_class_refuses_non_finite_codes():
    from dualstylegan.codes import CodeBank

    with pytest.raises(ValueError, match="'x.jpg'.*NaN or infinite"):
        CodeBank({"x.jpg": np.full((1, 18, 512), np.nan, np.float32)})
    with pytest.raises(ValueError, match="'y.jpg'.*too large for float32"):
        CodeBank({"y.jpg": np.full((1, 18, 512), 1e300)})


# ------------------------------------------------------------------------------------------- torch files
def _stride0(shapes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor as a 1-element stride-0 view of its declared shape (a few bytes in the file)."""
    return {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}


@pytest.mark.parametrize("size", [16384, 65536])
def test_generator_of_stride0_views_declaring_a_huge_network_is_refused(tmp_path, size):
    """Issue 10 item 3: a generator.pt whose tensors are 1-element views of a 16384² (65536²) DualStyleGAN."""
    from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig

    channels = {2 ** i: 16 for i in range(2, size.bit_length())}
    with torch.device("meta"):
        skeleton = DualStyleGAN(DualStyleGANConfig(size=size, channels=channels))
    path = tmp_path / "generator.pt"
    torch.save({"g_ema": _stride0(skeleton.state_dict())}, path)
    assert path.stat().st_size < 200_000
    assert_refused(load_capped("load_dualstylegan", path), path, "stride-0")


def test_sampler_of_stride0_views_is_refused(tmp_path):
    """Issue 10 item 3: a sampler.pt whose lin_out declares 160 GB."""
    rows = 80_000
    part = {"lin1.weight": (128, 128), "bn1.weight": (128,), "bn1.bias": (128,), "bn1.running_mean": (128,),
            "bn1.running_var": (128,), "lin2.weight": (128, 128), "bn2.weight": (128,), "bn2.bias": (128,),
            "bn2.running_mean": (128,), "bn2.running_var": (128,), "lin_out.weight": (rows * 512, 128)}
    state = {k: torch.rand(s) for k, s in part.items() if k != "lin_out.weight"}
    state["lin_out.weight"] = torch.zeros(()).expand(part["lin_out.weight"])
    path = tmp_path / "sampler.pt"
    torch.save({"structure": state, "color": state}, path)
    assert_refused(load_capped("load_sampler", path), path, "stride-0", "lin_out.weight")


def test_sampler_outside_the_official_shape_is_refused(tmp_path):
    """Real tensors, but 100 style rows: refused from the config, before anything is built."""
    from dualstylegan import official
    from dualstylegan.nets.sampler import StyleSampler, SamplerConfig

    part = StyleSampler(SamplerConfig(rows=100, hidden_dim=8, noise_dim=8)).state_dict()
    path = tmp_path / "sampler.pt"
    torch.save({"structure": part, "color": part}, path)
    with pytest.raises(CheckpointError, match=r"sampler\.pt: its 'structure' part declares 100 style rows"):
        official.load_sampler(path)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return build_tiny_pack(tmp_path_factory.mktemp("hostile"), with_sampler=False, with_wplus=False)


def test_encoder_with_huge_opts_widths_is_refused(pack, tmp_path):
    """Issue 10 item 2: real (narrow) tensors, but opts widths of 8192."""
    obj = torch.load(pack.parent / "encoder.pt", weights_only=True)
    obj["opts"] = {**obj["opts"], "widths": [8192] * 4, "head_channels": 8192}
    path = tmp_path / "encoder.pt"
    torch.save(obj, path)
    assert_refused(load_capped("load_encoder", path), path, "widths")


def test_encoder_whose_official_opts_do_not_match_its_tensors_builds_nothing(pack, tmp_path):
    """Official opts (a full-size 1 GB encoder) over narrow tensors: the mismatch is found on the meta device."""
    obj = torch.load(pack.parent / "encoder.pt", weights_only=True)
    obj["opts"] = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "output_size": 1024,
                   "start_from_latent_avg": True, "learn_in_w": False}
    path = tmp_path / "encoder.pt"
    torch.save(obj, path)
    assert_refused(load_capped("load_encoder", path), path, "does not match")


def _zip_entry(name: str, data: bytes, method: int, size: int, crc: int) -> tuple[bytes, bytes]:
    """(local header + data, central directory record) of one zip entry written by hand."""
    name_b = name.encode()
    fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0, crc, len(data), size, len(name_b), 0)
    local = b"PK\x03\x04" + fields + name_b + data
    return local, fields, name_b


def _write_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> None:
    out, central = bytearray(), bytearray()
    for name, data, method, size, crc in entries:
        offset = len(out)
        local, fields, name_b = _zip_entry(name, data, method, size, crc)
        out += local
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, offset)
                    + name_b)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    path.write_bytes(bytes(out + central) + eocd)


def _deflated_zeros(n_chunks: int, chunk: int = 64 << 20) -> tuple[bytes, int]:
    """A raw deflate stream of n_chunks·chunk zero bytes, and its CRC-32: one fully flushed (self-contained) chunk
    repeated, then an empty final block."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(chunk)) + comp.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(1 << 20)
    for _ in range(n_chunks * chunk >> 20):
        crc = zlib.crc32(zeros, crc)
    return block * n_chunks + b"\x03\x00", crc


def test_zip_with_a_compressed_gigabyte_record_is_refused(tmp_path):
    """Issue 10 item 4: a ~1 MB .pt whose tensor record is 1 GiB of deflate-compressed zeros."""
    numel = 1 << 28  # float32: 1 GiB
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(4)}, plain)
    with zipfile.ZipFile(plain) as zf:
        records = {i.filename: zf.read(i) for i in zf.infolist()}
    pkl_name = next(n for n in records if n.endswith("data.pkl"))
    pkl = records[pkl_name]
    four = b"K\x04"
    assert pkl.count(four) == 2  # the storage's numel and the tensor's size
    records[pkl_name] = pkl.replace(four, b"J" + struct.pack("<i", numel))
    data_name = next(n for n in records if n.endswith("data/0"))
    deflated, crc = _deflated_zeros(16)
    entries = []
    for name, data in records.items():
        if name == data_name:
            entries.append((name, deflated, zipfile.ZIP_DEFLATED, numel * 4, crc))
        else:
            entries.append((name, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data)))
    path = tmp_path / "bomb.pt"
    _write_zip(path, entries)
    assert path.stat().st_size < 2 << 20
    with zipfile.ZipFile(path) as zf:  # a valid zip: the record really inflates to 1 GiB
        assert zf.getinfo(data_name).file_size == numel * 4
    assert_refused(load_capped("load_torch_file", path), path, "compressed", "data/0")


def test_zip_records_larger_than_the_file_are_refused(tmp_path):
    from dualstylegan.limits import Refused, check_zip

    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(4)}, plain)
    check_zip(plain)  # what torch.save writes passes
    with zipfile.ZipFile(plain) as zf:
        entries = [(i.filename, zf.read(i), zipfile.ZIP_STORED, i.file_size, i.CRC) for i in zf.infolist()]
    name, data, method, _, crc = entries[-1]
    entries[-1] = (name, data, method, 10 ** 9, crc)
    lying = tmp_path / "lying.pt"
    _write_zip(lying, entries)
    with pytest.raises(Refused, match="declares 1000000000 bytes"):
        check_zip(lying)


# ------------------------------------------------------------------------------------------- weights
def _generator_file(tmp_path: Path, edit) -> Path:
    from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig

    state = DualStyleGAN(DualStyleGANConfig(size=32, channels=NARROW_CHANNELS)).state_dict()
    edit(state)
    path = tmp_path / "generator.pt"
    torch.save({"g_ema": state}, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_generator_with_non_finite_weights_is_refused(tmp_path, value):
    """Issue 10 item 5: one NaN/Inf weight → refused at load, naming the tensor (not a grey portrait)."""
    from dualstylegan import official

    path = _generator_file(tmp_path, lambda s: s["res.2.conv.0.weight"].view(-1)[5].fill_(value))
    with pytest.raises(CheckpointError, match=r"generator\.pt: its tensor 'res\.2\.conv\.0\.weight' holds NaN or "
                                              "infinite values"):
        official.load_dualstylegan(path)


def test_overlapping_views_are_refused(tmp_path):
    from dualstylegan import official

    def alias(state):
        state["generator.convs.1.conv.weight"] = state["generator.convs.0.conv.weight"]

    with pytest.raises(CheckpointError, match="overlapping views"):
        official.load_dualstylegan(_generator_file(tmp_path, alias))


@pytest.mark.parametrize("kind, phrase", [("meta", "meta tensor"), ("sparse", "sparse_coo, not a dense tensor")])
def test_meta_and_sparse_tensors_get_one_sentence(tmp_path, kind, phrase):
    """Issue 10 item 11: not torch's "Error(s) in loading state_dict for DualStyleGAN"."""
    from dualstylegan import official

    def edit(state):
        w = state["style.1.weight"]
        state["style.1.weight"] = torch.empty(w.shape, device="meta") if kind == "meta" else w.to_sparse()

    path = _generator_file(tmp_path, edit)
    with pytest.raises(CheckpointError) as e:
        official.load_dualstylegan(path)
    msg = str(e.value)
    assert f"{path}: its tensor 'style.1.weight' is a {phrase}" in msg or phrase in msg, msg
    assert "Error(s) in loading" not in msg and len(msg.splitlines()) == 1


def test_generator_outside_the_official_family_is_refused(tmp_path):
    from dualstylegan import official
    from dualstylegan.nets.stylegan2 import Generator, GeneratorConfig

    g = Generator(GeneratorConfig(size=8, channels={4: 16, 8: 16}, style_dim=600, n_mlp=2))
    path = tmp_path / "wide.pt"
    official.save_stylegan2(path, g)
    with pytest.raises(CheckpointError, match=r"wide\.pt: it declares a style width of 600"):
        official.load_stylegan2(path)


def test_official_narrow_layouts_still_load(pack):
    """The limits keep every narrow test model loadable (the reference layouts are checked elsewhere)."""
    from dualstylegan import official

    assert official.load_dualstylegan(pack / "generator.pt").config.size == 64
    enc, dec = official.load_encoder(pack.parent / "encoder.pt")
    assert enc.config.widths == (16, 16, 16, 32) and dec is not None


def test_pickle_walk_budget():
    from dualstylegan import limits

    nested = []
    for _ in range(40):
        nested = [nested, nested]
    assert list(limits.iter_tensors({"x": nested})) == []  # shared containers are walked once
    with pytest.raises(limits.Refused, match="more than"):
        list(limits.iter_tensors([0] * (limits.MAX_PICKLE_NODES + 1)))


def test_pickle_reuse_of_numpy_atoms_is_allowed(tmp_path):
    """numpy's own pickles reuse globals, dtypes and byte strings through the memo: those stay loadable."""
    codes = {f"{i}.png": np.full((1, 18, 512), i, np.float32) for i in range(3)}
    path = tmp_path / "bank.npy"
    path.write_bytes(_npy_of(codes))
    assert b"h" in path.read_bytes() and pickle.HIGHEST_PROTOCOL >= 4
    got = load_code_bank(path)
    assert list(got) == list(codes) and all(np.array_equal(got[k], v) for k, v in codes.items())
