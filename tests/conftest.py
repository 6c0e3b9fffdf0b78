"""Shared fixtures. Every test runs offline: sockets refuse to connect beyond loopback, torch's cache is private."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No test may touch the network: connections fail loudly, weights load only from a private cache."""

    real_connect, real_create = socket.socket.connect, socket.create_connection

    def is_loopback(address) -> bool:  # the web-page tests talk to their own server and chromedriver
        host = address[0] if isinstance(address, tuple) else address
        return host in ("127.0.0.1", "localhost", "::1")

    def connect(sock, address, *args, **kwargs):
        if not is_loopback(address):
            raise AssertionError(f"a test tried to open a network connection to {address}")
        return real_connect(sock, address, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        if not is_loopback(address):
            raise AssertionError(f"a test tried to open a network connection to {address}")
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setenv("STYLELAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# torch's AMX probe, before the fixture below hides it (tests/test_batch.py checks the real one against the CPU)
REAL_AMX_PROBE = getattr(torch.cpu, "_is_amx_tile_supported", None)


@pytest.fixture(autouse=True)
def no_amx(monkeypatch):
    """precision="auto" is fp32 in every test, whatever CI's CPU: bf16 on AMX would change the arithmetic that tests
    compare with fp32 and float64 references. The tests of ``auto`` itself say AMX is there."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)


def make_rgb(height: int, width: int, seed: int = 0) -> Image.Image:
    """A smooth image with structure (gradients + a disc) and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(12 * x * (seed + 1))], -1)
    img[(x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.05] = (0.9, 0.2, 0.1)
    img += 0.05 * rng.standard_normal(img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def make_stripes(height: int, width: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([np.sin(x / 2.0 + y / 3.0), np.cos(y / 1.5), np.sin((x + y) / 4.0)], -1) * 0.5 + 0.5
    return Image.fromarray((img * 255).astype(np.uint8), "RGB")


@pytest.fixture
def content_path(tmp_path):
    path = tmp_path / "content.png"
    make_rgb(48, 64).save(path)
    return path


@pytest.fixture
def style_path(tmp_path):
    path = tmp_path / "style.jpg"
    make_stripes(64, 64).save(path, quality=95)
    return path
