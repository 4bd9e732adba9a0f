"""Style pack resolution: local folders, models_home(), the Hub (a fake hf_hub_download, no network), errors."""
from __future__ import annotations

from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

from dualstylegan import hub

REAL_REACHABLE = hub.hub_reachable  # the fixture below stands a fake Hub in for the network
from dualstylegan.hub import (HUB_REPO, StylePackError, StylePackFiles, download_style, list_styles, models_home,
                              official_styles, resolve_style_pack, verify_style_pack)

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty models_home() and a Hub that fails loudly unless a test installs a fake."""
    h = tmp_path / "home"
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(h))

    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected hf_hub_download{args}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.REACH_TIMEOUT: True)  # fakes stand for the Hub
    return h


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")
    return folder


class RepoMissing(huggingface_hub.utils.RepositoryNotFoundError):
    """RepositoryNotFoundError without an HTTP response (its constructor differs across huggingface_hub versions)."""

    def __init__(self, message: str):
        Exception.__init__(self, message)


class FakeHub:
    """hf_hub_download writing into a real cache layout (models--owner--repo/{refs/main, snapshots/<sha>/})."""

    def __init__(self, cache: Path, files: set[str], repo_id: str = HUB_REPO, offline: bool = False):
        self.cache, self.files, self.repo_id, self.offline = cache, set(files), repo_id, offline
        self.calls: list[dict] = []
        self.repo_dir = cache / ("models--" + repo_id.replace("/", "--"))

    def __call__(self, repo_id, filename, *, revision=None, cache_dir=None, local_files_only=False, **kw):
        self.calls.append(dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, **kw))
        if repo_id != self.repo_id:
            raise RepoMissing(f"no repo {repo_id}")
        target = self.repo_dir / "snapshots" / SHA / filename
        if target.is_file():
            return str(target)
        if self.offline or local_files_only:
            raise LocalEntryNotFoundError(f"{filename} is not cached and the Hub cannot be reached")
        if filename not in self.files:
            raise EntryNotFoundError(f"404: {filename}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
        (self.repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (self.repo_dir / "refs" / (revision or "main")).write_text(SHA)
        return str(target)

    def requested(self) -> list[str]:
        return [c["filename"] for c in self.calls]


OFFICIAL = {"models/encoder.pt", "models/cartoon/generator.pt", "models/cartoon/exstyle_code.npy",
            "models/cartoon/refined_exstyle_code.npy"}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    def install(files=OFFICIAL, **kw) -> FakeHub:
        fake = FakeHub(tmp_path / "hf", files, **kw)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
        return fake
    return install


# ----------------------------------------------------------------------------------------- local folders
def test_local_style_folder_with_encoder_in_parent(tmp_path):
    models = tmp_path / "models"
    touch(models, "encoder.pt", "encoder_wplus.pt")
    style = touch(models / "cartoon", "generator.pt", "exstyle_code.npy", "sampler.pt", "instyle_code.npy")
    files = resolve_style_pack(str(style))
    assert files == StylePackFiles(name="cartoon", generator=style / "generator.pt", codes=style / "exstyle_code.npy",
                                   sampler=style / "sampler.pt", encoder=models / "encoder.pt",
                                   encoder_wplus=models / "encoder_wplus.pt", folder=style,
                                   instyle_codes=style / "instyle_code.npy", source="local")
    assert not files.refined and files.provenance == str(style)
    assert resolve_style_pack(style / "generator.pt").folder == style   # a path to generator.pt works too


def test_local_style_folder_with_encoder_inside(tmp_path):
    style = touch(tmp_path / "mypack", "generator.pt", "exstyle_code.npy", "encoder.pt")
    files = resolve_style_pack(style)
    assert files.encoder == style / "encoder.pt"
    assert files.sampler is None and files.encoder_wplus is None and files.instyle_codes is None


def test_refined_codes_preferred(tmp_path):
    style = touch(tmp_path / "models" / "anime", "generator.pt", "exstyle_code.npy", "refined_exstyle_code.npy")
    touch(tmp_path / "models", "encoder.pt")
    files = resolve_style_pack(style)
    assert files.codes == style / "refined_exstyle_code.npy" and files.refined


def test_local_folder_errors_name_the_missing_files(tmp_path):
    style = touch(tmp_path / "models" / "cartoon", "generator.pt", "encoder.pt")
    with pytest.raises(StylePackError, match=r"refined_exstyle_code\.npy \(or exstyle_code\.npy\) in .*cartoon"):
        resolve_style_pack(style)
    with pytest.raises(StylePackError, match="There is no folder"):
        resolve_style_pack(str(tmp_path / "nowhere"))
    with pytest.raises(StylePackError, match="models folder: give one of its styles"):
        resolve_style_pack(str(tmp_path / "models"))


def test_local_pack_without_sampler_when_needed(tmp_path):
    style = touch(tmp_path / "cartoon", "generator.pt", "exstyle_code.npy", "encoder.pt")
    with pytest.raises(StylePackError, match=r"needs sampler\.pt.*put sampler\.pt in .*cartoon"):
        resolve_style_pack(style, need_sampler=True)


# ----------------------------------------------------------------------------------------- models_home
def test_models_home_from_env(home, monkeypatch):
    assert models_home() == home
    monkeypatch.delenv("DUALSTYLEGAN_HOME")
    assert models_home() == Path.home() / ".cache" / "dualstylegan"


def test_style_name_found_in_models_home(home):
    style = touch(home / "models" / "fantasy", "generator.pt", "exstyle_code.npy", "sampler.pt")
    touch(home / "models", "encoder.pt")
    files = resolve_style_pack("fantasy", need_sampler=True)
    assert files.source == "home" and files.generator == style / "generator.pt"
    assert files.encoder == home / "models" / "encoder.pt" and files.sampler == style / "sampler.pt"
    # a local pack under models_home() takes precedence over the Hub (hf_hub_download would raise here)
    touch(home / "models" / "cartoon", "generator.pt", "exstyle_code.npy")
    assert resolve_style_pack("Cartoon").source == "home"


def test_drive_only_style_message(home):
    with pytest.raises(StylePackError) as err:
        resolve_style_pack("impasto", need_sampler=True)
    msg = str(err.value)
    assert "Google Drive" in msg and hub.PROJECT_URL in msg
    assert f"generator.pt, exstyle_code.npy and sampler.pt in {home / 'models' / 'impasto'}/" in msg
    assert f"encoder.pt in {home / 'models'}/" in msg


def test_unknown_style_lists_known_styles():
    with pytest.raises(StylePackError) as err:
        resolve_style_pack("watercolor")
    msg = str(err.value)
    assert "Unknown style 'watercolor'" in msg and all(s in msg for s in official_styles())


def test_official_styles_come_from_the_style_registry(monkeypatch):
    from dualstylegan import styles

    assert official_styles() == {s.name: s.published for s in styles.list_styles() if s.published}
    assert official_styles()["cartoon"] == "hub" and official_styles()["impasto"] == "drive"
    monkeypatch.setitem(styles._REGISTRY, "mine", styles.Style("mine"))  # registered, not published
    assert "mine" not in official_styles()
    monkeypatch.setitem(styles._REGISTRY, "oils", styles.Style("oils", "drive"))
    with pytest.raises(StylePackError, match="only on the authors' Google Drive"):
        resolve_style_pack("oils")


# ----------------------------------------------------------------------------------------- the Hub
def test_hub_download_records_revision_and_commit(fake_hub, tmp_path, home):
    fake = fake_hub()
    files = resolve_style_pack("cartoon", revision="v1", cache_dir=tmp_path / "hf")
    snap = fake.repo_dir / "snapshots" / SHA
    assert files.generator == snap / "models/cartoon/generator.pt"
    assert files.codes == snap / "models/cartoon/refined_exstyle_code.npy"
    assert files.encoder == snap / "models/encoder.pt"
    assert files.folder == snap / "models/cartoon"
    assert (files.source, files.repo_id, files.revision, files.commit) == ("hub", HUB_REPO, "v1", SHA)
    assert files.provenance == f"{HUB_REPO}@{SHA}"
    assert files.sampler is None and files.encoder_wplus is None
    assert {c["revision"] for c in fake.calls} == {"v1"}
    assert {c["repo_id"] for c in fake.calls} == {HUB_REPO}
    assert all(c["cache_dir"] == tmp_path / "hf" and c["local_files_only"] is False for c in fake.calls)
    assert "models/cartoon/exstyle_code.npy" not in fake.requested()    # refined found: plain not fetched


def test_hub_falls_back_to_plain_codes(fake_hub, tmp_path):
    fake = fake_hub(OFFICIAL - {"models/cartoon/refined_exstyle_code.npy"})
    files = resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    assert files.codes.name == "exstyle_code.npy" and not files.refined
    assert fake.requested()[:3] == ["models/cartoon/generator.pt", "models/cartoon/refined_exstyle_code.npy",
                                    "models/cartoon/exstyle_code.npy"]


def test_hub_drive_files_come_from_models_home(fake_hub, tmp_path, home):
    fake_hub()
    touch(home / "models" / "cartoon", "sampler.pt")
    touch(home / "models", "encoder_wplus.pt")
    files = resolve_style_pack("cartoon", cache_dir=tmp_path / "hf", need_sampler=True, need_wplus=True)
    assert files.source == "hub"
    assert files.sampler == home / "models/cartoon/sampler.pt"
    assert files.encoder_wplus == home / "models/encoder_wplus.pt"


def test_hub_uses_local_encoder(fake_hub, tmp_path, home):
    fake = fake_hub()
    touch(home / "models", "encoder.pt")
    files = resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    assert files.encoder == home / "models" / "encoder.pt"
    assert "models/encoder.pt" not in fake.requested()


def test_need_sampler_for_hub_style(fake_hub, tmp_path, home):
    fake_hub()
    with pytest.raises(StylePackError) as err:
        resolve_style_pack("cartoon", cache_dir=tmp_path / "hf", need_sampler=True)
    msg = str(err.value)
    assert "sampler.pt" in msg and "Google Drive" in msg and hub.PROJECT_URL in msg
    assert f"put sampler.pt in {home / 'models' / 'cartoon'}/" in msg


def test_offline_error_names_files_and_folders(fake_hub, tmp_path, home):
    fake = fake_hub(offline=True)
    with pytest.raises(StylePackError) as err:
        resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    msg = str(err.value)
    assert msg.startswith("Could not download generator.pt, refined_exstyle_code.npy and encoder.pt of style "
                          "'cartoon'")
    assert "offline?" in msg
    assert (f"Put generator.pt and refined_exstyle_code.npy (or exstyle_code.npy) in {home / 'models' / 'cartoon'}/ "
            f"and encoder.pt in {home / 'models'}/") in msg
    assert "https://huggingface.co/CVPR/DualStyleGAN/tree/main/models" in msg
    # after the first connection failure, the other files are only looked up in the cache
    assert [c["local_files_only"] for c in fake.calls][1:] == [True] * (len(fake.calls) - 1)


def test_offline_uses_the_cache(fake_hub, tmp_path):
    fake = fake_hub()
    first = resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    fake.offline = True
    again = resolve_style_pack("cartoon", cache_dir=tmp_path / "hf", local_files_only=True)
    assert again == first
    assert all(c["local_files_only"] for c in fake.calls[-3:])
    # download=False: cache only, and the message says downloads are off
    with pytest.raises(StylePackError, match="downloads are off"):
        resolve_style_pack("anime", cache_dir=tmp_path / "hf", download=False)


def test_hub_repo_id(fake_hub, tmp_path):
    fake = fake_hub({"models/encoder.pt", "models/mystyle/generator.pt", "models/mystyle/exstyle_code.npy",
                     "models/mystyle/sampler.pt"}, repo_id="someone/packs")
    files = resolve_style_pack("someone/packs/mystyle", cache_dir=tmp_path / "hf", need_sampler=True)
    assert (files.name, files.repo_id, files.commit) == ("mystyle", "someone/packs", SHA)
    assert files.generator.relative_to(fake.repo_dir / "snapshots" / SHA) == Path("models/mystyle/generator.pt")
    assert files.sampler.name == "sampler.pt"
    n = len(fake.calls)
    with pytest.raises(StylePackError, match="there is no Hugging Face repo 'nobody/packs'"):
        resolve_style_pack("nobody/packs/mystyle", cache_dir=tmp_path / "hf")
    assert len(fake.calls) == n + 1    # a missing repo is asked about once


def test_official_repo_id_is_the_style_name(fake_hub, tmp_path):
    fake_hub()
    assert resolve_style_pack(f"{HUB_REPO}/cartoon", cache_dir=tmp_path / "hf").name == "cartoon"


# ----------------------------------------------------------------------------------------- listing, verifying
def test_list_styles(fake_hub, tmp_path, home):
    fake_hub()
    resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    touch(home / "models" / "mine", "generator.pt", "exstyle_code.npy")
    touch(home / "models", "encoder.pt")
    styles = {s["name"]: s for s in list_styles(cache_dir=tmp_path / "hf")}
    assert set(official_styles()) <= set(styles) and styles["mine"]["published"] == "local"
    assert styles["cartoon"]["published"] == "hub" and styles["cartoon"]["ready"]
    assert "refined_exstyle_code.npy" in styles["cartoon"]["present"]
    assert styles["fantasy"]["published"] == "drive" and not styles["fantasy"]["ready"]
    assert styles["fantasy"]["present"] == ["encoder.pt"]
    assert styles["mine"]["ready"] and styles["mine"]["folder"] == str(home / "models" / "mine")


def _real_pack(folder: Path) -> Path:
    folder.mkdir(parents=True)
    torch.save({"g_ema": {"w": torch.zeros(2)}}, folder / "generator.pt")
    torch.save({"state_dict": {"encoder.w": torch.zeros(2)}, "opts": {}}, folder / "encoder.pt")
    np.save(folder / "exstyle_code.npy", {"a.jpg": np.zeros((1, 18, 512), np.float32)}, allow_pickle=True)
    return folder


def test_verify_style_pack_corrupt_file(tmp_path):
    style = _real_pack(tmp_path / "cartoon")
    verify_style_pack(resolve_style_pack(style))
    (style / "generator.pt").write_bytes(b"\x00garbage, not a checkpoint\xff" * 10)
    with pytest.raises(StylePackError) as err:
        verify_style_pack(resolve_style_pack(style))
    msg = str(err.value)
    assert "generator.pt" in msg and f"delete {style / 'generator.pt'}" in msg
    (style / "generator.pt").unlink()
    _real_pack(tmp_path / "other")
    (style / "generator.pt").write_bytes((tmp_path / "other" / "generator.pt").read_bytes())
    (style / "exstyle_code.npy").write_bytes(b"garbage")
    with pytest.raises(StylePackError, match=r"exstyle_code\.npy of style 'cartoon' cannot be read"):
        verify_style_pack(resolve_style_pack(style))


def test_download_style_verifies(fake_hub, tmp_path, monkeypatch):
    fake_hub()
    seen = []
    monkeypatch.setattr(hub, "verify_style_pack", seen.append)
    files = download_style("cartoon", cache_dir=tmp_path / "hf", revision=SHA)
    assert seen == [files] and files.commit == SHA and files.revision == SHA


def test_verify_names_the_hub_cache_blob(tmp_path, monkeypatch):
    """A damaged Hub download: the message names the blob behind the snapshot link (deleting the link is not enough)."""
    import sys
    import types

    class CheckpointError(RuntimeError):
        pass

    def load_torch_file(path):
        if Path(path).name == "generator.pt":
            raise CheckpointError("truncated zip archive")

    fake = types.ModuleType("dualstylegan.checkpoints")
    fake.load_torch_file, fake.load_code_bank = load_torch_file, lambda path: {}
    monkeypatch.setitem(sys.modules, "dualstylegan.checkpoints", fake)
    blob = touch(tmp_path / "hf" / "blobs", "abc123") / "abc123"
    snap = tmp_path / "hf" / "snapshots" / SHA / "models" / "cartoon"
    snap.mkdir(parents=True)
    (snap / "generator.pt").symlink_to(blob)
    files = StylePackFiles(name="cartoon", generator=snap / "generator.pt", codes=blob, sampler=None, encoder=blob,
                           encoder_wplus=None, folder=snap, source="hub", repo_id=HUB_REPO, commit=SHA)
    with pytest.raises(StylePackError) as err:
        verify_style_pack(files)
    msg = str(err.value)
    assert "truncated zip archive" in msg and str(blob) in msg and "dualstylegan download cartoon" in msg


# ----------------------------------------------------------------------------------------- first run
def test_unreachable_hub_fails_in_seconds_naming_offline(fake_hub, tmp_path, monkeypatch):
    """One quick reachability check, then the cache only: no ~30 s of retries, and the message says what to do."""
    import time

    fake = fake_hub()
    checks = []

    def unreachable(timeout=hub.REACH_TIMEOUT):
        checks.append(timeout)
        return False

    monkeypatch.setattr(hub, "hub_reachable", unreachable)
    start = time.monotonic()
    with pytest.raises(StylePackError) as err:
        resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    assert time.monotonic() - start < 5 and checks == [hub.REACH_TIMEOUT]
    assert fake.calls and all(c["local_files_only"] for c in fake.calls)  # never a network download
    msg = str(err.value)
    assert "could not be reached" in msg and "--offline" in msg and "HF_HUB_OFFLINE" in msg and "\n" not in msg


def test_reachability_check_is_one_quick_connect(monkeypatch):
    import socket

    hub._reachable.clear()
    tried = []

    def refuse(address, timeout=None):
        tried.append((address, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    assert REAL_REACHABLE() is False and REAL_REACHABLE() is False  # the second answer is remembered
    assert tried == [(("hub.example", 8443), hub.REACH_TIMEOUT)]
    hub._reachable.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert REAL_REACHABLE() is False and len(tried) == 1  # offline mode: no connection at all
    hub._reachable.clear()


def test_downloads_are_announced(fake_hub, tmp_path, monkeypatch):
    fake_hub()
    lines = []
    monkeypatch.setattr(hub, "announce", lines.append)
    resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")
    assert lines and all(line.startswith("downloading models/") and HUB_REPO in line for line in lines)
    assert any("generator.pt" in line for line in lines)
    lines.clear()
    resolve_style_pack("cartoon", cache_dir=tmp_path / "hf")  # cached: nothing to announce
    assert lines == []


@pytest.mark.parametrize("arg", ["models/tiny", "models/tiny/", "x/generator.pt"])
def test_path_like_style_that_does_not_exist_says_no_such_folder(arg, tmp_path, monkeypatch):
    """A mistyped local folder is not taken for a Hub repo id (which cost 30 s and said 'could not download')."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "x").mkdir()
    with pytest.raises(StylePackError, match="no such folder"):
        resolve_style_pack(arg)
