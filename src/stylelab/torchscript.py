"""Tensors out of a TorchScript archive without running anything from it.

OpenAI's released CLIP files (RN50.pt, ViT-B-16.pt) are TorchScript archives. TorchScript's own loader would
compile the archive's code/ and call its classes' ``__setstate__``: code from the file. Here the archive's
``data.pkl`` is read by a restricted unpickler instead: it rebuilds tensors and plain containers, turns every
TorchScript class (``__torch__.*``) into an inert record of its state, and refuses any other global. The
code/ folder is never read. The records are then walked into a flat ``{"visual.conv1.weight": tensor}``.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from .errors import StylelabError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


def is_torchscript_archive(path: str | Path) -> bool:
    """TorchScript archives are zip files with a code/ folder or constants.pkl; torch.save's zips have neither."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except OSError:
        return False


class _Record:
    """An inert stand-in for a TorchScript class instance: keeps the pickled state, runs nothing."""

    type_name = ""
    state = None

    def __init__(self, *_args):  # REDUCE / NEWOBJ arguments of a TorchScript object are ignored
        pass

    def __setstate__(self, state) -> None:  # pickle's BUILD calls this instead of the archive's own
        self.state = state


_RECORD_CLASSES: dict[str, type] = {}


def _record_class(type_name: str) -> type:
    if type_name not in _RECORD_CLASSES:  # NEWOBJ needs a class; one inert subclass per TorchScript type
        _RECORD_CLASSES[type_name] = type("TorchScriptRecord", (_Record,), {"type_name": type_name})
    return _RECORD_CLASSES[type_name]


def _storage_marker(name: str):
    return ("storage-dtype", _STORAGE_DTYPES[name])


def _rebuild_tensor(storage: Tensor, offset: int, size, stride, *_ignored) -> Tensor:
    # Departure from torch._utils._rebuild_tensor_v2: requires_grad and backward hooks are dropped.
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _first(value, *_ignored):
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Only tensors, storages, plain containers and inert TorchScript records can be built."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, Tensor] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _record_class(f"{module}.{name}")
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _first,
            ("collections", "OrderedDict"): OrderedDict,
            ("torch.jit._pickle", "restore_type_tag"): _first,
            ("torch.jit._pickle", "build_intlist"): list,
            ("torch.jit._pickle", "build_doublelist"): list,
            ("torch.jit._pickle", "build_boollist"): list,
            ("torch.jit._pickle", "build_tensorlist"): list,
            ("torch.jit._pickle", "build_tensor_from_id"): self._constant_refused,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _storage_marker(name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    @staticmethod
    def _constant_refused(*_args):
        raise pickle.UnpicklingError("refused a tensor constant reference")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], tuple) and pid[1][:1] == ("storage-dtype",) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"refused persistent id {str(pid)[:60]}")
        dtype, key = pid[1][1], pid[2]
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            self.storages[key] = flat.view(dtype) if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]


def _walk(value, prefix: str, out: dict[str, Tensor], depth: int = 0) -> None:
    """Every tensor reachable through records and dicts, named by its attribute path."""
    if depth > 64:  # a crafted archive could nest without end
        raise StylelabError("TorchScript archive nests too deeply")
    if isinstance(value, Tensor):
        out.setdefault(prefix.rstrip("."), value.clone())  # own memory, not a view of the archive's bytes
    elif isinstance(value, _Record):
        _walk(value.state, prefix, out, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _walk(item, f"{prefix}{key}.", out, depth + 1)


def read_torchscript_tensors(path: str | Path) -> dict[str, Tensor]:
    """``{dotted.name: tensor}`` of a TorchScript archive's module attributes (parameters and buffers),
    like the loaded TorchScript module's ``state_dict()``, without executing the archive. Raises ``ValueError``."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(names) != 1:
            raise ValueError("no data.pkl at the archive's top level")
        prefix = names[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist() and \
                archive.read(f"{prefix}byteorder").decode(errors="replace") != sys.byteorder:
            raise ValueError("the archive's byte order is not this machine's")
        try:
            root = _RestrictedUnpickler(archive.read(names[0]), archive, prefix).load()
        except Exception as exc:  # nothing from the file can run, so every failure is a malformed archive
            raise ValueError(str(exc) or type(exc).__name__) from None
    out: dict[str, Tensor] = {}
    _walk(root, "", out)
    return out
