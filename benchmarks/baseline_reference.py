"""A baseline that imitates the *structure* of the papers' public student-teacher code.

This is not a copy of that code (Arbel et al. 2019, "Maximum Mean Discrepancy Gradient Flow",
student-teacher experiment; the DrMMD paper reuses it): it is written here from its description,
to measure what the package's closed-form, tensor-of-particles implementation buys over the
usual PyTorch way of writing the same training loop. The habits it imitates, on purpose:

* a per-sample :class:`torch.utils.data.Dataset` whose ``__getitem__`` returns one (x, y) pair,
  read through ``DataLoader(batch_size=100, shuffle=True)`` (collation of 100 tensors per batch);
* a dense student as an ``nn.Module``: ``nn.Linear(d_in, N*H, bias=False)`` + relu, then
  ``nn.Linear(N*H, N, bias=False)``, quadexp activation exp(-u^2 / sigma^2) with sigma = 2, and
  the output is the mean over the N outputs (the package's ``readout="dense"``, ``d_out=1``);
* ``loss.backward()`` through autograd and a manual parameter update under ``torch.no_grad()``;
* noise injection through a perturbed *copy* of the network (forward at the copy, residual from
  the clean network); diffusion adds the noise to the weights in place;
* kernel Sobolev descent builds the Jacobian J row by row with one backward pass per sample, then
  A = J J^T / (N B) + eps I and ``torch.linalg.solve``.

The effective steps are those of ``studentteacher/updates/`` (the package's surrogate S = sum_i (1/B) sum_b
rho_b phi_i(x_b), theta <- theta - lr grad S), written in the reference code's terms:

=================  ==============================================================================
rule               baseline step (f = network output = (1/N) sum_i phi_i, r = f - y)
=================  ==============================================================================
sgd                theta -= lr (N/4) grad MMD2_hat,  MMD2_hat = mean_b r_b^2
noise_injection    theta -= lr (N/2) grad_{theta'} mean_b r_b f'(x_b), f' the perturbed copy
diffusion          theta += beta u; theta -= lr (N/2) grad MMD2_hat at the noised weights
drmmd              theta -= lr N grad mean_b rho_b f(x_b), rho the DrMMD weights (detached)
ksd                theta -= lr (1/B) J^T alpha, alpha = (J J^T / (N B) + eps I)^{-1} r
=================  ==============================================================================

(grad S = N grad mean_b rho_b f(x_b), since f is the mean of the N features.)
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader

SIGMA = 2.0
RULES = ("sgd", "noise_injection", "diffusion", "ksd", "drmmd")


class TeacherDataset(torch.utils.data.Dataset):
    """Per-sample dataset: inputs ``x: [n, d]`` and teacher labels ``y: [n, 1]``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class QuadExp(nn.Module):
    def forward(self, u):
        return torch.exp(-(u**2) / SIGMA**2)


class Student(nn.Module):
    """Dense two-layer student: Linear(d, N*H) + relu, Linear(N*H, N), quadexp, mean over N."""

    def __init__(self, d_in: int, n_particles: int, hidden: int):
        super().__init__()
        self.n_particles = n_particles
        self.linear1 = nn.Linear(d_in, n_particles * hidden, bias=False)
        self.linear2 = nn.Linear(n_particles * hidden, n_particles, bias=False)
        self.activation = QuadExp()

    def features(self, x):
        return self.activation(self.linear2(torch.relu(self.linear1(x))))  # (B, N)

    def forward(self, x):
        return self.features(x).mean(1, keepdim=True)  # (B, 1)


def student_from_package(params: dict[str, torch.Tensor]) -> Student:
    """A :class:`Student` holding the package's dense-readout particles (W [N,H,d], V [N,1,N*H])."""
    weight_w, weight_v = params["W"], params["V"]
    n, h, d = weight_w.shape
    if weight_v.shape != (n, 1, n * h) or set(params) != {"W", "V"}:
        raise ValueError("the baseline supports the dense readout with d_out = 1 and no biases")
    student = Student(d, n, h).to(dtype=weight_w.dtype)
    with torch.no_grad():
        student.linear1.weight.copy_(weight_w.reshape(n * h, d))
        student.linear2.weight.copy_(weight_v.reshape(n, n * h))
    return student


def student_to_package(student: Student) -> dict[str, torch.Tensor]:
    """The baseline's weights in the package's layout."""
    n = student.n_particles
    w1 = student.linear1.weight.detach()
    return {"W": w1.reshape(n, -1, w1.shape[1]).clone(), "V": student.linear2.weight.detach().reshape(n, 1, -1).clone()}


class ReferenceTrainer:
    """The training loop in the reference code's style for one ``rule`` of RULES."""

    def __init__(
        self,
        student: Student,
        x: torch.Tensor,
        y: torch.Tensor,
        rule: str,
        lr: float = 0.1,
        noise_level: float = 1.0,
        lmbda: float = 0.1,
        ksd_reg: float = 1e-6,
        batch_size: int = 100,
        seed: int = 0,
    ):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
        self.student, self.rule = student, rule
        self.lr, self.noise_level, self.lmbda, self.ksd_reg = lr, noise_level, lmbda, ksd_reg
        self.n_particles = student.n_particles
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(TeacherDataset(x, y), batch_size=batch_size, shuffle=True, generator=self.generator)

    # -------------------------------------------------------------- helpers
    def _noise_like(self, p):
        return torch.randn(p.shape, generator=self.generator, dtype=p.dtype)

    def _apply(self, params, grads, scale):
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(self.lr * scale * g)

    # -------------------------------------------------------------- one step per rule
    def step(self, x, y) -> float:
        student, n = self.student, self.n_particles
        params = list(student.parameters())
        if self.rule == "sgd":
            student.zero_grad()
            loss = ((student(x) - y) ** 2).mean()
            loss.backward()
            self._apply(params, [p.grad for p in params], n / 4)
        elif self.rule == "noise_injection":
            with torch.no_grad():
                out = student(x)
                residual = out - y
            noisy = copy.deepcopy(student)
            with torch.no_grad():
                for p in noisy.parameters():
                    p.add_(self.noise_level * self._noise_like(p))
            surrogate = (residual * noisy(x)).mean()
            surrogate.backward()
            self._apply(params, [p.grad for p in noisy.parameters()], n / 2)
            loss = (residual**2).mean()
        elif self.rule == "diffusion":
            with torch.no_grad():
                for p in params:
                    p.add_(self.noise_level * self._noise_like(p))
            student.zero_grad()
            loss = ((student(x) - y) ** 2).mean()
            loss.backward()
            self._apply(params, [p.grad for p in params], n / 2)
        elif self.rule == "drmmd":
            student.zero_grad()
            out = student(x)
            lam = self.lmbda
            f_s = out.detach()
            a_t = (y * y).mean()
            c_t = (y * f_s).mean()
            rho = (1 + lam) / lam * (f_s - y * (lam + c_t) / (a_t + lam))
            loss = (1 + lam) / lam * (((f_s - y) ** 2).mean() - (c_t - a_t) ** 2 / (a_t + lam))
            (rho * out).mean().backward()
            self._apply(params, [p.grad for p in params], n)
        else:  # ksd
            batch = x.shape[0]
            out = student(x)  # (B, 1)
            total = out[:, 0] * n  # sum_i phi_i(x_b): (B,)
            sizes = [p.numel() for p in params]
            jacobian = torch.empty(batch, sum(sizes), dtype=out.dtype)  # (B, P)
            for b in range(batch):  # one backward pass per sample
                grads = torch.autograd.grad(total[b], params, retain_graph=b < batch - 1)
                jacobian[b] = torch.cat([g.reshape(-1) for g in grads])
            residual = out.detach() - y  # (B, 1)
            system = jacobian @ jacobian.T / (n * batch) + self.ksd_reg * torch.eye(batch, dtype=out.dtype)
            alpha = torch.linalg.solve(system, residual)  # (B, 1)
            direction = (jacobian.T @ alpha)[:, 0] / batch  # (P,)
            self._apply(params, [g.view_as(p) for p, g in zip(params, torch.split(direction, sizes))], 1.0)
            loss = (residual**2).mean()
        return float(loss.detach())

    def run_epoch(self, max_batches: int | None = None) -> float:
        """One shuffled pass (or its first ``max_batches`` batches); returns the mean batch loss."""
        total, count = 0.0, 0
        for x, y in self.loader:
            total += self.step(x, y)
            count += 1
            if max_batches is not None and count >= max_batches:
                break
        return total / count
