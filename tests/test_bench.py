"""The benchmark harness runs and reports what it promises (no timing is asserted here)."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_bench_smoke(tmp_path, capsys):
    import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--backbones", "vgg19,clip-rn50", "--sizes", "48", "--iterations", "8", "--repeats", "1",
                       "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["env"]["weights"].startswith("random") and data["env"]["numeric_mode"].startswith("fp32")
    rows = {(r["impl"], r["backbone"]): r for r in data["rows"]}
    assert set(rows) == {("stylelab", "vgg19"), ("reference", "vgg19"), ("stylelab", "clip-rn50")}
    for r in rows.values():
        assert r["ms_per_iteration"] > 0 and r["end_to_end_s"] > 0
    assert rows[("stylelab", "vgg19")]["speedup_vs_reference"] > 0
    assert rows[("stylelab", "vgg19")]["gflop_per_iteration"] > rows[("stylelab", "clip-rn50")]["gflop_per_iteration"]
    assert "vs ref" in capsys.readouterr().out.splitlines()[-4]


def test_reference_loop_reduces_its_loss():
    """The baseline must be a working Gatys loop, or its timings mean nothing."""
    import reference

    features = reference.vgg19_features()
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    model, content_losses, style_losses = reference.build(features, content, style)
    out, evaluations = reference.run(features, content, style, iterations=20)
    assert evaluations >= 20
    model(out)
    after = sum(s.loss for s in style_losses).item()
    model(content)
    before = sum(s.loss for s in style_losses).item()
    assert after < before / 2 and out.shape == content.shape


def test_pyramid_bench_smoke(tmp_path, capsys):
    import pyramid

    assert pyramid.pyramid_scales(1024) == [256, 512, 1024] and pyramid.pyramid_scales(200) == [200]
    out = tmp_path / "pyramid.json"
    assert pyramid.main(["--sizes", "64", "--iterations", "2", "--device", "cpu", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["pyramid"]["scales"] == [64] and row["single"]["iterations_per_scale"] == 2
    assert len(row["pyramid"]["seconds_per_scale"]) == 1 and 0 <= row["single"]["ssim_content"] <= 1
    assert "| 64 | pyramid |" in capsys.readouterr().out
