"""A plain Gatys loop as in PyTorch's neural-style tutorial, kept here only as a timing baseline.

Written from the tutorial's description: torchvision's whole VGG19 ``features`` with loss modules
inserted after the chosen layers, Gram / (C·H·W), MSE losses, L-BFGS with max_iter 20 per step and
the image clamped inside the closure. Same layers and iteration count as stylelab's default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

STYLE = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")  # the tutorial hooks convs
CONTENT = ("conv4_2",)


def _gram(x):
    b, c, h, w = x.shape
    f = x.view(b * c, h * w)
    return f @ f.t() / (b * c * h * w)


class _Content(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target, self.loss = target.detach(), torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class _Style(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target, self.loss = _gram(target).detach(), torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(_gram(x), self.target)
        return x


def build(features: nn.Sequential, content: torch.Tensor, style: torch.Tensor):
    mean = torch.tensor([0.485, 0.456, 0.406], device=content.device).view(-1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=content.device).view(-1, 1, 1)
    model = nn.Sequential()
    model.add_module("norm", _Normalize(mean, std))
    content_losses, style_losses, block, conv = [], [], 1, 0
    for layer in features.children():
        if isinstance(layer, nn.Conv2d):
            conv += 1
            name = f"conv{block}_{conv}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu{block}_{conv}", nn.ReLU(inplace=False)
        else:
            name, block, conv = f"pool{block}", block + 1, 0
        model.add_module(name, layer)
        if name in CONTENT:
            loss = _Content(model(content))
            model.add_module(f"content_{name}", loss)
            content_losses.append(loss)
        if name in STYLE:
            loss = _Style(model(style))
            model.add_module(f"style_{name}", loss)
            style_losses.append(loss)
    last = max(i for i, m in enumerate(model) if isinstance(m, (_Content, _Style)))
    return model[: last + 1], content_losses, style_losses


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def run(features, content, style, iterations: int, style_weight=1e6, content_weight=1.0):
    """Returns (image, evaluations): the tutorial's loop stops at the first L-BFGS step boundary after
    ``iterations`` closure evaluations, so it may do a few more; timings divide by the actual count."""
    model, content_losses, style_losses = build(features, content, style)
    model.requires_grad_(False)
    image = content.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = torch.optim.LBFGS([image])
    count = [0]

    def closure():
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        model(image)
        loss = style_weight * sum(s.loss for s in style_losses) + content_weight * sum(c.loss for c in content_losses)
        loss.backward()
        count[0] += 1
        return loss

    while count[0] < iterations:
        optimizer.step(closure)
    with torch.no_grad():
        image.clamp_(0, 1)
    return image.detach(), count[0]


def vgg19_features(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return make_layers(cfgs["E"]).eval()
