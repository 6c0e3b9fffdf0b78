"""A whole open_clip model (image and text towers) as the judge of a written style: it embeds prompts and images
in CLIP's joint space, nothing more. The Gatys part of a run keeps its own backbone; this model is separate.

Named ``open_clip:ARCH[:TAG]`` as in the zoo. Weights: ``random`` (open_clip's initialization, seeded),
``pretrained`` (the tag's Hugging Face repository through the hub cache; the same offline message as every other
weights file), or a path to a whole-CLIP checkpoint (OpenAI's TorchScript ``.pt`` is read without running it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import StylelabError, WeightsUnavailableError
from ..weights import missing_keys_message, read_checkpoint
from .clip import fetch_pretrained
from .open_clip_models import check_name, input_spec, split_name
from .zoo import seeded

DEFAULT_TEXT_MODEL = "open_clip:ViT-B-32"  # CLIPstyler's CLIP (OpenAI's ViT-B/32), when the backbone is not a CLIP
NAMED_CLIP = {"clip-rn50": "RN50", "clip-rn50-sequential": "RN50", "clip-vit-b16": "ViT-B-16"}  # the seed's towers


def default_text_model(backbone: str) -> str:
    """The CLIP of the run's backbone when it is one (``open_clip:…`` or the seed's CLIP entries), else
    ``DEFAULT_TEXT_MODEL``."""
    if isinstance(backbone, str) and backbone.startswith("open_clip:"):
        return backbone
    if isinstance(backbone, str) and backbone in NAMED_CLIP:
        return f"open_clip:{NAMED_CLIP[backbone]}"
    return DEFAULT_TEXT_MODEL


def check_text_model(name: str) -> str:
    """``open_clip:ARCH[:TAG]`` checked against open_clip's tables (before any weights are read)."""
    if not isinstance(name, str) or not name.startswith("open_clip:"):
        raise StylelabError(f"text_model= must be an open_clip model, open_clip:ARCH[:TAG] (e.g. "
                            f"{DEFAULT_TEXT_MODEL}), got {name!r}")
    check_name(name.removeprefix("open_clip:"))
    return name


class TextImageModel(nn.Module):
    """CLIP's two towers, frozen, fp32: ``encode_text`` for prompts, ``encode_image`` for [0, 1] RGB images
    (resized to the tower's native size and normalized by the tag's mean/std). Embeddings are unit vectors."""

    def __init__(self, name: str, model: nn.Module, tokenizer, mean: Sequence[float], std: Sequence[float],
                 weights_source: str):
        super().__init__()
        self.name, self.model, self.tokenizer, self.weights_source = name, model.float().eval(), tokenizer, weights_source
        self.model.requires_grad_(False)
        size = model.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        device = self.mean.device
        return F.normalize(self.model.encode_text(self.tokenizer(list(prompts)).to(device)).float(), dim=-1)

    def encode_image(self, images: Tensor) -> Tensor:
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bicubic", align_corners=False)
        return F.normalize(self.model.encode_image((images - self.mean) / self.std).float(), dim=-1)


def _load_whole(model: nn.Module, state: dict[str, Tensor], path: str, what: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise StylelabError(missing_keys_message(path, what, missing[:2], sorted(state)))
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise StylelabError(f"text_weights={path}: tensor shapes do not match {what} ({wrong[0]}: "
                            f"{tuple(state[wrong[0]].shape)} in the file, {tuple(own[wrong[0]].shape)} expected)")
    model.load_state_dict({k: state[k] for k in own}, strict=False)  # fp16 files are copied into fp32


def create_text_model(name: str, weights: str = "pretrained", seed: int = 0) -> TextImageModel:
    """The whole CLIP ``name`` with ``weights`` (pretrained / random / a checkpoint path)."""
    import open_clip

    arch, tag = split_name(check_text_model(name).removeprefix("open_clip:"))
    quick_gelu = bool(tag and open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    what = f"CLIP {arch} (both towers)"
    state = None
    if weights == "pretrained":  # fetched first: offline, the one-line message comes before any building
        if tag is None:
            raise WeightsUnavailableError(f"open_clip has no pretrained weights for {arch}; pass text_weights=PATH "
                                          f"or text_weights=random")
        try:
            state, source = fetch_pretrained(arch, tag)
        except WeightsUnavailableError as error:  # the hint names the text model's own option
            raise WeightsUnavailableError(str(error).replace(" weights=", " text_weights=")) from None
    elif weights != "random":
        state, source = read_checkpoint(weights, what), f"checkpoint {weights}"
    model = seeded(lambda: open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu), seed)
    if state is None:
        source = f"random init (seed {seed})"
    else:
        _load_whole(model, state, source if weights == "pretrained" else weights, what)
    spec = input_spec(arch, tag, model.visual)
    return TextImageModel(name, model, open_clip.get_tokenizer(arch), spec.mean, spec.std, source)
