"""CLIP's vision towers (open_clip) as backbones: RN50 read by forward hooks or as the seed's
sequential "forward-vision", and ViT-B/16 with a token or a channel Gram.

Only the visual tower is built (no text tower). Features are read with forward hooks on the
tower's own modules while its own forward runs, so residual connections stay intact; the
forward is stopped right after the deepest hooked layer, so the attention pool never runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import StylelabError, WeightsUnavailableError
from ..weights import fetch_hf_file, missing_keys_message, read_checkpoint
from .base import Backbone, Features, LayerInfo, run_named_sequence
from .registry import register_backbone
from .zoo import seeded

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _StopForward(Exception):
    """Raised by the hook of the deepest needed layer: nothing after it needs to run."""


# -- building and loading the tower --------------------------------------------------------------


def build_vision_tower(arch: str, seed: int = 0) -> nn.Module:
    """open_clip's visual tower for ``arch`` ("RN50", "ViT-B-16-quickgelu"), seeded random init."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(arch)
    visual = seeded(lambda: _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"],
                                                quick_gelu=cfg.get("quick_gelu", False)), seed)
    for name, p in visual.named_parameters():
        if name.endswith("bn3.weight"):
            # open_clip zeros each bottleneck's last BN scale (a training trick), which makes a
            # random tower's residual branches vanish; random weights here get scale 1 instead.
            nn.init.ones_(p)
    return visual.float()


def visual_state(state: dict[str, Tensor], path: str, expected: str) -> dict[str, Tensor]:
    """The visual tower's tensors of a whole-CLIP checkpoint (keys ``visual.*``) or of a bare tower."""
    if any(k.startswith("visual.") for k in state):
        return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if expected in state:
        return state
    raise StylelabError(missing_keys_message(path, "CLIP", [f"visual.{expected}"], sorted(state)))


def load_into(visual: nn.Module, state: dict[str, Tensor], path: str, what: str) -> None:
    """Strict load (BN's num_batches_tracked may be absent); tensors are cast to the tower's fp32."""
    own = visual.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise StylelabError(missing_keys_message(path, what, [f"visual.{k}" for k in missing[:2]], sorted(state)))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise StylelabError(f"weights={path}: tensor shapes do not match {what} "
                            f"({k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} expected)")
    # Half-precision checkpoints (OpenAI's files are fp16) are copied into fp32 parameters: the
    # seed's NaN gradients on GPU came from running the fp16 weights.
    visual.load_state_dict({k: state[k] for k in own if k in state}, strict=False)


def fetch_pretrained(arch: str, tag: str = "openai") -> tuple[dict[str, Tensor], str]:
    """Pretrained weights through open_clip's registry and the Hugging Face hub cache."""
    import open_clip
    from huggingface_hub import constants

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    repo = cfg.get("hf_hub", "").strip("/")
    hint = (f"put them in the Hugging Face cache ({constants.HF_HUB_CACHE}) or pass weights=PATH "
            f"(OpenAI's {arch.split('-quickgelu')[0]}.pt or an open_clip checkpoint), or weights=random")
    if not repo:
        raise WeightsUnavailableError(f"open_clip has no downloadable {arch} weights for {tag}; {hint}")
    path = fetch_hf_file(repo, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), f"CLIP {arch}",
                         hint=hint)
    return read_checkpoint(path, f"CLIP {arch}"), f"pretrained (open_clip {arch} {tag}, {repo})"


def _load_tower(arch: str, weights: str, seed: int, expected_key: str, what: str) -> tuple[nn.Module, str]:
    visual = build_vision_tower(arch, seed)
    if weights == "random":
        return visual, f"random init (seed {seed})"
    if weights == "pretrained":
        state, source = fetch_pretrained(arch)
        load_into(visual, visual_state(state, source, expected_key), source, what)
        return visual, source
    load_into(visual, visual_state(read_checkpoint(weights, what), weights, expected_key), weights, what)
    return visual, f"checkpoint {weights}"


def _normalize(image: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (image - mean) / std


class _ClipBackbone(Backbone):
    default_balance = "none"  # the seed's setting: VGG19's α/β and layer weights
    def __init__(self, visual: nn.Module, layers: Sequence[LayerInfo], weights_source: str):
        super().__init__(layers, weights_source)
        self.visual = visual
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    def preprocess(self, image: Tensor) -> Tensor:
        return _normalize(image, self.mean, self.std)

    def _run_hooked(self, run, names: Sequence[str]) -> dict[str, Tensor]:
        """Call ``run()`` with forward hooks on the modules of ``names``; stop after the deepest."""
        deepest = self.deepest(names).name
        out: dict[str, Tensor] = {}
        handles = []

        def hook_for(name):
            def hook(module, inputs, output):
                out[name] = output
                if name == deepest:
                    raise _StopForward

            return hook

        for name in dict.fromkeys(names):
            module = self.visual.get_submodule(self.layer(name).module)
            handles.append(module.register_forward_hook(hook_for(name)))
        try:
            run()
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return out


# -- RN50 --------------------------------------------------------------------------------------------

RN50_BLOCKS = (3, 4, 6, 3)


def rn50_layer_table(width: int = 64) -> list[LayerInfo]:
    """relu1..3 (the stem's ReLUs, named as in the seed), stem (after its avgpool), layerK.i."""
    table = [LayerInfo("relu1", width // 2, 2, "act1"), LayerInfo("relu2", width // 2, 2, "act2"),
             LayerInfo("relu3", width, 2, "act3"), LayerInfo("stem", width, 4, "avgpool")]
    for k, blocks in enumerate(RN50_BLOCKS, start=1):
        for i in range(blocks):
            table.append(LayerInfo(f"layer{k}.{i}", width * 4 * 2 ** (k - 1), 4 * 2 ** (k - 1), f"layer{k}.{i}"))
    return table


class ClipRN50(_ClipBackbone):
    """CLIP ModifiedResNet-50 read with forward hooks on its named modules (residuals intact)."""

    name = "clip-rn50"
    # The seed's conclusion (§3.1.2): style relu1, relu2, relu3, layer1.0, layer1.1; content layer1.0.
    default_content_layers = {"layer1.0": 1.0}
    default_style_layers = ("relu1", "relu2", "relu3", "layer1.0", "layer1.1")
    default_content_weight, default_style_weight = 1.0, 1e3  # VGG19's; not tuned on pretrained CLIP

    def __init__(self, visual: nn.Module, weights_source: str):
        super().__init__(visual, rn50_layer_table(), weights_source)

    def forward_features(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        # The tower's own forward (stem, residual stages, attention pool) cut after the deepest hook.
        return self._run_hooked(lambda: self.visual(x), names)

    def truncate(self, names: Iterable[str]) -> None:
        deepest = self.deepest(names)
        self.visual.attnpool = nn.Identity()
        if deepest.name.startswith("layer"):
            stage, block = (int(v) for v in deepest.name.removeprefix("layer").split("."))
            setattr(self.visual, f"layer{stage}", getattr(self.visual, f"layer{stage}")[: block + 1])
        else:
            stage = 0
        for k in range(stage + 1, 5):
            setattr(self.visual, f"layer{k}", nn.Identity())


class ClipRN50Sequential(_ClipBackbone):
    """The seed's "forward-vision" ablation: the tower's modules run one after another in a single
    sequence. Each bottleneck contributes its main path (conv1 bn1 act1 conv2 bn2 act2 avgpool conv3
    bn3 act3); the shortcut (identity or downsample) is dropped, so there are no residual connections.
    """

    name = "clip-rn50-sequential"
    default_content_layers = ClipRN50.default_content_layers
    default_style_layers = ClipRN50.default_style_layers
    default_content_weight, default_style_weight = ClipRN50.default_content_weight, ClipRN50.default_style_weight

    def __init__(self, visual: nn.Module, weights_source: str):
        super().__init__(visual, rn50_layer_table(), weights_source)
        v = visual
        steps: list[tuple[str | None, nn.Module]] = [
            (None, v.conv1), (None, v.bn1), ("relu1", v.act1), (None, v.conv2), (None, v.bn2), ("relu2", v.act2),
            (None, v.conv3), (None, v.bn3), ("relu3", v.act3), ("stem", v.avgpool)]
        for k, blocks in enumerate(RN50_BLOCKS, start=1):
            for i in range(blocks):
                b = getattr(v, f"layer{k}")[i]
                steps += [(None, m) for m in (b.conv1, b.bn1, b.act1, b.conv2, b.bn2, b.act2, b.avgpool, b.conv3,
                                              b.bn3)]
                steps.append((f"layer{k}.{i}", b.act3))
        self.steps = steps  # shares the tower's modules (and parameters); not registered twice

    def forward_features(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        deepest = self.deepest(names).name
        if deepest not in {name for name, _ in self.steps}:
            raise StylelabError(f"layer {deepest} was truncated away")
        return run_named_sequence(self.steps, x, names, deepest)

    def truncate(self, names: Iterable[str]) -> None:
        deepest = self.deepest(names).name
        self.steps = self.steps[: next(i for i, (name, _) in enumerate(self.steps) if name == deepest) + 1]
        ClipRN50.truncate(self, names)  # the same tower: drop the stages (and parameters) no step uses


# -- ViT-B/16 ------------------------------------------------------------------------------------------

class ClipViTB16(_ClipBackbone):
    """CLIP ViT-B/16 with hooks on its residual attention blocks. Each block's tokens (B, 1 + patches, 768) are
    returned as maps on the patch grid (B, 768, h, w), the class token split off as the prefix: the Gram of the
    maps is the usual Gatys statistic over the 768 channels; the seed's token Gram (eq. 2.5) is the
    ``token-gram`` style loss, which reads all tokens."""

    name = "clip-vit-b16"
    input_multiple = 16
    default_content_layers = {"block5": 1.0}
    default_style_layers = ("block0", "block1", "block2", "block3", "block4")
    default_content_weight, default_style_weight = 1.0, 1e3  # VGG19's; not tuned on pretrained CLIP
    default_tv_weight = 1.0  # smooths the 16×16 patch grid that a ViT's loss leaves in the pixels

    def __init__(self, visual: nn.Module, weights_source: str):
        width = visual.conv1.out_channels
        layers = [LayerInfo(f"block{i}", width, visual.patch_size[0], f"transformer.resblocks.{i}")
                  for i in range(len(visual.transformer.resblocks))]
        super().__init__(visual, layers, weights_source)
        self._pos_cache: dict[tuple, Tensor] = {}

    def _resized_positions(self, grid: tuple[int, int]) -> Tensor:
        pos = self.visual.positional_embedding  # (1 + h0·w0, D)
        h0, w0 = self.visual.grid_size
        patches = pos[1:].reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])

    def positional_embedding(self, grid: tuple[int, int], always_interpolate: bool = False) -> Tensor:
        """The learned embedding bicubically resized to ``grid`` patches; the original at 224 px."""
        grid = tuple(grid)
        if always_interpolate:
            return self._resized_positions(grid)
        if grid == tuple(self.visual.grid_size):
            return self.visual.positional_embedding
        pos = self.visual.positional_embedding
        key = (grid, pos.device, pos.dtype)
        if key not in self._pos_cache:  # weights are frozen: resize once per grid
            self._pos_cache[key] = self._resized_positions(grid)
        return self._pos_cache[key]

    def embed(self, x: Tensor, always_interpolate: bool = False) -> Tensor:
        """Patch embedding + class token + positional embedding + ln_pre: (B, 1 + patches, D)."""
        v = self.visual
        x = v.conv1(x)  # (B, D, gh, gw)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # (B, gh·gw, D)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(grid, always_interpolate).to(x.dtype)
        return v.ln_pre(v.patch_dropout(x))

    def forward_features(self, x: Tensor, names: Sequence[str]) -> Features:
        m = self.input_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise StylelabError(f"{self.name} needs image sides that are multiples of {m}, got {tuple(x.shape[-2:])}")
        tokens = self.embed(x)
        transformer = self.visual.transformer
        batch_first = getattr(transformer, "batch_first", True)
        out = self._run_hooked(lambda: transformer(tokens if batch_first else tokens.transpose(0, 1)), names)
        out = out if batch_first else {n: t.transpose(0, 1) for n, t in out.items()}
        h, w = x.shape[-2] // m, x.shape[-1] // m
        maps = {n: t[:, 1:, :].transpose(1, 2).reshape(t.shape[0], -1, h, w) for n, t in out.items()}
        return Features(maps, prefix={n: t[:, :1, :] for n, t in out.items()})

    def truncate(self, names: Iterable[str]) -> None:
        last = int(self.deepest(names).name.removeprefix("block"))
        self.visual.transformer.resblocks = self.visual.transformer.resblocks[: last + 1]


# -- registry ---------------------------------------------------------------------------------------------


@register_backbone("clip-rn50", "CLIP RN50 visual tower (open_clip) read by forward hooks; the seed's §3.1.2.")
def clip_rn50(weights: str = "pretrained", seed: int = 0) -> ClipRN50:
    return ClipRN50(*_load_tower("RN50", weights, seed, "layer1.0.conv1.weight", "CLIP RN50"))


@register_backbone("clip-rn50-sequential",
                   "CLIP RN50 modules run as one sequence without residuals: the seed's forward-vision ablation.")
def clip_rn50_sequential(weights: str = "pretrained", seed: int = 0) -> ClipRN50Sequential:
    return ClipRN50Sequential(*_load_tower("RN50", weights, seed, "layer1.0.conv1.weight", "CLIP RN50"))


@register_backbone("clip-vit-b16", "CLIP ViT-B/16 visual tower (QuickGELU, OpenAI weights); patch tokens as maps, "
                                   "class token as prefix (--style-loss token-gram reads all tokens).")
def clip_vit_b16(weights: str = "pretrained", seed: int = 0) -> ClipViTB16:
    return ClipViTB16(*_load_tower("ViT-B-16-quickgelu", weights, seed, "class_embedding", "CLIP ViT-B/16"))
