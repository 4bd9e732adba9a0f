"""The pSp encoder and the IR-SE50 identity net against the reference cases; PSPEncoder's file-level options."""
from __future__ import annotations

import pytest
import torch

from dualstylegan.nets.encoder import (Backbone, BackboneEncoderUsingLastLayerIntoW,
                                       BackboneEncoderUsingLastLayerIntoWPlus, EncoderConfig, GradualStyleEncoder,
                                       IdentityNet, PSPEncoder)
from refvectors import assert_layout, assert_matches, case_meta, case_names, fill_, load_case, require_reference

#: The reference models this module is responsible for (the other test modules dispatch the rest).
MODELS = ("full_psp_encoder", "full_irse50_backbone")


def build(model_name: str) -> torch.nn.Module:
    if model_name == "full_psp_encoder":
        return GradualStyleEncoder(50, "ir_se", input_nc=3, n_styles=18)
    if model_name == "full_irse50_backbone":
        return Backbone(input_size=112, num_layers=50, mode="ir_se", drop_ratio=0.6)
    pytest.fail(f"test_encoder does not know how to build {model_name!r}")


CASES = [c for c in case_names() if case_meta(c).get("model") in MODELS]


@pytest.mark.parametrize("layout", MODELS)
def test_state_dict_matches_official_layout(layout):
    assert_layout(build(layout), layout)


def test_cases_found():
    """Every model this module handles has at least one case (when the reference folder is present)."""
    require_reference()
    found = {case_meta(c)["model"] for c in CASES}
    assert found == set(MODELS)


@pytest.mark.parametrize("case", CASES)
def test_reference_case(case):
    tensors, meta = load_case(case)
    model_name = meta["model"]
    model = build(model_name)
    assert_layout(model, model_name)
    fill_(model, model_name).eval()
    with torch.no_grad():
        if model_name == "full_psp_encoder":
            if not meta["call"].startswith("encoder(image256)"):
                pytest.fail(f"{case}: unknown call {meta['call']!r}")
            assert_matches(model(tensors["image256"]), tensors["codes"], case)
        elif model_name == "full_irse50_backbone":
            if "forward" not in meta["call"]:
                pytest.fail(f"{case}: unknown call {meta['call']!r}")
            assert_matches(model(tensors["face112"]), tensors["embedding"], case)
        else:
            pytest.fail(f"{case}: unknown model {model_name!r}")


# ---- small checks that need no reference -------------------------------------------------------------------

def test_from_opts_reads_official_fields_and_ignores_others():
    opts = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "start_from_latent_avg": True,
            "learn_in_w": False, "lpips_lambda": 0.8, "exp_dir": "/somewhere", "checkpoint_path": None}
    cfg = EncoderConfig.from_opts(opts)
    assert cfg.output_size == 1024 and cfg.n_styles == 18  # absent output_size → 1024
    assert cfg.start_from_latent_avg and not cfg.learn_in_w and cfg.z_plus
    assert EncoderConfig.from_opts(dict(opts, output_size=256)).n_styles == 14
    assert not EncoderConfig.from_opts(opts, z_plus=False).z_plus
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="encoder_type"):
        EncoderConfig.from_opts(dict(opts, encoder_type="NoSuchEncoder"))


def test_other_psp_encoder_types_have_psp_keys():
    w = PSPEncoder(EncoderConfig(encoder_type="BackboneEncoderUsingLastLayerIntoW"))
    assert isinstance(w.encoder, BackboneEncoderUsingLastLayerIntoW)
    keys = list(w.encoder.state_dict())
    assert keys[:7] == [k for k in keys if k.startswith("input_layer.")]
    assert keys[7:9] == ["linear.weight", "linear.bias"] and keys[9].startswith("body.0.")
    wp = BackboneEncoderUsingLastLayerIntoWPlus(n_styles=18)
    assert wp.state_dict()["linear.weight"].shape == (512 * 18, 512)
    assert wp.state_dict()["output_layer_2.3.weight"].shape == (512, 512 * 7 * 7)


class _Codes(torch.nn.Module):
    """A stand-in for the encoder: fixed codes, records the input size."""

    def __init__(self, n_styles):
        super().__init__()
        self.n_styles, self.seen = n_styles, None

    def forward(self, x):
        self.seen = tuple(x.shape[-2:])
        return torch.arange(x.shape[0] * self.n_styles * 512, dtype=torch.float32).reshape(x.shape[0], -1, 512)


def _wrapper(start_from_latent_avg, latent_avg=None):
    cfg = EncoderConfig(output_size=64, start_from_latent_avg=start_from_latent_avg)  # n_styles 10
    enc = PSPEncoder(cfg, latent_avg=latent_avg)
    enc.encoder = _Codes(cfg.n_styles)
    return enc


def test_psp_encoder_latent_avg_added_or_not():
    x = torch.zeros(2, 3, 512, 512)
    raw = _Codes(10)(torch.zeros(2, 3, 1, 1))
    plain = _wrapper(False)
    assert "latent_avg" not in plain.state_dict()
    assert torch.equal(plain(x), raw) and plain.encoder.seen == (256, 256)  # pooled to 256²
    avg = torch.randn(512)
    assert torch.equal(_wrapper(True, avg)(x), raw + avg)  # (512) broadcast to every row
    rows = torch.randn(10, 512)
    assert torch.equal(_wrapper(True, rows)(x), raw + rows)
    with pytest.raises(ValueError, match="latent_avg"):
        _wrapper(True, torch.randn(3, 512))


def test_psp_encoder_state_dict_adopts_latent_avg_shape():
    enc = PSPEncoder(EncoderConfig(output_size=64, start_from_latent_avg=True))
    assert enc.latent_avg.shape == (512,)
    sd = enc.state_dict()
    assert "latent_avg" in sd and all(k.startswith("encoder.") for k in sd if k != "latent_avg")
    rows = torch.randn(10, 512)
    enc.load_state_dict(dict(sd, latent_avg=rows))
    assert torch.equal(enc.latent_avg, rows)
    plain = PSPEncoder(EncoderConfig(output_size=64))
    plain.load_state_dict(dict(sd, latent_avg=rows))  # a file that has latent_avg although opts do not use it
    assert torch.equal(plain.latent_avg, rows)


def test_gradual_style_encoder_heads_follow_n_styles():
    enc = GradualStyleEncoder(n_styles=14)
    n_convs = [len(s.convs) // 2 for s in enc.styles]
    assert n_convs == [4] * 3 + [5] * 4 + [6] * 7
    assert [len(s.convs) // 2 for s in GradualStyleEncoder(n_styles=5).styles] == [4] * 3 + [5] * 2


def test_identity_net_is_unit_length_and_backbone_alias():
    net = IdentityNet(input_size=112).eval()
    assert isinstance(Backbone(), IdentityNet) and net.config.drop_ratio == 0.6
    with torch.no_grad():
        out = net(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("stride", [1, 2])
def test_subsample_is_the_kernel_one_max_pool_of_the_reference(stride):
    from dualstylegan.nets.encoder import Subsample

    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    ref, out = torch.nn.MaxPool2d(1, stride)(x), Subsample(stride)(x)
    assert torch.equal(out, ref)
    gy = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(out, x, gy)[0], torch.autograd.grad(ref, x, gy)[0])
