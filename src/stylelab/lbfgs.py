"""L-BFGS for a batch of independent images, with no host synchronization.

The same algorithm as ``torch.optim.LBFGS`` without line search (one loss evaluation per iteration,
first step scaled by min(1, 1/‖g‖₁), then steps of ``lr``), run for every image of a batch at once
with its own history, curvature scale and step. Two departures, both for speed:

* The two-loop recursion is not run as 2·m dot products and axpys (4·m small kernels per iteration,
  m = history length): its two loops are triangular systems in the m×m matrices of products s_i·y_j and
  y_i·y_j, which are kept up to date as pairs arrive. An iteration reads the history four times (S and Y
  twice each, as torch's loops do) in four batched matrix products, plus two tiny triangular solves,
  whatever m is. Same arithmetic, other summation order.
* No Python branch depends on a tensor value (torch's needs ``float(loss)`` and ``ys > 1e-10``): a pair
  with too little curvature (y·s ≤ 1e-10) is stored with ρ = 0, which removes it from the recursion
  exactly as torch skips it, but it still occupies a slot of the history (torch would keep an older pair).

One departure for quality, opt-in here (``curvature="scaled"``; ``transfer`` uses it by default): torch keeps a
pair when y·s > 1e-10, an absolute threshold, so a problem whose loss is small enough (a large picture under a
normalized Gram loss, a random-init network) has every pair refused: the step stays -g with t = 1, a gradient
descent so slow that 500 evaluations barely move the picture. "scaled" keeps a pair when y·s > ε·y·y (ε the
dtype's machine epsilon), L-BFGS-B's relative test (Byrd, Lu, Nocedal & Zhu 1995): it refuses a pair only when
the step's inverse-curvature scale y·s / y·y is below ε. It is not scale-free (a loss ×c moves y·s by c and the
bar by c²), but a smaller loss only makes it more lenient, so it never refuses pairs for being small.

Shapes: x is (B, ...) and every image of the batch is one problem of N = x[0].numel() unknowns.
"""

from __future__ import annotations

import torch
from torch import Tensor

CURVATURE_EPS = 1e-10  # torch.optim.LBFGS's threshold on y·s
CURVATURE_TESTS = ("scaled", "torch")  # keep a pair when y·s > machine epsilon · y·y / when y·s > 1e-10


class BatchedLBFGS:
    """Call ``step(grad)`` after each evaluation of the loss at ``x``; ``x`` is updated in place."""

    def __init__(self, x: Tensor, lr: float = 1.0, history: int = 100, curvature: str = "torch"):
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        if curvature not in CURVATURE_TESTS:
            raise ValueError(f"curvature must be one of {', '.join(CURVATURE_TESTS)}, got {curvature!r}")
        self.x, self.lr, self.history = x, float(lr), history
        self.scaled = curvature == "scaled"
        b, n = x.shape[0], x[0].numel()
        self.batch, self.n = b, n
        self.count = 0  # pairs stored so far (host-side integer: shapes never depend on tensor values)
        self.prev_grad: Tensor | None = None  # (B, N)
        self.direction: Tensor | None = None  # (B, N)
        self.t: Tensor | None = None  # (B, 1) step of the last update
        self.h_diag = x.new_ones(b, 1)  # (B, 1) initial inverse-Hessian scale
        self.s = self.y = None  # (B, m, N) ring buffers, allocated at the second step
        self.sy = x.new_zeros(b, history, history)  # (B, m, m): sy[:, i, j] = s_i · y_j (physical slots)
        self.yy = x.new_zeros(b, history, history)  # (B, m, m): yy[:, i, j] = y_i · y_j
        self.rho = x.new_zeros(b, history)  # (B, m): 1 / (y_i · s_i), 0 for skipped pairs

    def _start(self) -> int:
        """The physical slot of the oldest pair (slots are filled in order, then reused as a ring)."""
        return self.count % self.history if self.count > self.history else 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        g = grad.reshape(self.batch, self.n)  # (B, N)
        if self.prev_grad is None:  # the first step
            d = -g
            # torch: t = min(1, 1/‖g‖₁)·lr on the first iteration only
            t = torch.clamp(g.abs().sum(1, keepdim=True).reciprocal(), max=1.0) * self.lr
            self.prev_grad = g.clone()
        else:
            d = self._remember_and_direct(g, g - self.prev_grad, self.direction * self.t)
            t = torch.full_like(self.t, self.lr)
            self.prev_grad.copy_(g)
        self.direction, self.t = d, t
        self.x.view(self.batch, self.n).add_(d * t)

    def _remember_and_direct(self, g: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Store the pair (s, y) in the next ring slot, update the products, ρ and the scale; return -H·g.

        The two-loop recursion, oldest pair first (i = 0 … m-1), with q_m = -g:
        loop 1 (newest to oldest): α_i = ρ_i s_i·q_{i+1}, q_i = q_{i+1} - α_i y_i, so
            α_i = ρ_i (s_i·(-g) - Σ_{j>i} α_j s_i·y_j)       i.e. (I + diag(ρ) U) α = ρ ⊙ (S·(-g)).
        loop 2 from r_0 = H₀ q_0, q_0 = -g - Yᵀα: β_i = ρ_i y_i·r_i, r_{i+1} = r_i + (α_i - β_i) s_i, so
        c = α - β solves (I + diag(ρ) L) c = α - ρ ⊙ (Y·r_0) with L_ij = s_j·y_i for j < i, where
        Y·r_0 = H₀ (-Y·g - YYᵀ α); and d = r_0 + Sᵀc = -H₀ g + Yᵀ(-H₀ α) + Sᵀc.
        """
        if self.s is None:
            self.s = y.new_zeros(self.batch, self.history, self.n)
            self.y = y.new_zeros(self.batch, self.history, self.n)
        p = self.count % self.history
        self.s[:, p].copy_(s)
        self.y[:, p].copy_(y)
        self.count += 1
        m, k = min(self.count, self.history), self._start()
        slots_s, slots_y = self.s[:, :m], self.y[:, :m]  # (B, m, N) views in physical slot order: never copied
        # One pass over each of S and Y for every product this iteration needs.
        # (the vectors stacked as rows and transposed: BLAS reads them faster than an (N, k) column block)
        s_dots = torch.bmm(slots_s, torch.stack([y, g], dim=1).transpose(1, 2))  # (B, m, 2): s_i·y_new, s_i·g
        y_dots = torch.bmm(slots_y, torch.stack([s, y, g], dim=1).transpose(1, 2))  # (B, m, 3): y_i·s, ·y, ·g
        self.sy[:, p, :m] = y_dots[..., 0]  # s_p · y_j
        self.sy[:, :m, p] = s_dots[..., 0]  # s_i · y_p
        self.yy[:, p, :m] = y_dots[..., 1]
        self.yy[:, :m, p] = y_dots[..., 1]
        ys, yy = self.sy[:, p, p], self.yy[:, p, p]  # (B,)
        ok = ys > (torch.finfo(ys.dtype).eps * yy if self.scaled else CURVATURE_EPS)
        self.rho[:, p] = torch.where(ok, ys.reciprocal(), torch.zeros_like(ys))
        self.h_diag = torch.where(ok.unsqueeze(1), (ys / yy).unsqueeze(1), self.h_diag)

        def logical(t: Tensor) -> Tensor:  # small (B, m, ·) tensors: physical -> oldest-first order
            return torch.roll(t, -k, dims=1) if k else t

        def physical(t: Tensor) -> Tensor:
            return torch.roll(t, k, dims=1) if k else t

        def square(t: Tensor) -> Tensor:  # (B, m, m) physical -> logical
            return torch.roll(t, (-k, -k), dims=(1, 2)) if k else t

        sy, yy_all = square(self.sy[:, :m, :m]), square(self.yy[:, :m, :m])
        rho = logical(self.rho[:, :m].unsqueeze(2))  # (B, m, 1)
        h = self.h_diag.unsqueeze(2)  # (B, 1, 1)
        eye = torch.eye(m, dtype=g.dtype, device=g.device)
        alpha = torch.linalg.solve_triangular(eye + rho * torch.triu(sy, diagonal=1), -rho * logical(s_dots[..., 1:]),
                                              upper=True, unitriangular=True)  # (B, m, 1)
        y_r0 = h * (-logical(y_dots[..., 2:]) - torch.bmm(yy_all, alpha))
        lower = torch.tril(sy.transpose(1, 2), diagonal=-1)
        c = torch.linalg.solve_triangular(eye + rho * lower, alpha - rho * y_r0, upper=False, unitriangular=True)
        d = -self.h_diag * g
        d = d + torch.bmm(physical(-h * alpha).transpose(1, 2), slots_y).squeeze(1)
        return d + torch.bmm(physical(c).transpose(1, 2), slots_s).squeeze(1)
