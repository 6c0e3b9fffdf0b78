"""Finding weights: downloads through the library's own cache, local checkpoints, and offline mode.

Set ``STYLELAB_OFFLINE=1`` to never touch the network: pretrained weights then load only
from the cache, and a miss is reported at once instead of after a network time-out.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .errors import StylelabError, WeightsUnavailableError

def offline() -> bool:
    return os.environ.get("STYLELAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and so torchvision) caches downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_hub_checkpoint(url: str, what: str, option: str = "--weights") -> Mapping[str, torch.Tensor]:
    """Load a checkpoint through torch.hub's cache (download + hash check on a miss).

    ``option`` names the command-line flag that takes a local file instead (in the error message).
    """
    filename = os.path.basename(url)
    cached = hub_checkpoint_dir() / filename
    hint = f"put {filename} in {cached.parent} or pass {option} PATH" + \
        (" (or --weights random)" if option == "--weights" else "")
    if offline() and not cached.exists():
        raise WeightsUnavailableError(f"pretrained {what} weights are not cached and STYLELAB_OFFLINE is set; {hint}")
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsUnavailableError(f"could not download pretrained {what} weights ({reason}); {hint}") from None
    except RuntimeError as exc:  # hash mismatch or a corrupt cached file
        raise WeightsUnavailableError(f"cached or downloaded {what} weights are invalid ({exc}); {hint}") from None


def fetch_hf_file(repo: str, filenames: str | Sequence[str], what: str, option: str = "--weights",
                  hint: str | None = None) -> str:
    """The first of ``filenames`` the Hugging Face hub has for ``repo``, through its cache (never the network
    when offline); its local path. ``hint`` replaces the default advice in the error message."""
    from huggingface_hub import constants, hf_hub_download

    filenames = [filenames] if isinstance(filenames, str) else list(filenames)
    failure = ""
    for filename in filenames:
        try:
            return hf_hub_download(repo_id=repo, filename=filename, local_files_only=offline())
        except Exception as exc:  # hub errors: not cached, offline, HTTP, connection
            failure = type(exc).__name__
    how = "are not cached and STYLELAB_OFFLINE is set" if offline() else f"could not be downloaded ({failure})"
    hint = hint or f"put them in the Hugging Face cache ({constants.HF_HUB_CACHE}) or pass {option} PATH"
    raise WeightsUnavailableError(f"pretrained {what} weights from {repo} ({', '.join(filenames)}) {how}; {hint}")


def read_checkpoint(path: str | os.PathLike, what: str) -> Mapping[str, torch.Tensor]:
    """Read a local state-dict checkpoint with clear errors; unwraps {"state_dict": ...} wrappers."""
    path = Path(path)
    if not path.exists():
        raise StylelabError(
            f"--weights {path}: no such file (use 'pretrained', 'random' or the path of a {what} checkpoint)"
        )
    if path.is_dir():
        raise StylelabError(f"--weights {path} is a directory, not a {what} checkpoint")
    if path.stat().st_size == 0:
        raise StylelabError(f"--weights {path} is an empty file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean: not a readable checkpoint
        raise StylelabError(f"--weights {path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StylelabError(f"--weights {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def missing_keys_message(path: str, what: str, expected: list[str], found: list[str]) -> str:
    shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "") if found else "none"
    return f"--weights {path} is not a {what} checkpoint: expected keys like {', '.join(expected)}; found {shown}"
