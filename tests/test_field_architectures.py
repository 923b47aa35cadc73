"""Architectures users bring that our presets do not have: they convert with default options to `.keras`
and SavedModel, on the road porttax picks itself, and hold fp32 parity.

Upsampling (nearest in a feature pyramid, bilinear in a UNet), transposed convolutions, pixel shuffle
(super-resolution), top-k selection over scores (detection heads) and rolled windows (torchvision's
Swin-T, slow) are the ops whole model families are built on; all but Swin take the direct road.
Random weights, fixed seeds; parity is checked by porttax on the written artefact over 3 seeds and
again here with plain TensorFlow on the SavedModel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import porttax
from porttax._frameworks import import_tf, import_torch, import_torchvision

torch = import_torch()
nn = torch.nn
F = torch.nn.functional
TOL = 1e-5


def _block(cin: int, cout: int) -> Any:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class TinyUNet(nn.Module):
    """Two levels down, two up: one up-step a ConvTranspose2d, one a bilinear resize, skips concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2, self.mid = _block(3, 8), _block(8, 16), _block(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2, self.dec1 = _block(32, 16), _block(24, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: Any) -> Any:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        up = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(self.dec1(torch.cat([up, e1], dim=1)))


class ESPCN(nn.Module):
    """Shi et al.'s sub-pixel super-resolution net: features at low resolution, pixel_shuffle up ×3."""

    def __init__(self, scale: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.Tanh(), nn.Conv2d(16, 8, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(8, scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Any) -> Any:
        return self.shuffle(self.body(x))


class FPN(nn.Module):
    """torchvision's FeaturePyramidNetwork over a resnet18's four stages (nearest upsampling top-down)."""

    def __init__(self) -> None:
        super().__init__()
        tv = import_torchvision()
        from torchvision.models._utils import IntermediateLayerGetter

        self.body = IntermediateLayerGetter(tv.models.resnet18(weights=None),
                                            {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"})
        self.fpn = tv.ops.FeaturePyramidNetwork([64, 128, 256, 512], 32)

    def forward(self, x: Any) -> Any:
        return tuple(self.fpn(self.body(x)).values())


class TopKHead(nn.Module):
    """A detection-style head: per-anchor scores and boxes, the k best anchors kept by score."""

    def __init__(self, anchors: int = 3, k: int = 10) -> None:
        super().__init__()
        self.k = k
        self.features = nn.Sequential(_block(3, 16), nn.MaxPool2d(2), _block(16, 16))
        self.scores = nn.Conv2d(16, anchors, 1)
        self.boxes = nn.Conv2d(16, anchors * 4, 1)

    def forward(self, x: Any) -> Any:
        f = self.features(x)
        n = x.shape[0]
        scores = self.scores(f).permute(0, 2, 3, 1).reshape(n, -1).sigmoid()
        boxes = self.boxes(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        top, idx = scores.topk(self.k, dim=1)
        return top, torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4)), idx


def _swin_t() -> Any:
    return import_torchvision().models.swin_t(weights=None)


def _randomize(module: Any) -> Any:
    """Fresh BatchNorm statistics are 0/1, which would hide a mean/variance swap."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    return module.eval()


CASES: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
    "unet": (TinyUNet, (1, 3, 32, 32)),
    "espcn": (ESPCN, (1, 1, 24, 24)),
    "fpn_resnet18": (FPN, (1, 3, 64, 64)),
    "topk_head": (TopKHead, (2, 3, 16, 16)),
    "swin_t": (_swin_t, (1, 3, 64, 64)),
}
SLOW = {"fpn_resnet18", "swin_t"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in CASES])
def test_converts_with_default_options(name: str, tmp_path: Path) -> None:
    build, shape = CASES[name]
    torch.manual_seed(0)
    module = _randomize(build())
    example = (torch.randn(shape),)
    pt2 = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(module, example), str(pt2))

    keras_res = porttax.convert(pt2, to="keras", output=tmp_path / f"{name}.keras", measure_latency=False)
    assert keras_res.passed and keras_res.parity.worst_rel_l2 <= TOL, keras_res.parity.summary_line()
    chosen = next(r["road"] for r in keras_res.roads or [{"road": "direct", "chosen": True}] if r.get("chosen"))
    if name != "swin_t":  # Swin's window masks are built with fill.Tensor, which only the ONNX road takes yet
        assert chosen == "direct", keras_res.roads

    sm = tmp_path / f"{name}_sm"
    sm_res = porttax.convert(pt2, to="savedmodel", output=sm, measure_latency=False)
    assert sm_res.passed, sm_res.parity.summary_line()
    tf = import_tf()
    serve = tf.saved_model.load(str(sm)).signatures["serving_default"]
    (arg,) = serve.structured_input_signature[1]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = module(x)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    got = serve(**{arg: tf.constant(x.numpy())})
    got = [got[k].numpy() for k in sorted(got, key=lambda k: int(k.rsplit("_", 1)[-1]))]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        if w.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
        else:
            rel = np.linalg.norm(g.astype(np.float64) - w) / np.linalg.norm(w)
            assert rel <= TOL, f"{name}: SavedModel ‖a−b‖/‖b‖ = {rel:.3g}"
