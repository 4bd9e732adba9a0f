"""Every StyleGAN2 / DualStyleGAN / discriminator / ModRes case of the reference folder, reproduced.

Cases are discovered from ``$DUALSTYLEGAN_REFERENCE/vectors``; the weights are rebuilt by the fill rule; a case this
dispatcher cannot interpret fails loudly instead of being skipped.
"""
from __future__ import annotations

import re

import pytest
import torch

from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig, ModRes
from dualstylegan.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from dualstylegan.ops import use_reference_ops
from refvectors import (assert_layout, assert_matches, case_meta, case_names, fill_, layout_names, load_case,
                        load_layout, require_reference)

# The encoder, identity and sampler cases are handled in their own test modules.
OTHER_MODELS = ("full_psp_encoder", "full_irse50_backbone", "sampler_")
_HEADER = re.compile(r"(\w+)\((.*)\)( with the channel table (\{.*\}))?")


def build(model_name: str) -> torch.nn.Module:
    """Build the module described by the header line of layouts/NAME.txt (constructor + channel table)."""
    header, _ = load_layout(model_name)
    m = _HEADER.search(header)
    if not m:
        pytest.fail(f"cannot read the constructor of layouts/{model_name}.txt: {header!r}")
    kind, args, table = m.group(1), m.group(2), m.group(4)
    channels = {int(k): int(v) for k, v in re.findall(r"(\d+):\s*(\d+)", table)} if table else None
    kw = dict(re.findall(r"(\w+)=(\d+)", args))
    pos = [int(a) for a in re.findall(r"(?:^|,\s*)(\d+)(?=\s*(?:,|$))", args)]

    def get(name, index, default):
        return int(kw[name]) if name in kw else (pos[index] if len(pos) > index else default)

    if kind == "Generator":
        return Generator(GeneratorConfig(size=get("size", 0, 1024), style_dim=get("style_dim", 1, 512),
                                         n_mlp=get("n_mlp", 2, 8), channel_multiplier=get("channel_multiplier", 3, 2),
                                         channels=channels))
    if kind == "DualStyleGAN":
        return DualStyleGAN(DualStyleGANConfig(size=get("size", 0, 1024), style_dim=get("style_dim", 1, 512),
                                               n_mlp=get("n_mlp", 2, 8),
                                               channel_multiplier=get("channel_multiplier", 3, 2),
                                               channels=channels, res_index=get("res_index", 4, 6)))
    if kind == "Discriminator":
        return Discriminator(DiscriminatorConfig(size=get("size", 0, 1024),
                                                 channel_multiplier=get("channel_multiplier", 1, 2),
                                                 channels=channels))
    if kind == "AdaResBlock":
        return ModRes(get("fin", 0, 512), get("style_dim", 1, 512))
    pytest.fail(f"layouts/{model_name}.txt describes {kind}, which this test does not know")


GENERATOR_CASES = [c for c in case_names() if not case_meta(c).get("model", "").startswith(OTHER_MODELS)]


def resolve(expr, tensors: dict[str, torch.Tensor]):
    """A tensor named in a case's call: ``name`` or ``name[:, 0]``."""
    if isinstance(expr, str):
        m = re.fullmatch(r"(\w+)(\[:, (\d+)\])?", expr)
        if not m or m.group(1) not in tensors:
            pytest.fail(f"cannot interpret {expr!r} in the case's call")
        t = tensors[m.group(1)]
        return t[:, int(m.group(3))] if m.group(2) else t
    return expr


CALL_KEYS = {"styles", "exstyles", "z_plus_latent", "truncation", "truncation_latent", "use_res", "fuse_index",
             "interp_weights", "inject_index", "input_is_latent", "return_feat"}


GENERATOR_LAYOUTS = [n for n in layout_names() if not n.startswith(OTHER_MODELS)]


def test_cases_found():
    """The reference folder has generator cases and layouts (else the parametrized tests here would not run)."""
    require_reference()
    assert GENERATOR_CASES and GENERATOR_LAYOUTS


@pytest.mark.parametrize("layout", GENERATOR_LAYOUTS)
def test_state_dict_matches_official_layout(layout):
    """Our modules have exactly the keys, shapes and dtypes of the official files, in file order."""
    assert_layout(build(layout), layout)


def _ops_params(cases):
    """Each case through the fast ops; the narrow ones also through the plain reference ops."""
    out = []
    for c in cases:
        out.append(pytest.param(c, False, id=f"{c}-fast"))
        marks = [pytest.mark.slow] if c.startswith("full") else []
        out.append(pytest.param(c, True, id=f"{c}-refops", marks=marks))
    return out


@pytest.mark.parametrize("case,reference_ops", _ops_params(GENERATOR_CASES))
def test_reference_case(case, reference_ops):
    with use_reference_ops(reference_ops):
        _run_case(case)


def _run_case(case, device: str = "cpu"):
    tensors, meta = load_case(case)
    tensors = {k: v.to(device) for k, v in tensors.items()}
    model_name = meta["model"]
    model = build(model_name)
    assert_layout(model, model_name)
    fill_(model, model_name).eval().to(device)
    call = meta["call"]
    with torch.no_grad():
        if isinstance(model, ModRes):
            if not call.startswith("forward(x, style, w)"):
                pytest.fail(f"unknown ModRes call {call!r}")
            outs = [k for k in tensors if k.startswith("out_w")]
            assert outs, "no outputs in the case"
            for key in outs:
                digits = key[len("out_w"):]  # "1" → 1, "05" → 0.5, "0" → 0
                w = float("0." + digits[1:]) if digits.startswith("0") and len(digits) > 1 else float(digits)
                assert_matches(model(tensors["x"], tensors["style"], w), tensors[key], f"{case}:{key}")
            return
        if isinstance(model, Discriminator):
            if not call.startswith("forward(images)"):
                pytest.fail(f"unknown discriminator call {call!r}")
            assert_matches(model(tensors["images"]), tensors["logits"], case)
            return
        if not isinstance(call, dict) or set(call) - CALL_KEYS:
            pytest.fail(f"{case}: unknown call arguments {sorted(set(call) - CALL_KEYS) if isinstance(call, dict) else call}")
        kwargs = {k: v for k, v in call.items() if k not in ("styles", "exstyles")}
        styles = call["styles"] if call["styles"] != "see styles" else meta["styles"]
        styles = [resolve(s, tensors) for s in styles]
        if "noise" in meta and "randomize_noise=False" not in meta["noise"]:
            pytest.fail(f"{case}: unknown noise setting {meta['noise']!r}")
        kwargs["randomize_noise"] = False
        if isinstance(model, DualStyleGAN):
            if "exstyle_z" in tensors and "exstyle_w" in tensors:
                # exstyle_w is the generator's mapping applied row by row to the stored Z+ code
                assert_matches(model.map_extrinsic(tensors["exstyle_z"]), tensors["exstyle_w"], f"{case}:mapping")
            out = model(styles, resolve(call["exstyles"], tensors), return_latents=False, **kwargs)
        else:
            if meta.get("returns", "").startswith("image and the W+ latent"):
                kwargs["return_latents"] = True
            out = model(styles, **kwargs)
        if call.get("return_feat"):
            assert_matches(out[0], tensors["feat"], f"{case}:feat")
            assert_matches(out[1], tensors["skip"], f"{case}:skip")
            return
        image = out[0]
        if "image" in tensors:
            assert_matches(image, tensors["image"], f"{case}:image")
        else:
            for key in [k for k in tensors if k.startswith("image_")]:
                assert_matches(_fingerprint(case, key, image, tensors[key]), tensors[key], f"{case}:{key}",
                               reduction=key == "image_sum")
        if "latent" in tensors:
            assert_matches(out[1], tensors["latent"], f"{case}:latent")


def _fingerprint(case: str, key: str, image: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A full-size case stores fingerprints of its image (README.md): ``image_poolN`` = adaptive average pool to
    N², ``image_cropN`` = the central N² crop, ``image_sum``. Sizes are read from the stored tensors."""
    if key == "image_sum":
        return image.sum().reshape(1)
    if key.startswith("image_pool"):
        return torch.nn.functional.adaptive_avg_pool2d(image, ref.shape[-2:])
    if key.startswith("image_crop"):
        (h, w), (ch, cw) = image.shape[-2:], ref.shape[-2:]
        return image[..., (h - ch) // 2:(h + ch) // 2, (w - cw) // 2:(w + cw) // 2]
    pytest.fail(f"{case}: unknown output {key}")
