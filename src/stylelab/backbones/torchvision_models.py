"""torchvision's ResNet-50 as the named entry ``resnet50`` (VGG16 is in ``vgg.py``, beside VGG19).

Layers: ``relu`` (the stem, stride 2) and every bottleneck ``layer1.0`` … ``layer4.2``, read by running the
torchvision model's own modules in its forward's order (stem, max pool, blocks), stopped after the deepest
needed block. Weights: ``random`` (torchvision's initialization, seeded), ``pretrained`` (torchvision's
IMAGENET1K_V1 through the torch.hub cache; mean/std from the weights entry's transforms), or a path: a
torchvision state dict, or a robust ResNet-50 of the ``robustness`` library (Engstrom et al.; Nakano, Distill
2019, found them to stylize well), whose keys are ``module.model.*`` beside an attacker's copy
(``module.attacker.model.*``) and an input normalizer (``module.normalizer.new_mean``/``new_std``, which then
gives the input mean/std).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..weights import fetch_hub_checkpoint, read_checkpoint
from .base import InputSpec, LayerInfo
from .registry import register_backbone
from .zoo import ZooBackbone, load_matching, seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _steps(model: nn.Module) -> list[tuple[str | None, nn.Module]]:
    """The ResNet's forward as (layer name or None, module) in order, up to the last block."""
    steps: list[tuple[str | None, nn.Module]] = [(None, model.conv1), (None, model.bn1), ("relu", model.relu),
                                                 (None, model.maxpool)]
    for stage in range(1, 5):
        for i, block in enumerate(getattr(model, f"layer{stage}")):
            steps.append((f"layer{stage}.{i}", block))
    return steps


def _layer_table(model: nn.Module) -> list[LayerInfo]:
    layers = [LayerInfo("relu", model.conv1.out_channels, 2, "relu")]
    for stage in range(1, 5):
        for i, block in enumerate(getattr(model, f"layer{stage}")):
            channels = block.conv3.out_channels  # a bottleneck's output width
            layers.append(LayerInfo(f"layer{stage}.{i}", channels, 2 ** (stage + 1), f"layer{stage}.{i}"))
    return layers


class TorchvisionResNet(ZooBackbone):
    def __init__(self, model: nn.Module, input_spec: InputSpec, weights_source: str):
        super().__init__("resnet50", model, _layer_table(model), input_spec, weights_source)
        self._steps = _steps(model)  # shares the model's modules; not registered twice

    def intermediates(self, x: Tensor, indices: list[int]) -> tuple[list[Tensor], list[Tensor | None]]:
        wanted = {self.layers[i].name for i in indices}
        deepest = self.layers[indices[-1]].name
        out = []
        for name, module in self._steps:
            x = module(x)
            if name in wanted:
                out.append(x)
            if name == deepest:
                break
        return out, [None] * len(out)

    def prune(self, deepest: int) -> None:
        last = self.layers[deepest].name
        self._steps = self._steps[: next(i for i, (name, _) in enumerate(self._steps) if name == last) + 1]
        kept = {id(module) for _, module in self._steps}
        for stage in range(1, 5):  # drop the blocks (and parameters) no step uses
            blocks = [block for block in getattr(self.model, f"layer{stage}") if id(block) in kept]
            setattr(self.model, f"layer{stage}", nn.Sequential(*blocks))
        self.model.fc = nn.Identity()


def _is_classifier(key: str) -> bool:
    return key.startswith("fc.")  # never used for features: a file may hold another number of classes


def resnet_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], InputSpec, str]:
    """A torchvision or robustness-library ResNet-50 state dict -> (torchvision keys, its input, format)."""
    if any(k.startswith("model.") for k in state):  # robustness: model.*, attacker.model.*, normalizer.*
        mean, std = state.get("normalizer.new_mean"), state.get("normalizer.new_std")
        spec = InputSpec(mean=tuple(mean.flatten().tolist()) if mean is not None else IMAGENET_MEAN,
                         std=tuple(std.flatten().tolist()) if std is not None else IMAGENET_STD)
        return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, spec, "robustness"
    return dict(state), InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD), "torchvision"


@register_backbone("resnet50", "ResNet-50 (torchvision); also robust checkpoints of the robustness library.")
def resnet50(weights: str = "pretrained", seed: int = 0) -> TorchvisionResNet:
    import torchvision

    model = seeded(lambda: torchvision.models.resnet50(weights=None), seed)
    if weights == "random":
        return TorchvisionResNet(model, InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                                 f"random init (seed {seed})")
    if weights == "pretrained":
        entry = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
        transforms = entry.transforms()
        load_matching(model, fetch_hub_checkpoint(entry.url, "ResNet-50"), f"the pretrained file {entry.url}",
                      "ResNet-50", optional=_is_classifier)
        spec = InputSpec(mean=tuple(transforms.mean), std=tuple(transforms.std))
        return TorchvisionResNet(model, spec, f"pretrained (torchvision {entry.name})")
    state, spec, fmt = resnet_state(read_checkpoint(weights, "ResNet-50"))
    load_matching(model, state, f"weights={weights}", "ResNet-50", optional=_is_classifier)
    return TorchvisionResNet(model, spec, f"checkpoint {weights} ({fmt} format)")
