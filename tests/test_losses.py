"""Losses against the seed's equations 2.1–2.4 computed by hand (loops, float64)."""

import itertools

import pytest
import torch

from stylelab.losses import (
    content_loss, flatten_maps, gram_matrix, normalized_gram, style_layer_loss, style_loss, total_loss,
    total_variation,
)


def test_gram_matches_eq_2_2_by_hand():
    f = torch.randn(2, 3, 5, dtype=torch.float64)
    g = gram_matrix(f)
    assert g.shape == (2, 3, 3)
    for b, i, j in itertools.product(range(2), range(3), range(3)):
        by_hand = sum(f[b, i, k] * f[b, j, k] for k in range(5))
        assert g[b, i, j].item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_gram_is_symmetric_positive_semidefinite():
    g = gram_matrix(torch.randn(1, 6, 20, dtype=torch.float64))
    torch.testing.assert_close(g, g.transpose(1, 2), rtol=1e-13, atol=1e-13)
    assert torch.linalg.eigvalsh(g[0]).min() > -1e-9


def test_flatten_maps_shape():
    f = flatten_maps(torch.randn(2, 4, 3, 5))
    assert f.shape == (2, 4, 15)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        flatten_maps(torch.randn(4, 3, 5))


def test_channels_last_maps_flatten_to_a_view_and_their_gram_gradient_keeps_the_layout():
    maps = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    nhwc = maps.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    f = flatten_maps(nhwc)
    assert f.data_ptr() == nhwc.data_ptr() and f.stride(1) == 1  # a view, channels fastest: no copy
    torch.testing.assert_close(f, maps.flatten(2), rtol=0, atol=0)
    target = torch.randn(2, 4, 4, dtype=torch.float64)
    (normalized_gram(f) * target).sum().backward()
    plain = maps.clone().requires_grad_(True)
    (gram_matrix(plain.flatten(2)) / 15 * target).sum().backward()  # autograd's own derivative of F·Fᵀ/M
    torch.testing.assert_close(nhwc.grad, plain.grad, rtol=1e-12, atol=1e-12)
    assert nhwc.grad.is_contiguous(memory_format=torch.channels_last)  # handed back in the network's layout
    assert torch.autograd.gradcheck(lambda x: normalized_gram(flatten_maps(x)),
                                    (maps[:1, :3].contiguous(memory_format=torch.channels_last).requires_grad_(True),))


def test_content_loss_matches_eq_2_1_by_hand():
    f, p = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    loss = content_loss(f, p)
    for b in range(2):
        by_hand = 0.5 * sum((f[b, i, y, x] - p[b, i, y, x]) ** 2
                            for i, y, x in itertools.product(range(3), range(4), range(4)))
        assert loss[b].item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert content_loss(f, f).abs().max() == 0


def test_style_layer_loss_matches_eq_2_3_by_hand():
    n, m = 3, 7
    fx, fa = torch.randn(1, n, m, dtype=torch.float64), torch.randn(1, n, m, dtype=torch.float64)
    g, a = gram_matrix(fx), gram_matrix(fa)
    by_hand = sum((g[0, i, j] - a[0, i, j]) ** 2 for i in range(n) for j in range(n)) / (4 * n**2 * m**2)
    assert style_layer_loss(g, a, n, m).item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_normalized_gram_gives_eq_2_3_when_sizes_match():
    n, m = 4, 9
    fx, fa = torch.randn(2, n, m, dtype=torch.float64), torch.randn(1, n, m, dtype=torch.float64)
    exact = style_layer_loss(gram_matrix(fx), gram_matrix(fa), n, m)
    via_normalized = style_layer_loss(normalized_gram(fx), normalized_gram(fa), n, 1)
    torch.testing.assert_close(exact, via_normalized, rtol=1e-12, atol=0)


def test_style_loss_is_weighted_sum_and_total_is_eq_2_4():
    e = {"a": torch.tensor([2.0]), "b": torch.tensor([3.0])}
    s = style_loss(e, {"a": 0.5, "b": 2.0})
    assert s.item() == pytest.approx(0.5 * 2 + 2 * 3)
    assert total_loss(torch.tensor([4.0]), s, alpha=1e-3, beta=10.0).item() == pytest.approx(1e-3 * 4 + 10 * 7)
    with pytest.raises(ValueError, match="no weight"):
        style_loss(e, {"a": 1.0})


def test_shape_mismatches_are_rejected():
    with pytest.raises(ValueError):
        content_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError):
        style_layer_loss(torch.zeros(1, 3, 3), torch.zeros(1, 4, 4), 3, 1)
    with pytest.raises(ValueError, match=r"\(B, N, M\)"):
        gram_matrix(torch.zeros(3, 3))


def test_total_variation_by_hand():
    img = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    dx = sum((img[0, c, y, x + 1] - img[0, c, y, x]) ** 2 for c in range(2) for y in range(3) for x in range(3)) / 18
    dy = sum((img[0, c, y + 1, x] - img[0, c, y, x]) ** 2 for c in range(2) for y in range(2) for x in range(4)) / 16
    assert total_variation(img).item() == pytest.approx((dx + dy).item(), rel=1e-12)
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0


def test_softmax_transform_per_feature_map_by_hand():
    from stylelab.losses import softmax_transform

    maps = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    out = softmax_transform(maps)
    b, c = 1, 2
    e = torch.exp(maps[b, c])
    torch.testing.assert_close(out[b, c], e / e.sum() * 20)  # softmax over the 4·5 positions, times M
    torch.testing.assert_close(out.mean((2, 3)), torch.ones(2, 3, dtype=torch.float64))
    tokens = torch.randn(2, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(softmax_transform(tokens), torch.softmax(tokens, 1) * 7)  # over tokens per channel
    with pytest.raises(ValueError):
        softmax_transform(torch.zeros(3, 3))
