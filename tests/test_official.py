"""The official file layouts load into our networks unchanged (strict), and we write them back identically."""
from __future__ import annotations

import pickle
import sys

import pytest
import torch

from dualstylegan import official
from dualstylegan.checkpoints import CheckpointError
from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
from dualstylegan.nets.sampler import ExtrinsicSampler, SamplerConfig
from dualstylegan.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from conftest import NARROW_CHANNELS
from refvectors import layout_names, load_layout

NARROW_ENCODER = dict(output_size=64, widths=(16, 16, 16, 32), units=(1, 1, 1, 1), head_channels=32)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_dualstylegan_round_trip_infers_config(tmp_path):
    model = DualStyleGAN(DualStyleGANConfig(size=64, channels=NARROW_CHANNELS))
    official.save_dualstylegan(tmp_path / "generator.pt", model)
    loaded = official.load_dualstylegan(tmp_path / "generator.pt")
    assert loaded.config.size == 64 and loaded.res_index == 6 and loaded.config.channel_table[64] == 16
    same_state(model, loaded)
    raw = torch.load(tmp_path / "generator.pt", weights_only=True)
    assert list(raw) == ["g_ema"] and list(raw["g_ema"]) == list(model.state_dict())


def test_stylegan2_and_discriminator_round_trip(tmp_path):
    g = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS))
    d = Discriminator(DiscriminatorConfig(size=64, channels=NARROW_CHANNELS))
    official.save_stylegan2(tmp_path / "sg.pt", g, d, latent_avg=torch.zeros(512))
    same_state(g, official.load_stylegan2(tmp_path / "sg.pt"))
    same_state(d, official.load_discriminator(tmp_path / "sg.pt"))


@pytest.mark.parametrize("name,z_plus", [("encoder.pt", True), ("encoder_wplus.pt", False)])
def test_encoder_round_trip(tmp_path, name, z_plus):
    enc = PSPEncoder(EncoderConfig(**NARROW_ENCODER, start_from_latent_avg=True), latent_avg=torch.randn(10, 512))
    dec = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS))
    official.save_encoder(tmp_path / name, enc, dec, opts={"unrelated_training_option": 3})
    loaded, decoder = official.load_encoder(tmp_path / name)
    assert loaded.config.z_plus is z_plus and loaded.config.start_from_latent_avg
    same_state(enc, loaded)
    same_state(dec, decoder)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    torch.testing.assert_close(loaded(x), enc.eval()(x))


def test_sampler_round_trip(tmp_path):
    s = ExtrinsicSampler(SamplerConfig(rows=7), SamplerConfig(rows=3))
    official.save_sampler(tmp_path / "sampler.pt", s)
    loaded = official.load_sampler(tmp_path / "sampler.pt")
    assert loaded.color.config.rows == 3
    same_state(s, loaded)


def test_wrong_kind_of_file_is_named(tmp_path):
    g = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS))
    official.save_stylegan2(tmp_path / "stylegan.pt", g)
    with pytest.raises(CheckpointError, match="plain StyleGAN2 generator, not a DualStyleGAN"):
        official.load_dualstylegan(tmp_path / "stylegan.pt")
    with pytest.raises(CheckpointError, match="not a pSp encoder"):
        official.load_encoder(tmp_path / "stylegan.pt")
    with pytest.raises(CheckpointError, match="sampler"):
        official.load_sampler(tmp_path / "stylegan.pt")
    with pytest.raises(CheckpointError, match="IR-SE50"):
        official.load_identity_net(tmp_path / "stylegan.pt")


def test_mismatching_tensor_is_named(tmp_path):
    model = DualStyleGAN(DualStyleGANConfig(size=64, channels=NARROW_CHANNELS))
    state = model.state_dict()
    state["res.3.norm.style.weight"] = torch.zeros(5, 512)
    torch.save({"g_ema": state}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match=r"res\.3\.norm\.style\.weight"):
        official.load_dualstylegan(tmp_path / "generator.pt")
    del state["res.3.norm.style.weight"]
    torch.save({"g_ema": state}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'res\.3\.norm\.style\.weight'"):
        official.load_dualstylegan(tmp_path / "generator.pt")


def test_malformed_files_give_one_sentence_naming_the_file_and_key(tmp_path):
    """Config inference on a damaged or foreign file: a CheckpointError naming the file (and the missing key)."""
    g = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS)).state_dict()
    d = Discriminator(DiscriminatorConfig(size=64, channels=NARROW_CHANNELS)).state_dict()
    enc = PSPEncoder(EncoderConfig(**NARROW_ENCODER)).encoder.state_dict()
    enc = {f"encoder.{k}": v for k, v in enc.items()}
    narrow_opts = {k: list(v) if isinstance(v, tuple) else v for k, v in NARROW_ENCODER.items()}
    cases = [  # (file name, contents, loader, what the message must say)
        ("g1.pt", {"g_ema": {k: v for k, v in g.items() if not k.startswith("convs.2.")}}, official.load_stylegan2,
         r"g1\.pt is not a StyleGAN2 generator: it has no 'convs\.2\.conv\.weight' tensor"),
        ("g2.pt", {"g_ema": {**g, "input.input": [1, 2]}}, official.load_stylegan2, r"g2\.pt is not a StyleGAN2"),
        ("d1.pt", {"d": {k: v for k, v in d.items() if k != "convs.2.conv2.1.weight"}}, official.load_discriminator,
         r"d1\.pt is not a StyleGAN2 discriminator: it has no 'convs\.2\.conv2\.1\.weight' tensor"),
        ("e1.pt", {"state_dict": enc, "opts": dict(narrow_opts, encoder_type="NoSuchEncoder")},
         official.load_encoder, r"e1\.pt is not a pSp encoder checkpoint .*NoSuchEncoder"),
        ("e2.pt", {"state_dict": enc, "opts": narrow_opts, "latent_avg": torch.zeros(3, 512)}, official.load_encoder,
         r"e2\.pt is not a pSp encoder checkpoint .*latent_avg"),
        ("e3.pt", {"state_dict": enc, "opts": dict(narrow_opts, start_from_latent_avg=True)}, official.load_encoder,
         r"e3\.pt starts from latent_avg .* does not store one"),
        ("s1.pt", {"structure": {"lin1.weight": torch.zeros(4, 4)}, "color": {}}, official.load_sampler,
         r"s1\.pt is not a DualStyleGAN sampler\.pt \(in its 'structure' part\): it has no 'lin_out\.weight'"),
    ]
    for name, obj, loader, match in cases:
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=match) as info:
            loader(tmp_path / name)
        assert "\n" not in str(info.value)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_generator_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "evil": _Payload(marker)}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match="asks to run code"):
        official.load_dualstylegan(tmp_path / "generator.pt")
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: unpickling it does create the marker
    assert marker.exists()


# ------------------------------------------------------------------------ full-size official layouts
def _layout_state(name: str) -> dict[str, torch.Tensor]:
    _, rows = load_layout(name)
    return {k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in rows}


FULL_FILES = {  # layout → (how the official file wraps it, loader, what the loader must infer)
    "full_dualstylegan1024": (lambda sd: {"g_ema": sd}, official.load_dualstylegan, "generator.pt"),
    "full_stylegan2_1024": (lambda sd: {"g_ema": sd}, official.load_stylegan2, "stylegan2-ffhq-config-f.pt"),
    "full_discriminator1024": (lambda sd: {"d": sd}, official.load_discriminator, "stylegan2-ffhq-config-f.pt"),
    "full_irse50_backbone": (lambda sd: sd, official.load_identity_net, "model_ir_se50.pth"),
    "full_psp_encoder": (lambda sd: {"state_dict": {f"encoder.{k}": v for k, v in sd.items()},
                                     "opts": {"encoder_type": "GradualStyleEncoder", "input_nc": 3,
                                              "start_from_latent_avg": True}, "latent_avg": torch.zeros(18, 512)},
                         lambda p: official.load_encoder(p)[0], "encoder.pt"),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", [n for n in layout_names("full_") if n in FULL_FILES])
def test_full_size_official_layout_loads_strictly(tmp_path, layout):
    wrap, loader, filename = FULL_FILES[layout]
    state = _layout_state(layout)
    torch.save(wrap(state), tmp_path / filename)
    model = loader(tmp_path / filename)
    ours = model.encoder.state_dict() if layout == "full_psp_encoder" else model.state_dict()
    assert list(ours) == list(state)
    if hasattr(model, "config") and hasattr(model.config, "size"):
        assert model.config.size == 1024 and model.config.channels is None  # the official table was recognised


def test_every_full_layout_has_a_loader():
    assert {n for n in layout_names("full_")} <= set(FULL_FILES), "a new official layout needs a loader test"


def test_training_checkpoint_g_copied_from_g_ema_shares_nothing(tmp_path):
    """Checked tensors are adopted by the network built on the meta device, except where two networks would then
    share them: g starts as a copy of g_ema when the file has no 'g'."""
    g = Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS))
    d = Discriminator(DiscriminatorConfig(size=64, channels=NARROW_CHANNELS))
    path = tmp_path / "finetune.pt"
    official.save_stylegan2(path, g, d)
    out = official.load_training_checkpoint(path, what="a StyleGAN2 checkpoint", no_discriminator="-")
    ema, copy = out["g_ema"].state_dict(), out["g"].state_dict()
    assert all(torch.equal(ema[k], copy[k]) for k in ema)
    assert not {t.data_ptr() for t in ema.values()} & {t.data_ptr() for t in copy.values()}
    bad = {"g_ema": g.state_dict(), "d": d.state_dict(),
           "g_optim": {"state": {0: {"exp_avg": torch.zeros(()).expand(4096, 4096)}}, "param_groups": []}}
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match=r"finetune\.pt: its tensor 'g_optim\.state\.0\.exp_avg'.*stride-0"):
        official.load_training_checkpoint(path, what="a StyleGAN2 checkpoint", no_discriminator="-")


def test_loading_builds_skeletons_without_torch_dynamo(tmp_path):
    """Building the networks on the meta device must not run torch's Python meta kernels: their first call imports
    torch._dynamo (over a second, more than reading the weights). Checked in a fresh process, every loader."""
    import subprocess
    import sys
    import textwrap

    official.save_dualstylegan(tmp_path / "generator.pt", DualStyleGAN(DualStyleGANConfig(size=64,
                                                                                          channels=NARROW_CHANNELS)))
    enc = PSPEncoder(EncoderConfig(**NARROW_ENCODER, start_from_latent_avg=True), latent_avg=torch.randn(10, 512))
    official.save_encoder(tmp_path / "encoder.pt", enc, Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS)))
    official.save_sampler(tmp_path / "sampler.pt", ExtrinsicSampler(SamplerConfig(rows=7), SamplerConfig(rows=3)))
    code = textwrap.dedent(f"""
        import sys
        from dualstylegan import official
        official.load_dualstylegan({str(tmp_path / 'generator.pt')!r})
        official.load_encoder({str(tmp_path / 'encoder.pt')!r}, with_decoder=True)
        official.load_sampler({str(tmp_path / 'sampler.pt')!r})
        print('torch._dynamo' in sys.modules or 'sympy' in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_skeleton_arithmetic_keeps_shapes():
    with official._Skeleton():
        w = torch.randn(4, 3).div_(2)
        e = torch.eye(3) * 2 + torch.randn(3, 3) * 0.01
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        full = torch.full((2, 5), 0.5)
    assert w.is_meta and w.shape == (4, 3)
    assert e.is_meta and e.shape == (3, 3)
    assert not k.is_meta and k.tolist() == [1.0, 3.0, 3.0, 1.0]
    assert full.is_meta and full.shape == (2, 5)


def test_skeleton_skips_initialisers_that_pass_their_tensor_by_keyword(monkeypatch):
    """torch.nn.init's functions hand the mode their tensor as ``tensor=``: they return it untouched, without
    computing fans or running torch's Python meta kernels for ``uniform_``."""
    def unreachable(*a, **k):
        raise AssertionError("an initialiser ran inside the skeleton")

    monkeypatch.setattr(torch.nn.init, "_calculate_correct_fan", unreachable)  # inside kaiming_uniform_
    monkeypatch.setattr(torch.nn.init, "_no_grad_uniform_", unreachable)  # inside uniform_
    with official._Skeleton():
        conv = torch.nn.Conv2d(4, 6, 3)
        linear = torch.nn.Linear(5, 2)
    assert conv.weight.is_meta and conv.weight.shape == (6, 4, 3, 3) and conv.bias.shape == (6,)
    assert linear.weight.is_meta and linear.weight.shape == (2, 5)


def _mapped_rss_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    target, total, inside = str(path.resolve()), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5] == target
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise")
def test_encoder_pages_resident_one_layer_at_a_time(tmp_path, monkeypatch):
    """With page_out the encoder file's pages go back to the page cache as the checks read them, and in a
    forward pass each layer's pages are resident only while that layer runs (the full-size encoder is 1 GB)."""
    enc = PSPEncoder(EncoderConfig(output_size=64, widths=(32, 32, 64, 128), units=(1, 2, 2, 1), head_channels=128),
                     latent_avg=None)
    path = tmp_path / "encoder.pt"
    official.save_encoder(path, enc, Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS)))
    checking = []
    release_tensor = official.FilePages.release_tensor

    def recorded(self, t):
        checking.append(_mapped_rss_kib(path))
        release_tensor(self, t)
    monkeypatch.setattr(official.FilePages, "release_tensor", recorded)
    loaded, _ = official.load_encoder(path, with_decoder=False, page_out=True)
    weights_kib = sum(p.numel() * p.element_size() for p in loaded.parameters()) // 1024
    assert weights_kib > 4096
    assert checking and max(checking) < weights_kib // 2  # released tensor by tensor while checked
    assert _mapped_rss_kib(path) < weights_kib // 8

    during = []
    for module in loaded.modules():
        if any(True for _ in module.parameters(recurse=False)):
            module.register_forward_pre_hook(lambda *_: during.append(_mapped_rss_kib(path)))  # after populate
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        out = loaded(x)
    torch.testing.assert_close(out, enc.eval()(x))  # values read back from the page cache
    assert max(during) < weights_kib // 2  # never the whole network at once
    assert _mapped_rss_kib(path) < weights_kib // 8
