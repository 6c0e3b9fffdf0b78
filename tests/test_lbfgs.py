"""The batched L-BFGS against torch.optim.LBFGS, which it must reproduce image by image."""

import pytest
import torch

from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.images import resize
from stylelab.lbfgs import BatchedLBFGS
from stylelab.optimize import LossSpec, StyleObjective
from stylelab.samples import sample_content, sample_style


def _torch_lbfgs(x0, loss_and_grad, iterations, history):
    """torch's L-BFGS on one problem: losses at every evaluation and the last x evaluated."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=iterations, max_eval=iterations, tolerance_grad=-1,
                            tolerance_change=-1, history_size=history)
    losses = []

    def closure():
        loss, grad = loss_and_grad(x.detach(), len(losses))
        x.grad = grad.clone()
        losses.append(loss)
        return torch.as_tensor(loss)

    opt.step(closure)
    return torch.tensor([float(v) for v in losses], dtype=torch.float64), x.detach()


def _ours(x0, loss_and_grad, iterations, history):
    x = x0.clone()
    opt = BatchedLBFGS(x, history=history)
    losses = []
    for i in range(iterations):
        loss, grad = loss_and_grad(x, i)
        losses.append(loss)
        if i < iterations - 1:
            opt.step(grad)
    return torch.stack(losses), x, opt


def _quartic(a, c):
    def loss_and_grad(x, _):  # per row: ½ xᵀAx + Σx⁴/4 - c·x; convex
        x = x.detach().requires_grad_(True)
        loss = 0.5 * (x @ a * x).sum(-1) + x.pow(4).sum(-1) / 4 - (c * x).sum(-1)
        loss.sum().backward()
        return loss.detach(), x.grad
    return loss_and_grad


def test_matches_torch_per_image_with_the_history_ring_wrapping_around():
    torch.manual_seed(0)
    n, batch, iterations, history = 12, 3, 40, 5  # 40 iterations through a 5-pair ring
    a = torch.randn(n, n, dtype=torch.float64)
    a = a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    c = torch.randn(batch, n, dtype=torch.float64)
    x0 = torch.randn(batch, n, dtype=torch.float64)
    ours, x, _ = _ours(x0, _quartic(a, c), iterations, history)
    for b in range(batch):
        one = _quartic(a, c[b:b + 1])
        losses, xb = _torch_lbfgs(x0[b], lambda x, i: tuple(v[0] for v in one(x.unsqueeze(0), i)), iterations,
                                  history)
        assert len(losses) == iterations
        torch.testing.assert_close(ours[:, b], losses, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x[b], xb, rtol=0, atol=1e-6)
    assert ours[-1].max() < ours[0].min()  # it did optimize


def test_pairs_without_curvature_are_skipped_as_torch_skips_them():
    """Scripted gradients (independent of x) make y·s ≤ 0 often; the steps must still equal torch's."""
    torch.manual_seed(1)
    n, iterations = 8, 30
    script = torch.randn(iterations, n, dtype=torch.float64)
    script[5] = script[4]  # y = 0 exactly
    ours, x, opt = _ours(torch.zeros(1, n, dtype=torch.float64),
                         lambda x, i: (torch.tensor([float(-i)], dtype=torch.float64), script[i:i + 1]),
                         iterations, history=50)
    assert (opt.rho[0, :opt.count] == 0).sum() >= 3  # the case under test happened
    _, x_torch = _torch_lbfgs(torch.zeros(n, dtype=torch.float64),
                              lambda x, i: (float(-i), script[i]), iterations, history=50)
    torch.testing.assert_close(x[0], x_torch, rtol=1e-9, atol=1e-9)


def test_a_batch_equals_its_images_run_alone_on_the_vgg19_objective():
    """float64, so that equality is exact up to summation order (in fp32 L-BFGS amplifies rounding)."""
    net = create_backbone("vgg19", "random").double()
    content_layers, style_layers = resolve_layers(net, None, None)
    spec = LossSpec(content_layers, style_layers, 1.0, 1e3)
    content = resize(sample_content(), (32, 48)).double()
    contents = torch.cat([content, content.flip(-1)])
    style = resize(sample_style(), (32, 48)).double()

    def run(images, iterations=6):
        objective = StyleObjective(net, images, [style], [1.0], spec)

        def loss_and_grad(x, _):
            x = x.detach().requires_grad_(True)
            total, parts = objective(x)
            total.backward()
            return parts[:, 0], x.grad
        return _ours(images, loss_and_grad, iterations, history=100)[0]

    together = run(contents)
    torch.testing.assert_close(together[:, 0], run(contents[:1])[:, 0], rtol=1e-11, atol=0)
    torch.testing.assert_close(together[:, 1], run(contents[1:])[:, 0], rtol=1e-11, atol=0)
    assert together[-1].max() < 0.5 * together[0].min()


def test_a_step_never_reads_a_tensor_value_on_the_host():
    """On meta tensors (no values) any .item(), bool(tensor) or host copy raises: torch's L-BFGS does."""
    x = torch.empty(2, 3, 4, 4, device="meta")
    opt = BatchedLBFGS(x, history=3)
    for _ in range(6):  # first step, filling the ring, wrapping around
        opt.step(torch.empty_like(x))
    p = torch.nn.Parameter(torch.empty(3, device="meta"))
    with pytest.raises(RuntimeError, match="meta"):
        torch.optim.LBFGS([p]).step(lambda: (setattr(p, "grad", torch.empty_like(p)), p.sum())[1])


def test_history_must_be_positive():
    with pytest.raises(ValueError, match="history"):
        BatchedLBFGS(torch.zeros(1, 3), history=0)


def _quadratic(a, c, scale):
    def loss_and_grad(x, _):  # per row: scale · (½ xᵀAx - c·x), minimized at A⁻¹c whatever the scale
        x = x.detach().requires_grad_(True)
        loss = scale * (0.5 * (x @ a * x).sum(-1) - (c * x).sum(-1))
        loss.sum().backward()
        return loss.detach(), x.grad
    return loss_and_grad


def _spd(n, seed):
    torch.manual_seed(seed)
    a = torch.randn(n, n, dtype=torch.float64)
    return a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64), torch.randn(1, n, dtype=torch.float64)


def _run(x0, loss_and_grad, iterations, **options):
    x, losses = x0.clone(), []
    opt = BatchedLBFGS(x, history=10, **options)
    for i in range(iterations):
        loss, grad = loss_and_grad(x, i)
        losses.append(float(loss[0]))
        opt.step(grad)
    return x, losses, opt


def test_the_scaled_curvature_test_takes_the_same_steps_as_torch_where_both_keep_every_pair():
    a, c = _spd(10, 2)
    x0 = torch.zeros(1, 10, dtype=torch.float64)
    x_torch, losses_torch, opt = _run(x0, _quadratic(a, c, 1.0), 8)  # 7 pairs, before it has converged
    assert opt.count == 7 and bool((opt.rho[0, :7] > 0).all())  # every pair kept by torch's test
    x_scaled, losses_scaled, _ = _run(x0, _quadratic(a, c, 1.0), 8, curvature="scaled")
    assert losses_scaled == losses_torch and torch.equal(x_scaled, x_torch)


def test_a_small_loss_stalls_under_torchs_threshold_and_converges_under_the_scaled_test():
    """The loss ×1e-9: torch's y·s > 1e-10 refuses every pair, so each step is -g (a crawl); the relative
    test keeps them and reaches the minimizer, checked against a float64 solve."""
    a, c = _spd(10, 3)
    x0 = torch.zeros(1, 10, dtype=torch.float64)
    solution = torch.linalg.solve(a, c[0])
    small = _quadratic(a, c, 1e-9)
    x_torch, losses_torch, opt = _run(x0, small, 40)
    assert int((opt.rho[0] != 0).sum()) == 0  # every pair refused
    assert (x_torch[0] - solution).norm() > 0.99 * solution.norm()  # it has hardly moved
    x_scaled, losses_scaled, _ = _run(x0, small, 40, curvature="scaled")
    torch.testing.assert_close(x_scaled[0], solution, rtol=1e-6, atol=1e-8)
    assert losses_scaled[-1] < losses_torch[-1]


def test_the_curvature_test_is_checked():
    with pytest.raises(ValueError, match="curvature must be one of scaled, torch, got 'loose'"):
        BatchedLBFGS(torch.zeros(1, 3), curvature="loose")
