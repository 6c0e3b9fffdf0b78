"""Finding weights: downloads through the libraries' own caches, local checkpoints, and offline mode.

Set ``STYLELAB_OFFLINE=1`` to never touch the network: pretrained weights then load only from the cache,
and a miss is reported at once. Without it, a download is tried only after a quick check (a few seconds)
that the server answers at all, so an offline machine gets one line at once, not minutes of retries.

Messages name the parameter a file came from (``weights=PATH``; ``parameter`` changes it), so that each
front end can word it as its own flag or control.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import urllib.error
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .errors import StylelabError, WeightsUnavailableError
from .torchscript import is_torchscript_archive, read_torchscript_tensors

REACHABLE_TIMEOUT = 3.0  # seconds for the "does the server answer" check before any download


def offline() -> bool:
    return os.environ.get("STYLELAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


_reachable: dict[str, bool] = {}


def server_reachable(url: str, timeout: float = REACHABLE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` s (name lookup included; the
    answer is kept for the process). Name lookups cannot be given a timeout, so the check runs in a thread."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if host not in _reachable:
        answer = [False]

        def probe() -> None:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                answer[0] = True
            except (OSError, AssertionError):  # AssertionError: the test suite's network guard
                pass

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout)
        _reachable[host] = answer[0]
    return _reachable[host]


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and so torchvision) caches downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _random_hint(parameter: str) -> str:
    return f" (or {parameter}=random)" if parameter == "weights" else ""


def fetch_hub_checkpoint(url: str, what: str, parameter: str = "weights") -> Mapping[str, torch.Tensor]:
    """Load a checkpoint through torch.hub's cache (download + hash check on a miss)."""
    filename = os.path.basename(url)
    cached = hub_checkpoint_dir() / filename
    hint = f"put {filename} in {cached.parent} or pass {parameter}=PATH{_random_hint(parameter)}"
    if not cached.exists():
        if offline():
            raise WeightsUnavailableError(f"pretrained {what} weights are not cached and STYLELAB_OFFLINE is set; "
                                          f"{hint}")
        if not server_reachable(url):
            raise WeightsUnavailableError(f"pretrained {what} weights are not cached and "
                                          f"{urllib.parse.urlsplit(url).hostname} cannot be reached; {hint}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torch.hub prints "Downloading: …" on stdout
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True,
                                                      weights_only=True)  # a cached file runs no code either
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsUnavailableError(f"could not download pretrained {what} weights ({reason}); {hint}") from None
    except RuntimeError as exc:  # hash mismatch or a corrupt cached file
        raise WeightsUnavailableError(f"cached or downloaded {what} weights are invalid ({exc}); {hint}") from None


def fetch_hf_file(repo: str, filenames: str | Sequence[str], what: str, parameter: str = "weights",
                  hint: str | None = None) -> str:
    """The first of ``filenames`` the Hugging Face hub has for ``repo``, through its cache (the network only
    when online and the hub answers); its local path. ``hint`` replaces the default advice in the message."""
    from huggingface_hub import constants, hf_hub_download

    filenames = [filenames] if isinstance(filenames, str) else list(filenames)
    local_only = offline() or constants.HF_HUB_OFFLINE or not server_reachable(constants.ENDPOINT)
    failure = ""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry warnings are noise: the one line below says it all
    try:
        for filename in filenames:
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return hf_hub_download(repo_id=repo, filename=filename, local_files_only=local_only)
            except Exception as exc:  # hub errors: not cached, offline, HTTP, connection
                failure = type(exc).__name__
    finally:
        hub_logger.setLevel(level)
    if offline():
        how = "are not cached and STYLELAB_OFFLINE is set"
    elif local_only:
        how = f"are not cached and {urllib.parse.urlsplit(constants.ENDPOINT).hostname} cannot be reached"
    else:
        how = f"could not be downloaded ({failure})"
    hint = hint or f"put them in the Hugging Face cache ({constants.HF_HUB_CACHE}) or pass {parameter}=PATH"
    raise WeightsUnavailableError(f"pretrained {what} weights from {repo} ({', '.join(filenames)}) {how}; {hint}")


def read_checkpoint(path: str | os.PathLike, what: str, parameter: str = "weights") -> dict[str, torch.Tensor]:
    """A local checkpoint's tensors, read without running anything from the file: a TorchScript archive
    (OpenAI's CLIP files) through a restricted reader, a .safetensors file, or a state dict saved by
    ``torch.save`` (``weights_only``); {"state_dict": ...} wrappers and "module." prefixes are removed."""
    path = Path(path)
    shown = f"{parameter}={path}"
    if not path.exists():
        raise StylelabError(f"{shown}: no such file (use pretrained, random or the path of a {what} checkpoint)")
    if path.is_dir():
        raise StylelabError(f"{shown} is a directory, not a {what} checkpoint")
    if not path.is_file():
        raise StylelabError(f"{shown} is not a regular file")
    if path.stat().st_size == 0:
        raise StylelabError(f"{shown} is an empty file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise StylelabError(f"{shown} is not a readable safetensors file ({type(exc).__name__})") from None
    if is_torchscript_archive(path):
        try:
            state = read_torchscript_tensors(path)
        except (ValueError, OSError) as exc:
            raise StylelabError(f"{shown}: cannot read the TorchScript archive ({exc})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and torch errors all mean: not a readable checkpoint
            raise StylelabError(f"{shown} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StylelabError(f"{shown} does not hold a state dict of tensors")
    if not state:
        raise StylelabError(f"{shown} holds no tensors (not a {what} checkpoint)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def missing_keys_message(path: str, what: str, expected: list[str], found: list[str],
                         parameter: str = "weights") -> str:
    shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "") if found else "none"
    return f"{parameter}={path} is not a {what} checkpoint: expected keys like {', '.join(expected)}; found {shown}"
