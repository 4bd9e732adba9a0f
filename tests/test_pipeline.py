"""StyleTransferPipeline on a tiny style pack written in the official layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import NARROW_CHANNELS
from dualstylegan.codes import CodeBank, StyleIdError
from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from dualstylegan.defaults import GENERATE_TRUNCATION, TRANSFER_TRUNCATION
from dualstylegan.pipeline import StyleTransferPipeline, WeightError, check_truncation, check_weights, interp_weights
from dualstylegan.styles import get_style
from refvectors import assert_matches, fill_, load_case


def test_loads_the_pack(tiny_pipeline):
    p = tiny_pipeline
    assert p.style == "tiny" and len(p.codes) == 3 and p.sampler is not None and p.encoder_wplus is not None
    assert p.encoder.config.z_plus and not p.encoder_wplus.config.z_plus


def test_transfer_is_the_reference_call(tiny_pipeline, face_tensor):
    """transfer = encode (Z+) → exemplar Z+ code mapped by the generator → DualStyleGAN at truncation 0.75 toward 0."""
    p = tiny_pipeline
    r = p.transfer(face_tensor, 1)
    with torch.no_grad():
        zplus = p.encoder(face_tensor)
        ex = p.generator.map_extrinsic(p.codes.code(1))
        expect, _ = p.generator([zplus], ex, z_plus_latent=True, truncation=0.75, truncation_latent=0,
                                interp_weights=[0.75] * 7 + [1] * 11, randomize_noise=False)
    torch.testing.assert_close(r.image, expect.clamp(-1, 1))
    assert r.image.shape == (1, 3, 64, 64) and r.weights == [0.75] * 7 + [1.0] * 11


class _StoredCode(torch.nn.Module):
    """An encoder that returns a given code: the reference vectors hold the codes, not the photos behind them."""

    def __init__(self, code: torch.Tensor):
        super().__init__()
        self.code = code

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.code


@pytest.mark.parametrize("case, style", [
    ("dsg64_transfer_default", None),  # Z+ content, the default preset, truncation 0.75 toward 0
    ("dsg64_anime_weights", "anime"),  # the anime preset
    ("dsg64_wplus_intrinsic", None),  # the W+ encoder path (explicit weights)
])
def test_transfer_reproduces_the_reference(case, style):
    """pipeline.transfer(photo, style id) makes style_transfer.py's call: the reference vectors, end to end."""
    tensors, meta = load_case(case)
    call = meta["call"]
    model = fill_(DualStyleGAN(DualStyleGANConfig(size=64, channels=NARROW_CHANNELS)), meta["model"])
    bank = CodeBank({f"{i}.jpg": code for i, code in enumerate(tensors["exstyle_z"])})
    wplus = bool(call.get("input_is_latent"))
    weights = call["interp_weights"] if case == "dsg64_wplus_intrinsic" else None
    for i in range(len(bank)):
        encoder = _StoredCode(tensors["wplus" if wplus else "zplus"][i:i + 1])
        pipe = StyleTransferPipeline(model, None if wplus else encoder, bank, encoder_wplus=encoder if wplus else None,
                                     style=style)
        r = pipe.transfer(torch.zeros(1, 3, 256, 256), i, wplus=wplus, weights=weights)
        assert r.weights == call["interp_weights"] and call["truncation"] == 0.75
        assert_matches(r.image, tensors["image"][i:i + 1].clamp(-1, 1), f"{case}[{i}]")


def test_transfer_is_deterministic_and_seeded_noise_differs(tiny_pipeline, face_tensor):
    a = tiny_pipeline.transfer(face_tensor, 0).image
    b = tiny_pipeline.transfer(face_tensor, 0).image
    assert torch.equal(a, b)
    c = tiny_pipeline.transfer(face_tensor, 0, seed=1).image
    d = tiny_pipeline.transfer(face_tensor, 0, seed=1).image
    assert torch.equal(c, d) and not torch.equal(a, c)


def test_zero_weights_give_plain_stylegan(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    r = p.transfer(face_tensor, 2, weights=[0] * 18)
    with torch.no_grad():
        plain, _ = p.generator.generator([r.intrinsic], z_plus_latent=True, truncation=0.75, truncation_latent=0,
                                         randomize_noise=False)
    torch.testing.assert_close(r.image, plain.clamp(-1, 1))


def test_exemplar_by_id_name_and_stem_agree(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    name = p.codes.names[2]
    by_id = p.transfer(face_tensor, 2).image
    assert torch.equal(by_id, p.transfer(face_tensor, name).image)
    assert torch.equal(by_id, p.transfer(face_tensor, name.rsplit(".", 1)[0]).image)
    assert not torch.equal(by_id, p.transfer(face_tensor, 1).image)


def test_any_image_as_exemplar(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    exemplar = face_tensor.flip(-1)
    r = p.transfer(face_tensor, exemplar)
    torch.testing.assert_close(r.extrinsic, p.encode(exemplar))


def test_preserve_color_z_plus_replaces_color_rows_before_mapping(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    r = p.transfer(face_tensor, 1, preserve_color=True)
    torch.testing.assert_close(r.extrinsic[:, 7:], r.intrinsic[:, 7:])
    torch.testing.assert_close(r.extrinsic[:, :7], p.codes.code(1)[:, :7])
    assert not torch.equal(r.image, p.transfer(face_tensor, 1).image)


def test_preserve_color_w_plus_replaces_mapped_rows(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    r = p.transfer(face_tensor, 1, preserve_color=True, wplus=True)
    with torch.no_grad():
        wplus = p.encoder_wplus(face_tensor)
        ex = p.generator.map_extrinsic(p.codes.code(1))
        ex[:, 7:] = wplus[:, 7:]
        expect, _ = p.generator([wplus], ex, input_is_latent=True, truncation=0.75, truncation_latent=0,
                                interp_weights=r.weights, randomize_noise=False)
    torch.testing.assert_close(r.image, expect.clamp(-1, 1))


def test_presets_and_shorthands(tiny_pipeline):
    assert interp_weights(*get_style("anime").preset) == [0, 0, 0, 0, 0.75, 0.75, 0.75] + [1.0] * 11
    assert interp_weights(*get_style("caricature").preset) == [1.0] * 18
    assert interp_weights(0.5, 0) == [0.5] * 7 + [0.0] * 11
    # the pipeline reads its style's preset from the registry; a style the registry does not know gets DEFAULT's
    assert tiny_pipeline.style == "tiny" and tiny_pipeline.weights_for() == [0.75] * 7 + [1.0] * 11
    assert tiny_pipeline.weights_for(color=0.5) == [0.75] * 7 + [0.5] * 11


def test_rows_come_from_the_network_config(tiny_pipeline):
    """The pipeline's structure / color rows are the config's (§3.2), whatever the generator's size."""
    config = tiny_pipeline.generator.config
    assert tiny_pipeline.n_structure == config.n_structure == 7 and tiny_pipeline.n_latent == 10
    assert tiny_pipeline.structure_rows == slice(0, 7) and tiny_pipeline.color_rows == slice(7, 10)
    assert tiny_pipeline.n_weights == 18  # a weight vector is always the paper's 18 long


def test_default_truncations_are_the_reference_scripts(tiny_pipeline, face_tensor):
    """transfer / blend default to style_transfer.py's ψ, generate to generate.py's, from dualstylegan.defaults."""
    p = tiny_pipeline
    assert (TRANSFER_TRUNCATION, GENERATE_TRUNCATION) == (0.75, 0.5)
    assert torch.equal(p.transfer(face_tensor, 0).image, p.transfer(face_tensor, 0, truncation=0.75).image)
    assert torch.equal(p.generate(2, seed=1), p.generate(2, seed=1, truncation=0.5))
    assert not torch.equal(p.generate(2, seed=1), p.generate(2, seed=1, truncation=0.75))


@pytest.mark.parametrize("bad", [[1] * 17, [1] * 19, [float("nan")] + [1] * 17, [2] + [1] * 17, ["a"] * 18])
def test_impossible_weights_are_refused(bad):
    with pytest.raises(WeightError):
        check_weights(bad)


def test_shorthands_take_any_number_and_refuse_the_rest():
    assert interp_weights(np.float32(0.5), torch.tensor(1.0).item()) == [0.5] * 7 + [1.0] * 11
    for structure in ("0.5", [0.5] * 6, None):
        with pytest.raises(WeightError, match="structure"):
            interp_weights(structure)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "x", None])
def test_impossible_truncation_is_refused(tiny_pipeline, face_tensor, bad):
    assert check_truncation(0.75) == 0.75 and check_truncation(1) == 1.0
    with pytest.raises(WeightError, match="truncation"):
        tiny_pipeline.transfer(face_tensor, 0, truncation=bad)
    with pytest.raises(WeightError, match="truncation"):
        tiny_pipeline.generate(1, truncation=bad)


def test_weight_errors_in_transfer(tiny_pipeline, face_tensor):
    with pytest.raises(WeightError, match="18 values"):
        tiny_pipeline.transfer(face_tensor, 0, weights=[1] * 5)
    with pytest.raises(WeightError, match="not both"):
        tiny_pipeline.transfer(face_tensor, 0, weights=[1] * 18, structure=0.5)


def test_style_id_out_of_range(tiny_pipeline, face_tensor):
    with pytest.raises(StyleIdError, match="out of range: .* ids 0 to 2"):
        tiny_pipeline.transfer(face_tensor, 3)
    with pytest.raises(StyleIdError, match="no exemplar named"):
        tiny_pipeline.transfer(face_tensor, "nobody.png")


def test_generate_is_the_reference_call(tiny_pipeline):
    """generate = generate.py: z and the sampler's structure / color noise from one seeded generator, the sampled
    Z+ code mapped by the generator, DualStyleGAN at truncation 0.5 toward 0 with the preset weights."""
    p = tiny_pipeline
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 512, generator=g)
    s_noise = torch.randn(2, p.sampler.structure.config.noise_dim, generator=g)
    c_noise = torch.randn(2, p.sampler.color.config.noise_dim, generator=g)
    with torch.no_grad():
        ex = p.generator.map_extrinsic(p.sampler(s_noise, c_noise))
        expect, _ = p.generator([z], ex, truncation=0.5, truncation_latent=0, use_res=True,
                                interp_weights=[0.75] * 7 + [1] * 11, randomize_noise=False)
    torch.testing.assert_close(p.generate(2, seed=4), expect.clamp(-1, 1))


def test_generate_fixes_parts(tiny_pipeline):
    p = tiny_pipeline
    a = p.generate(3, seed=0)
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, p.generate(3, seed=0))
    assert not torch.allclose(a[0], a[1])
    fixed = p.generate(3, seed=0, fix_content=True, fix_color=True, fix_structure=True)
    torch.testing.assert_close(fixed[1], fixed[0], atol=1e-5, rtol=1e-5)
    only_structure = p.generate(3, seed=0, fix_structure=True, fix_color=True)
    assert not torch.allclose(only_structure[0], only_structure[1])  # the content still varies


def test_blend_endpoints_are_transfers(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    frames = p.blend(face_tensor, 0, 2, steps=4)
    assert len(frames) == 4
    torch.testing.assert_close(frames[0], p.transfer(face_tensor, 0).image)
    torch.testing.assert_close(frames[-1], p.transfer(face_tensor, 2).image)
    assert not torch.allclose(frames[1], frames[0])


def test_reconstruction_and_exemplar_render(tiny_pipeline, face_tensor):
    """The reconstruction is the encoder's decoder on the intrinsic code (style_transfer.py's img_rec); an exemplar
    renders as its Z+ code for both paths at w = 1, both pooled to 256²."""
    import torch.nn.functional as F

    p = tiny_pipeline
    r = p.transfer(face_tensor, 0, reconstruct=True)
    with torch.no_grad():
        rec, _ = p.decoder([r.intrinsic], z_plus_latent=True, randomize_noise=False)
        ex = p.codes.code(1)
        render, _ = p.generator([ex], p.generator.map_extrinsic(ex), z_plus_latent=True, use_res=True,
                                interp_weights=[1.0] * 18, randomize_noise=False)
    torch.testing.assert_close(r.reconstruction, F.adaptive_avg_pool2d(rec.clamp(-1, 1), 256))
    torch.testing.assert_close(p.render_exemplar(1), F.adaptive_avg_pool2d(render.clamp(-1, 1), 256))
    torch.testing.assert_close(p.render_exemplar(1, size=32), F.adaptive_avg_pool2d(render.clamp(-1, 1), 32))


def _rec_error(p, code, target, extrinsic=None):
    import torch.nn.functional as F
    with torch.no_grad():
        if extrinsic is None:
            image, _ = p.generator.generator([code], z_plus_latent=True, randomize_noise=False)
        else:
            image, _ = p.generator([code], p.generator.map_extrinsic(extrinsic), z_plus_latent=True,
                                   interp_weights=[1] * 18, randomize_noise=False)
    return F.mse_loss(F.adaptive_avg_pool2d(image, 256), target).item()


def test_fit_content_lowers_the_reconstruction_error(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    start = p.encode(face_tensor)
    fitted = p.fit_intrinsic(start, face_tensor, steps=15, lr=0.05)
    assert _rec_error(p, fitted, face_tensor) < _rec_error(p, start, face_tensor)
    r = p.transfer(face_tensor, 0, fit_content=3)
    assert not torch.equal(r.intrinsic, start)


def test_refine_lowers_the_exemplar_reconstruction_error(tiny_pipeline, face_tensor):
    p = tiny_pipeline
    exemplar = face_tensor.flip(-2)
    start = p.encode(exemplar)
    refined = p.refine_extrinsic(start, exemplar, steps=15)
    assert _rec_error(p, start, exemplar, refined) < _rec_error(p, start, exemplar, start)
    assert not torch.equal(p.transfer(face_tensor, exemplar, refine=2).extrinsic, start)
    with pytest.raises(ValueError, match="image"):
        p.transfer(face_tensor, 0, refine=2)


def test_from_pretrained_resolves_the_device(tiny_pack):
    """device="auto" is dualstylegan.devices' rule (a GPU when there is one); a missing one is one sentence."""
    from dualstylegan.devices import resolve_device
    from dualstylegan.errors import UsageError

    p = StyleTransferPipeline.from_pretrained(str(tiny_pack), device="auto")
    assert p.device.type == torch.device(resolve_device("auto")).type
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            StyleTransferPipeline.from_pretrained(str(tiny_pack), device="cuda")


# ------------------------------------------------------------------------------------------------ issue 15 item 4
def _photo_forms(tmp_path):
    """One face crop as a file, a PIL image, a NumPy array (uint8 and float) and the tensor it becomes."""
    from PIL import Image

    from dualstylegan.faces import prepare_face
    from dualstylegan.images import to_tensor

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((80, 64), Image.BICUBIC)
    path = tmp_path / "crop.png"
    img.save(path)
    tensor = to_tensor(prepare_face(img, align=False)[0].image)
    return {"path": path, "str": str(path), "pil": img, "uint8": np.asarray(img),
            "float": np.asarray(img, dtype=np.float32) / 255.0}, tensor


def test_transfer_and_blend_take_any_image_form(tiny_pipeline, tmp_path):
    forms, tensor = _photo_forms(tmp_path)
    want = tiny_pipeline.transfer(tensor, 1).image
    for kind, photo in forms.items():
        got = tiny_pipeline.transfer(photo, 1, align=False).image
        assert torch.equal(got, want), kind
    ex_want = tiny_pipeline.transfer(tensor, tensor).image  # the same crop as an exemplar image
    got = tiny_pipeline.transfer(tensor, forms["pil"]).image  # no face (dlib or not): its centred square
    assert torch.equal(got, ex_want)
    frames = tiny_pipeline.blend(forms["uint8"], 0, 2, steps=2, align=False)
    assert all(torch.equal(a, b) for a, b in zip(frames, tiny_pipeline.blend(tensor, 0, 2, steps=2)))


def test_pipeline_is_callable_returning_pil_images(tiny_pipeline, tmp_path):
    from PIL import Image

    from dualstylegan.images import to_image

    forms, tensor = _photo_forms(tmp_path)
    out = tiny_pipeline(forms["path"], 2, align=False, structure=0.5)
    assert len(out.images) == 1 and isinstance(out.images[0], Image.Image)
    want = to_image(tiny_pipeline.transfer(tensor, 2, structure=0.5).image)
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(want))
    assert out.results[0].weights == tiny_pipeline.weights_for(structure=0.5)


def test_refine_shows_progress_and_says_which_distance(tiny_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tiny_pipeline, "lpips", None)
    monkeypatch.setattr(tiny_pipeline, "vgg", None)
    monkeypatch.setattr(tiny_pipeline, "_looked_for_feature_nets", True, raising=False)  # no weights here
    _, tensor = _photo_forms(tmp_path)
    r = tiny_pipeline.transfer(tensor, tensor, refine=3)
    assert r.refine_distance.startswith("mean squared error")
    err = capsys.readouterr().err
    assert "refining" in err and "3/3" in err  # the bar
    calls = []

    def fake_lpips(x, y):
        calls.append(1)
        return (x - y).abs().flatten(1).mean(1)

    monkeypatch.setattr(tiny_pipeline, "lpips", fake_lpips)
    r = tiny_pipeline.transfer(tensor, tensor, refine=2, progress=False)
    assert r.refine_distance == "LPIPS" and len(calls) == 2 and "refining" not in capsys.readouterr().err


def test_refine_finds_local_perceptual_weights(tiny_pipeline, monkeypatch):
    """With no networks set, the LPIPS / VGG19 weights on this machine are used (looked for once)."""
    from dualstylegan import pipeline as pl

    looked = []
    monkeypatch.setattr(pl, "local_feature_net", lambda key: looked.append(key) or (lambda x, y: x.sum()))
    monkeypatch.setattr(tiny_pipeline, "lpips", None)
    monkeypatch.setattr(tiny_pipeline, "vgg", None)
    monkeypatch.setattr(tiny_pipeline, "_looked_for_feature_nets", False, raising=False)
    assert tiny_pipeline.refine_distance() == "LPIPS + contextual loss"
    tiny_pipeline.feature_nets()
    assert looked == ["lpips", "vgg"]


def test_streamed_generate_and_blend_are_the_same_images(tiny_pipeline, face_tensor):
    whole = tiny_pipeline.generate(5, seed=4)
    streamed = torch.cat(list(tiny_pipeline.iter_generate(5, seed=4, batch_size=2)))
    torch.testing.assert_close(streamed, whole, atol=1e-3, rtol=0)  # batch-size rounding only
    frames = list(tiny_pipeline.iter_blend(face_tensor, 0, 2, steps=3))
    assert all(torch.equal(a, b) for a, b in zip(frames, tiny_pipeline.blend(face_tensor, 0, 2, steps=3)))


def test_seed_out_of_range_is_one_sentence(tiny_pipeline, face_tensor):
    from dualstylegan.pipeline import OptionError

    for bad in (2**64, -1, 1.5, True):
        with pytest.raises(OptionError, match=r"from 0 to 2\*\*64 - 1"):
            tiny_pipeline.transfer(face_tensor, 0, seed=bad)
    tiny_pipeline.transfer(face_tensor, 0, seed=2**64 - 1)


def test_readme_snippet_runs_twice_in_a_row(tiny_pack, tmp_path, monkeypatch):
    """The README's Python example (with a local pack standing in for 'cartoon'): a second run overwrites."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64)).save("me.jpg")
    snippet = f"""
from PIL import Image
from dualstylegan import StyleTransferPipeline
from dualstylegan.images import save_image

pipe = StyleTransferPipeline.from_pretrained({str(tiny_pack)!r})
portrait = pipe("me.jpg", 2, align=False, structure=0.6).images[0]
portrait.save("me_cartoon.png")
result = pipe.transfer(Image.open("me.jpg"), 1, align=False)
save_image(result.image, "me_cartoon_1.png", overwrite=True)
"""
    for _ in range(2):
        exec(compile(snippet, "README.md", "exec"), {})
    assert (tmp_path / "me_cartoon.png").is_file() and (tmp_path / "me_cartoon_1.png").is_file()
