"""Metrics that need trained networks: LPIPS, a Gram style distance in a judge backbone, FID and ArtFID.

A backbone should not be judged only by the network it was optimized against, so the judge is chosen
independently (VGG19 by default). Every judge loads its weights once; when they cannot be had (offline,
not cached) the metric is reported as unavailable with the reason, never a crash.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ..api import prepare_images, resolve_layers
from ..backbones import create_backbone
from ..errors import StylelabError, WeightsUnavailableError, renamed_parameter
from ..images import resize
from ..losses import GramLoss, style_layer_loss, style_loss
from ..weights import fetch_hf_file, fetch_hub_checkpoint, read_checkpoint

# LPIPS v0.1 (Zhang et al. 2018), AlexNet variant: the network the `lpips` package and ArtFID use.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
ALEXNET_TAPS = (1, 4, 7, 9, 11)  # indices of the ReLUs in torchvision's alexnet().features
ART_INCEPTION = ("matthias-wright/art_inception", "art_inception.pth")  # ArtFID's Inception (Wright & Ommer 2022)


class LPIPS(nn.Module):
    """LPIPS distance: unit-normalized AlexNet ReLU features, squared difference, learned 1×1 weights, mean."""

    def __init__(self, alexnet_state: dict[str, Tensor], lin_state: dict[str, Tensor]):
        super().__init__()
        features = torchvision.models.alexnet(weights=None).features[: ALEXNET_TAPS[-1] + 1]
        features.load_state_dict({k.removeprefix("features."): v for k, v in alexnet_state.items()
                                  if k.startswith("features.") and int(k.split(".")[1]) <= ALEXNET_TAPS[-1]})
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.features = features
        self.lins = nn.ParameterList([nn.Parameter(lin_state[f"lin{i}.model.1.weight"]) for i in range(5)])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _taps(self, image: Tensor) -> list[Tensor]:
        x = ((image * 2 - 1) - self.shift) / self.scale  # [0, 1] -> LPIPS's [-1, 1] input, then its scaling layer
        out = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in ALEXNET_TAPS:
                out.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, 3, H, W) pairs in [0, 1] -> (B,) distances."""
        total = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self._taps(x), self._taps(y), self.lins):
            total = total + F.conv2d((fx - fy).square(), w).mean((1, 2, 3))
        return total


def lpips_lin_weights() -> dict[str, Tensor]:
    """The learned layer weights that ship with the `lpips` package (v0.1, alex)."""
    try:
        path = importlib.resources.files("lpips") / "weights" / "v0.1" / "alex.pth"
    except ModuleNotFoundError:
        raise WeightsUnavailableError("LPIPS needs the `lpips` package (pip install lpips)") from None
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_lpips(weights: str = "pretrained") -> LPIPS:
    """AlexNet from torchvision's weights API (or a local checkpoint), LPIPS's layer weights from `lpips`."""
    if weights == "pretrained":
        state = fetch_hub_checkpoint(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url, "AlexNet (for LPIPS)",
                                     parameter="lpips_weights")
    else:
        state = read_checkpoint(weights, "AlexNet", parameter="lpips_weights")
    return LPIPS(dict(state), lpips_lin_weights())


def build_inception() -> nn.Module:
    """torchvision's Inception-v3 trunk with the classifier removed: 2048-d pooled features."""
    net = torchvision.models.Inception3(aux_logits=False, transform_input=False, init_weights=False)
    net.fc = nn.Identity()
    return net.eval().requires_grad_(False)


def load_art_inception(weights: str = "pretrained") -> nn.Module:
    """ArtFID's Inception-v3 (trained on art): from the Hugging Face hub cache, or a local file."""
    if weights == "pretrained":
        path = fetch_hf_file(*ART_INCEPTION, "ArtFID Inception", parameter="inception_weights")
    else:
        path = weights
    state = read_checkpoint(path, "ArtFID Inception", parameter="inception_weights")
    net = build_inception()
    # The checkpoint also holds two classifier heads and two auxiliary heads; FID uses only the trunk.
    trunk = {k: v for k, v in state.items() if not k.startswith(("fc", "AuxLogits"))}
    missing, _ = net.load_state_dict(trunk, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise StylelabError(f"inception_weights={path} is not an Inception-v3 checkpoint: missing {', '.join(missing[:3])} …")
    return net


MIN_INCEPTION_SIDE = 75  # Inception-v3's smallest valid input


@torch.no_grad()
def inception_features(net: nn.Module, images: Sequence[Tensor]) -> Tensor:
    """(n, 2048) float64: each image at its own size, as ArtFID reads it (ToTensor, no resize).

    Departure: images with a side under 75 px (which Inception cannot take) are upscaled to 75 px.
    """
    device = next(net.parameters()).device
    rows = []
    for image in images:
        h, w = image.shape[-2:]
        if min(h, w) < MIN_INCEPTION_SIDE:
            s = MIN_INCEPTION_SIDE / min(h, w)
            image = resize(image, (max(MIN_INCEPTION_SIDE, round(h * s)), max(MIN_INCEPTION_SIDE, round(w * s))))
        rows.append(net(image.to(device)).double().cpu())
    return torch.cat(rows)


def _sqrt_psd(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(f1: Tensor, f2: Tensor) -> float:
    """FID between two feature sets (n, d): ‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½, float64.

    tr √(Σ1Σ2) is computed on the symmetric PSD form Σ1^½ Σ2 Σ1^½ (same eigenvalues), which needs no
    complex square root and stays finite for the rank-deficient covariances of small sets.
    """
    if f1.shape[0] < 2 or f2.shape[0] < 2:
        raise StylelabError("FID needs at least 2 images in each set")
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    r1 = _sqrt_psd(s1)
    tr_covmean = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * tr_covmean)


def art_fid(lpips_mean: float, fid: float) -> float:
    """ArtFID (Wright & Ommer 2022) = (1 + LPIPS(content, stylized)) · (1 + FID(style set, stylized set))."""
    return (1 + lpips_mean) * (1 + fid)


class GramJudge:
    """Style distance Σ_l w_l E_l (eq. 2.3 with the judge's default style layers) in an independent backbone."""

    def __init__(self, backbone: str = "vgg19", weights: str = "pretrained", device: torch.device | None = None):
        try:
            self.net = create_backbone(backbone, weights)
        except StylelabError as exc:  # the judge's weights are their own parameter
            raise renamed_parameter(exc, "weights", "judge_weights") from None
        _, self.layers = resolve_layers(self.net, None, None)
        self.net.truncate(self.layers)
        self.device = device or torch.device("cpu")
        self.net.to(self.device)
        self.name = f"{self.net.name} ({self.net.weights_source})"
        self._cache: dict[tuple[int, int], tuple[Tensor, dict[str, Tensor]]] = {}

    @torch.no_grad()
    def grams(self, image: Tensor, long_edge: int) -> dict[str, Tensor]:
        image, _ = prepare_images(self.net, image, [], long_edge)
        feats = self.net(image.to(self.device), list(self.layers))
        return {n: GramLoss().statistic(feats, n)[0] for n in feats}

    @torch.no_grad()
    def distance(self, output: Tensor, style: Tensor) -> float:
        """Both images at the output's long edge (the style keeps its aspect ratio, as in a transfer)."""
        long_edge = max(output.shape[-2:])
        key = (id(style), long_edge)
        if key not in self._cache:  # the style tensor is kept alive with its Grams, so its id stays unique
            self._cache[key] = (style, self.grams(style, long_edge))
        target, g = self._cache[key][1], self.grams(output, long_edge)
        parts = {n: style_layer_loss(g[n], target[n], g[n].shape[1], 1) for n in self.layers}
        return float(style_loss(parts, self.layers).sum())
