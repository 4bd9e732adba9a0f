"""VGG19 features and LPIPS: official key names, shapes, the input normalisation, metric properties."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dualstylegan.nets.perceptual import LPIPS, VGG16Features, VGG19Features

VGG19_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
VGG16_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def torchvision_state_dict(cfg, seed=0, classifier=True):
    """What torchvision's vgg.state_dict() holds: features.{conv index}.weight/bias (+ classifier.*)."""
    g = torch.Generator().manual_seed(seed)
    sd, idx, in_ch = {}, 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, in_ch, 3, 3, generator=g) * (2 / (9 * in_ch)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        idx, in_ch = idx + 2, v
    if classifier:
        for i, (o, n) in {0: (4096, 512 * 7 * 7), 3: (4096, 4096), 6: (1000, 4096)}.items():
            sd[f"classifier.{i}.weight"] = torch.zeros(o, n)
            sd[f"classifier.{i}.bias"] = torch.zeros(o)
    return sd


def test_vgg19_keys_are_torchvision_features():
    sd = torchvision_state_dict(VGG19_E, classifier=False)
    net = VGG19Features()
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [(k, v.shape) for k, v in sd.items()]


def test_vgg19_loads_full_torchvision_state_dict_and_normalises_input():
    sd = torchvision_state_dict(VGG19_E)
    net = VGG19Features()
    net.load_state_dict(sd)  # strict: classifier.* is dropped on purpose, nothing else is unexpected
    assert torch.equal(net.features[28].weight, sd["features.28.weight"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = net(x)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 64, 64), (2, 128, 32, 32), (2, 256, 16, 16),
                                               (2, 512, 8, 8), (2, 512, 4, 4)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 2 - 1
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 2
    relu1_1 = F.relu(F.conv2d((x - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    torch.testing.assert_close(feats[0], relu1_1)
    h = F.relu(F.conv2d(relu1_1, sd["features.2.weight"], sd["features.2.bias"], padding=1))
    h = F.max_pool2d(h, 2)
    relu2_1 = F.relu(F.conv2d(h, sd["features.5.weight"], sd["features.5.bias"], padding=1))
    torch.testing.assert_close(feats[1], relu2_1)
    assert len(net(x, n_layers=3)) == 3
    torch.testing.assert_close(net(x, n_layers=3)[2], feats[2])


def test_lpips_keys_and_official_weights():
    lp = LPIPS()
    keys = list(lp.state_dict())
    vgg16 = torchvision_state_dict(VGG16_D, classifier=False)
    lin_keys = [f"lin{k}.model.1.weight" for k in range(5)]
    assert keys == ["net." + k for k in vgg16] + lin_keys
    assert [tuple(lp.state_dict()[k].shape) for k in lin_keys] == [(1, c, 1, 1) for c in (64, 128, 256, 512, 512)]
    lp.net.load_state_dict(torchvision_state_dict(VGG16_D, seed=1))  # a full torchvision vgg16 state dict
    lins = {k: torch.rand(lp.state_dict()[k].shape) for k in lin_keys}  # what vgg.pth holds
    lp.load_lin_state_dict(lins)
    assert torch.equal(lp.lin3.model[1].weight, lins["lin3.model.1.weight"])
    # the lpips package's own module keys: net.sliceK.N.*, lins.K.*, scaling_layer.*
    package = {f"net.slice1.{k.split('.', 1)[1]}": v for k, v in vgg16.items()}
    package.update({f"lins.{k}.model.1.weight": v * 2 for k, v in enumerate(lins.values())})
    package.update({"scaling_layer.shift": torch.zeros(1, 3, 1, 1), "scaling_layer.scale": torch.ones(1, 3, 1, 1)})
    lp.load_state_dict(package)
    assert torch.equal(lp.net.features[0].weight, vgg16["features.0.weight"])
    assert torch.equal(lp.lin0.model[1].weight, lins["lin0.model.1.weight"] * 2)
    assert isinstance(lp.net, VGG16Features)


def test_lpips_is_zero_on_identical_positive_otherwise_symmetric():
    lp = LPIPS().eval()
    lp.net.load_state_dict(torchvision_state_dict(VGG16_D, seed=2))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.equal(lp(x, x), torch.zeros(2))
        dxy, dyx = lp(x, y), lp(y, x)
        assert dxy.shape == (2,) and (dxy > 0).all()
        torch.testing.assert_close(dxy, dyx)
        assert lp(x, y, keepdim=True).shape == (2, 1, 1, 1)
        lp.load_lin_state_dict({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
                                for k, c in enumerate((64, 128, 256, 512, 512))})
        assert (lp(x, y) > 0).all() and torch.equal(lp(y, y), torch.zeros(2))
