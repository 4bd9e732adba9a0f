"""The extrinsic code sampler against the reference cases, and the (B, 18, 512) code it assembles."""
from __future__ import annotations

import pytest
import torch

from dualstylegan.nets.sampler import COLOR_ROWS, STRUCTURE_ROWS, ExtrinsicSampler, SamplerConfig, StyleSampler
from refvectors import assert_layout, assert_matches, case_meta, case_names, fill_, load_case, require_reference

MODELS = {"sampler_structure": STRUCTURE_ROWS, "sampler_color": COLOR_ROWS}


def build(model_name: str) -> StyleSampler:
    if model_name not in MODELS:
        pytest.fail(f"test_sampler does not know how to build {model_name!r}")
    return StyleSampler(SamplerConfig(rows=MODELS[model_name]))


CASES = [c for c in case_names() if case_meta(c).get("model", "").startswith("sampler_")]


@pytest.mark.parametrize("layout", sorted(MODELS))
def test_state_dict_matches_official_layout(layout):
    assert_layout(build(layout), layout)


def test_cases_found():
    require_reference()
    assert {case_meta(c)["model"] for c in CASES} == set(MODELS)


@pytest.mark.parametrize("case", CASES)
def test_reference_case(case):
    tensors, meta = load_case(case)
    model = build(meta["model"])
    assert_layout(model, meta["model"])
    fill_(model, meta["model"]).eval()
    if meta["call"] != "eval-mode forward":
        pytest.fail(f"{case}: unknown call {meta['call']!r}")
    with torch.no_grad():
        assert_matches(model(tensors["noise"]), tensors["out"], case)


def test_extrinsic_sampler_structure_rows_then_color_rows():
    sampler = ExtrinsicSampler().eval()
    assert set(k.split(".")[0] for k in sampler.state_dict()) == {"structure", "color"}
    code = sampler.sample(3, generator=torch.Generator().manual_seed(0))
    assert code.shape == (3, STRUCTURE_ROWS + COLOR_ROWS, 512) == (3, sampler.n_rows, 512)
    g = torch.Generator().manual_seed(0)
    ns, nc = torch.randn(3, 128, generator=g), torch.randn(3, 128, generator=g)
    with torch.no_grad():
        s, c = sampler.sample_structure(ns), sampler.sample_color(nc)
        assert torch.equal(code[:, :STRUCTURE_ROWS], s)
        assert torch.equal(code[:, STRUCTURE_ROWS:], c)
        assert torch.equal(sampler.structure(ns).reshape(3, STRUCTURE_ROWS, 512), s)
        assert torch.equal(sampler(ns, nc), code)
