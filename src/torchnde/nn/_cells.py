"""Recurrent cells that are time discretisations of differential equations.

Every cell is an ``nn.Module`` with one shape of interface, so that one sequence runner
(:func:`~torchnde.nn.run_cell`) drives them all and any torchnde solver can integrate the same
trained cell (:func:`~torchnde.nn.integrate_cell`):

- ``cell.project(u)``: the part of the update that depends on the input alone, for a whole
  sequence at once (one matrix product instead of one per step);
- ``cell.prepare()``: whatever depends on the parameters alone (e.g. the Lipschitz RNN's
  structured matrices), computed once per sequence;
- ``cell.step(state, p, ctx)``: one step of the cell's own scheme from the projected input
  ``p`` (the paper's discrete recurrence);
- ``cell.vector_field(t, state, u)``: the continuous right-hand side ``d state / dt`` with the
  input ``u`` held over the step, in the ``f(t, y, args)`` form of :class:`~torchnde.ODETerm`;
- ``cell.initial_state(batch, like)`` and ``cell.output(state)`` (the hidden vector the
  readout sees).

A state is a tuple of ``(batch, hidden)`` tensors. ``cell(u, state)`` takes one step from a raw
input ``(batch, input_size)``.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "CTRNN",
    "LEM",
    "LTC",
    "AbstractRecurrentCell",
    "CoRNN",
    "LipschitzRNN",
    "NoisyRNN",
    "TanhRNN",
    "perturb_inputs",
    "structured_matrix",
]

State = tuple[torch.Tensor, ...]


def _positive(name: str, value: Any, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}, got {value!r}")
    return float(value)


def _size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


class AbstractRecurrentCell(nn.Module, abc.ABC):
    """Base of the ODE-derived recurrent cells (see the module docstring for the interface).

    Args:
        input_size: channels of the input ``u``.
        hidden_size: units of each state vector.
        dt: the step the discrete recurrence takes per input (the time one input lasts).
    """

    #: names of the state's vectors, in order (the first is the output)
    state_names: tuple[str, ...] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, dt: float):
        super().__init__()
        self.input_size = _size("input_size", input_size)
        self.hidden_size = _size("hidden_size", hidden_size)
        self.dt = _positive("dt", dt)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        """Zeros ``(batch, hidden)`` for every state vector, in ``like``'s dtype and device."""
        zero = like.new_zeros(batch, self.hidden_size)
        return tuple(zero.clone() for _ in self.state_names)

    @abc.abstractmethod
    def project(self, u: torch.Tensor) -> torch.Tensor:
        """The input's share of the update, ``(..., input) -> (..., k·hidden)``."""

    def prepare(self) -> Any:
        """Per-sequence precomputation from the parameters (``None`` unless overridden)."""
        return None

    @abc.abstractmethod
    def step(self, state: State, p: torch.Tensor, ctx: Any = None) -> State:
        """One step of the cell's scheme from ``state`` with projected input ``p``."""

    @abc.abstractmethod
    def vector_field(self, t: torch.Tensor, state: State, u: torch.Tensor) -> State:
        """``d state/dt`` with the raw input ``u`` held constant (``ODETerm`` form)."""

    def output(self, state: State) -> torch.Tensor:
        """The hidden vector a readout sees: the first state vector."""
        return state[0]

    def forward(self, u: torch.Tensor, state: State | None = None) -> State:
        """One step from raw input ``u: (batch, input)``; ``state`` defaults to zeros."""
        if state is None:
            state = self.initial_state(u.shape[0], u)
        return self.step(state, self.project(u), self.prepare())

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, dt={self.dt:g}"


class TanhRNN(AbstractRecurrentCell):
    """The plain ``h_n = tanh(W h_{n-1} + V u_n + b)`` (Elman) recurrence, as a baseline. Its
    "vector field" is ``(tanh(W h + V u + b) - h) / dt``, whose Euler step of size ``dt`` is the
    recurrence."""

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0):
        super().__init__(input_size, hidden_size, dt)
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, u):
        return self.inp(u)

    def step(self, state, p, ctx=None):
        (h,) = state
        return (torch.tanh(torch.addmm(p, h, self.rec.weight.T)),)

    def vector_field(self, t, state, u):
        (h,) = state
        return ((torch.tanh(self.rec(h) + self.inp(u)) - h) / self.dt,)


class CoRNN(AbstractRecurrentCell):
    """Coupled oscillatory RNN (Rusch & Mishra, *Coupled oscillatory recurrent neural network
    (coRNN): an accurate and (gradient) stable architecture for learning long time
    dependencies*, ICLR 2021).

    A network of damped, driven nonlinear oscillators,

        y'' = tanh(W y + 𝒲 y' + V u + b) - γ y - ε y',

    written for ``(y, z = y')`` and stepped by the paper's IMEX scheme (its eq. 3): the damping
    ``ε z`` implicit, everything else explicit, then ``y`` moved with the new velocity,

        z_n = (z_{n-1} + Δt [tanh(W y_{n-1} + 𝒲 z_{n-1} + V u_n + b) - γ y_{n-1}]) / (1 + Δt ε)
        y_n = y_{n-1} + Δt z_n.

    The hidden states and their gradients stay bounded for ``Δt`` small (the paper's
    propositions), which is what lets it learn dependencies thousands of steps long.

    Args:
        input_size, hidden_size: as for every cell.
        dt: Δt; the paper uses 0.016–0.076 (e.g. 0.042 on psMNIST).
        gamma: γ, the restoring force (stiffness of each oscillator).
        epsilon: ε, the damping.
    """

    state_names = ("y", "z")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dt: float = 0.042,
        gamma: float = 2.7,
        epsilon: float = 4.7,
    ):
        super().__init__(input_size, hidden_size, dt)
        self.gamma = _positive("gamma", gamma, zero=True)
        self.epsilon = _positive("epsilon", epsilon, zero=True)
        self.inp = nn.Linear(input_size, hidden_size)
        self.w_y = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_z = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, u):
        return self.inp(u)

    def step(self, state, p, ctx=None):
        y, z = state
        drive = torch.tanh(torch.addmm(torch.addmm(p, y, self.w_y.weight.T), z, self.w_z.weight.T))
        dt = self.dt
        z = (z + dt * (drive - self.gamma * y)) / (1.0 + dt * self.epsilon)
        return (y + dt * z, z)

    def vector_field(self, t, state, u):
        y, z = state
        drive = torch.tanh(self.w_y(y) + self.w_z(z) + self.inp(u))
        return (z, drive - self.gamma * y - self.epsilon * z)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:g}, epsilon={self.epsilon:g}"


class LEM(AbstractRecurrentCell):
    """Long Expressive Memory (Rusch, Mishra, Erichson & Mahoney, *Long expressive memory for
    sequence modeling*, ICLR 2022).

    Two coupled gated ODEs whose time constants are learned per unit and per time,

        z' = τ(y, u) ⊙ (tanh(W_z y + V_z u + b_z) - z),    τ = sigmoid(W_1 y + V_1 u + b_1)
        y' = τ̄(y, u) ⊙ (tanh(W_y z + V_y u + b_y) - y),    τ̄ = sigmoid(W_2 y + V_2 u + b_2)

    stepped as in the paper (its eq. 3): ``z`` first with the gates at ``y_{n-1}``, then ``y``
    with the new ``z_n`` (a first-order IMEX/symplectic-Euler splitting),

        Δt_n = Δt·τ,  z_n = (1 - Δt_n) ⊙ z_{n-1} + Δt_n ⊙ tanh(W_z y_{n-1} + V_z u_n + b_z)
        Δt̄_n = Δt·τ̄,  y_n = (1 - Δt̄_n) ⊙ y_{n-1} + Δt̄_n ⊙ tanh(W_y z_n + V_y u_n + b_y).

    The gates make ``Δt_n`` a learned, input-dependent step per unit: multiscale memory.

    Args:
        input_size, hidden_size: as for every cell.
        dt: Δt, the largest step a gate can open to (the paper: 1 on most tasks).
    """

    state_names = ("y", "z")

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0):
        super().__init__(input_size, hidden_size, dt)
        self.inp = nn.Linear(input_size, 4 * hidden_size)  # V_1, V_2, V_z, V_y and the biases
        self.rec_y = nn.Linear(hidden_size, 3 * hidden_size, bias=False)  # W_1, W_2, W_z
        self.rec_z = nn.Linear(hidden_size, hidden_size, bias=False)  # W_y
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project(self, u):
        return self.inp(u)

    def step(self, state, p, ctx=None):
        y, z = state
        n = self.hidden_size
        gates = torch.addmm(p[..., : 3 * n], y, self.rec_y.weight.T)
        dt1 = self.dt * torch.sigmoid(gates[..., :n])
        dt2 = self.dt * torch.sigmoid(gates[..., n : 2 * n])
        z = z + dt1 * (torch.tanh(gates[..., 2 * n :]) - z)
        target = torch.tanh(torch.addmm(p[..., 3 * n :], z, self.rec_z.weight.T))
        return (y + dt2 * (target - y), z)

    def vector_field(self, t, state, u):
        y, z = state
        n = self.hidden_size
        p = self.inp(u)
        gates = p[..., : 3 * n] + self.rec_y(y)
        tau = torch.sigmoid(gates[..., :n])
        tau_bar = torch.sigmoid(gates[..., n : 2 * n])
        dz = tau * (torch.tanh(gates[..., 2 * n :]) - z)
        dy = tau_bar * (torch.tanh(p[..., 3 * n :] + self.rec_z(z)) - y)
        return (dy, dz)


def structured_matrix(m: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """The Lipschitz RNN's hidden-to-hidden matrix ``(1 - β)(M + Mᵀ) + β(M - Mᵀ) - γI``.

    Its symmetric part is ``(1 - β)(M + Mᵀ) - γI`` and its skew part ``β(M - Mᵀ)``: ``β`` moves
    the matrix from symmetric (β = 0) to skew-symmetric (β = 1), where every eigenvalue has real
    part exactly ``-γ``; for any β the eigenvalues of the symmetric part lie in
    ``(1 - β)·[λ_min(M + Mᵀ), λ_max(M + Mᵀ)] - γ`` (Erichson et al. 2021, section 3).
    """
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    return (1 - beta) * (m + m.T) + beta * (m - m.T) - gamma * eye


_SCHEMES = ("euler", "rk2")


class LipschitzRNN(AbstractRecurrentCell):
    """Lipschitz recurrent network (Erichson, Azencot, Queiruga, Hodgkinson & Mahoney,
    *Lipschitz recurrent neural networks*, ICLR 2021).

        h' = A h + tanh(W h + U u + b),
        A = (1 - β)(M_A + M_Aᵀ) + β(M_A - M_Aᵀ) - γ_A I,   W likewise from M_W and γ_W,

    (:func:`structured_matrix`), stepped by forward Euler or by the second-order Runge–Kutta
    method of Heun (``scheme="rk2"``) with the input held over the step. The structure bounds
    the symmetric parts of ``A`` and ``W`` by ``β`` and ``γ``, which bounds the hidden
    dynamics' Lipschitz constant and keeps them stable.

    Args:
        input_size, hidden_size: as for every cell.
        dt: the step (the paper: 0.03–0.04 on pixel MNIST).
        beta: β in [0, 1] (the paper: 0.75–0.8).
        gamma: γ_A (the paper: 0.001).
        gamma_w: γ_W (default: ``gamma``).
        scheme: ``"euler"`` or ``"rk2"`` (Heun).
        init_std: the standard deviation of ``M``'s entries times ``hidden_size`` (the paper
            draws ``M ~ N(0, init_std / hidden)``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dt: float = 0.03,
        beta: float = 0.75,
        gamma: float = 0.001,
        gamma_w: float | None = None,
        scheme: str = "euler",
        init_std: float = 1.0,
    ):
        super().__init__(input_size, hidden_size, dt)
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta <= 1:
            raise ValueError(f"`beta` must lie in [0, 1], got {beta!r}")
        if scheme not in _SCHEMES:
            raise ValueError(f"`scheme` must be one of {_SCHEMES}, got {scheme!r}")
        self.beta = float(beta)
        self.gamma = _positive("gamma", gamma, zero=True)
        self.gamma_w = self.gamma if gamma_w is None else _positive("gamma_w", gamma_w, zero=True)
        self.scheme = scheme
        std = _positive("init_std", init_std) / hidden_size
        self.m_a = nn.Parameter(torch.randn(hidden_size, hidden_size) * std)
        self.m_w = nn.Parameter(torch.randn(hidden_size, hidden_size) * std)
        self.inp = nn.Linear(input_size, hidden_size)

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, W)`` built from ``M_A``, ``M_W``, β and the γs."""
        a = structured_matrix(self.m_a, self.beta, self.gamma)
        return a, structured_matrix(self.m_w, self.beta, self.gamma_w)

    def project(self, u):
        return self.inp(u)

    def prepare(self):
        a, w = self.matrices()
        return a.T.contiguous(), w.T.contiguous()

    def _rate(self, h, p, a_t, w_t):
        return torch.addmm(torch.tanh(torch.addmm(p, h, w_t)), h, a_t)

    def step(self, state, p, ctx=None):
        (h,) = state
        a_t, w_t = self.prepare() if ctx is None else ctx
        k1 = self._rate(h, p, a_t, w_t)
        if self.scheme == "euler":
            return (h + self.dt * k1,)
        k2 = self._rate(h + self.dt * k1, p, a_t, w_t)
        return (h + (0.5 * self.dt) * (k1 + k2),)

    def vector_field(self, t, state, u):
        (h,) = state
        a, w = self.matrices()
        return (h @ a.T + torch.tanh(h @ w.T + self.inp(u)),)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, beta={self.beta:g}, gamma={self.gamma:g}, "
            f"gamma_w={self.gamma_w:g}, scheme={self.scheme!r}"
        )


class NoisyRNN(AbstractRecurrentCell):
    """Noisy recurrent network (Lim, Erichson, Hodgkinson & Mahoney, *Noisy recurrent neural
    networks*, NeurIPS 2021): the Lipschitz RNN's drift with a diffusion, an Itô SDE

        dh = f(h, u) dt + ε (σ₁ I + σ₂ diag(f(h, u))) dB,
        f(h, u) = A h + tanh(W h + U u + b)

    (as in the paper, the multiplicative noise scales with the drift ``f``, not with ``h``),
    stepped by Euler–Maruyama: ``h_n = h_{n-1} + Δt·f + ε(σ₁ + σ₂ f) ⊙ ΔB`` with ``f =
    f(h_{n-1}, u_n)`` and ``ΔB ~ N(0, Δt I)`` drawn afresh each step. The noise is on while the module is in training mode;
    in evaluation mode it follows ``noise_in_eval`` (default off: the deterministic Lipschitz
    RNN, as the paper evaluates). Additive noise (σ₁) and multiplicative noise (σ₂) act as an
    implicit regulariser favouring stable, large-margin dynamics, hence robustness to input
    perturbations (:func:`perturb_inputs`).

    Args:
        input_size, hidden_size, dt, beta, gamma, gamma_w, init_std: as :class:`LipschitzRNN`
            (Euler drift).
        epsilon: ε, the overall noise level.
        sigma_additive: σ₁.
        sigma_multiplicative: σ₂ (multiplies the drift ``f``).
        noise_in_eval: keep the noise on in evaluation mode.

    Set ``cell.generator`` to a ``torch.Generator`` to draw the increments from it (default: the
    global generator); :meth:`step_with_increment` takes given increments instead.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dt: float = 0.03,
        beta: float = 0.75,
        gamma: float = 0.001,
        gamma_w: float | None = None,
        epsilon: float = 1.0,
        sigma_additive: float = 0.1,
        sigma_multiplicative: float = 0.02,
        noise_in_eval: bool = False,
        init_std: float = 1.0,
    ):
        super().__init__(input_size, hidden_size, dt)
        self.lipschitz = LipschitzRNN(
            input_size, hidden_size, dt, beta, gamma, gamma_w, "euler", init_std
        )
        self.epsilon = _positive("epsilon", epsilon, zero=True)
        self.sigma_additive = _positive("sigma_additive", sigma_additive, zero=True)
        self.sigma_multiplicative = _positive(
            "sigma_multiplicative", sigma_multiplicative, zero=True
        )
        self.noise_in_eval = bool(noise_in_eval)
        self.generator: torch.Generator | None = None

    @property
    def noisy(self) -> bool:
        """Whether a step adds noise now (training mode, or ``noise_in_eval``)."""
        return self.epsilon > 0 and (self.training or self.noise_in_eval)

    def project(self, u):
        return self.lipschitz.project(u)

    def prepare(self):
        return self.lipschitz.prepare()

    def _noise_scale(self, f: torch.Tensor) -> torch.Tensor:
        return self.epsilon * (self.sigma_additive + self.sigma_multiplicative * f)

    def diffusion(self, t, state, u) -> State:
        """The diagonal diffusion ``ε(σ₁ + σ₂ f(h, u))`` with the raw input ``u`` held over the
        step (``ControlTerm(..., noise="diagonal")`` form, ``u`` passed as ``args``)."""
        if u is None:
            raise ValueError(
                "NoisyRNN.diffusion needs the input `u` (its multiplicative part is σ₂·f(h, u)): "
                "pass it as the solve's `args`"
            )
        (f,) = self.vector_field(t, state, u)
        return (self._noise_scale(f),)

    def step_with_increment(self, state, p, ctx, dw: torch.Tensor) -> State:
        """One Euler–Maruyama step with the Brownian increment ``dw`` given."""
        (h,) = state
        a_t, w_t = self.prepare() if ctx is None else ctx
        f = self.lipschitz._rate(h, p, a_t, w_t)
        return (h + self.dt * f + self._noise_scale(f) * dw,)

    def step(self, state, p, ctx=None):
        if not self.noisy:
            return self.lipschitz.step(state, p, ctx)
        h = state[0]
        noise = torch.randn(h.shape, dtype=h.dtype, device=h.device, generator=self.generator)
        return self.step_with_increment(state, p, ctx, noise * math.sqrt(self.dt))

    def vector_field(self, t, state, u):
        """The drift (the deterministic Lipschitz RNN's right-hand side)."""
        return self.lipschitz.vector_field(t, state, u)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, epsilon={self.epsilon:g}, sigma_additive="
            f"{self.sigma_additive:g}, sigma_multiplicative={self.sigma_multiplicative:g}"
        )


class CTRNN(AbstractRecurrentCell):
    """Continuous-time RNN ``h' = -h/τ + tanh(W h + U u + b)`` (Funahashi & Nakamura 1993) with
    learned positive time constants τ per unit, its ODE solved over each input's ``dt`` by
    ``unfolds`` explicit Euler steps (the same numbers as :class:`~torchnde.Euler` with
    ``dt0 = dt / unfolds``).

    Args:
        input_size, hidden_size: as for every cell.
        dt: the time one input lasts.
        unfolds: Euler steps per input.
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0, unfolds: int = 6):
        super().__init__(input_size, hidden_size, dt)
        self.unfolds = _size("unfolds", unfolds)
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        self.log_tau = nn.Parameter(torch.zeros(hidden_size))

    def project(self, u):
        return self.inp(u)

    def step(self, state, p, ctx=None):
        (h,) = state
        rate = torch.exp(-self.log_tau)
        delta = self.dt / self.unfolds
        for _ in range(self.unfolds):
            h = h + delta * (torch.tanh(torch.addmm(p, h, self.rec.weight.T)) - rate * h)
        return (h,)

    def vector_field(self, t, state, u):
        (h,) = state
        return (torch.tanh(self.rec(h) + self.inp(u)) - torch.exp(-self.log_tau) * h,)


class LTC(AbstractRecurrentCell):
    """Liquid time-constant cell (Hasani, Lechner, Amini, Rus & Grosu, *Liquid time-constant
    networks*, AAAI 2021):

        x' = -[1/τ + f(x, u)] ⊙ x + f(x, u) ⊙ A,    f = sigmoid(W x + U u + b) ≥ 0,

    so each unit relaxes to the learned level ``A`` at a rate ``1/τ + f`` that the input and the
    state set (the "liquid" time constant). Over each input's ``dt`` the ODE is solved by the
    paper's fused solver with ``unfolds`` steps of ``δ = dt/unfolds`` (implicit in the linear
    decay, explicit in ``f``; its eq. 3):

        x ← (x + δ f(x, u) ⊙ A) / (1 + δ (1/τ + f(x, u))),

    which stays bounded for any step. ``f`` here is one dense sigmoid layer (the paper's
    per-synapse sigmoids summed through a weight matrix, simplified).

    Args:
        input_size, hidden_size: as for every cell.
        dt: the time one input lasts.
        unfolds: fused steps per input (the paper: 6).
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0, unfolds: int = 6):
        super().__init__(input_size, hidden_size, dt)
        self.unfolds = _size("unfolds", unfolds)
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        self.log_tau = nn.Parameter(torch.zeros(hidden_size))
        self.level = nn.Parameter(torch.randn(hidden_size) * 0.5)

    def project(self, u):
        return self.inp(u)

    def step(self, state, p, ctx=None):
        (x,) = state
        rate = torch.exp(-self.log_tau)
        delta = self.dt / self.unfolds
        for _ in range(self.unfolds):
            f = torch.sigmoid(torch.addmm(p, x, self.rec.weight.T))
            x = (x + delta * f * self.level) / (1.0 + delta * (rate + f))
        return (x,)

    def vector_field(self, t, state, u):
        (x,) = state
        f = torch.sigmoid(self.rec(x) + self.inp(u))
        return (-(torch.exp(-self.log_tau) + f) * x + f * self.level,)


_PERTURBATIONS = ("white", "multiplicative", "salt-and-pepper")


def perturb_inputs(
    x: torch.Tensor,
    kind: str,
    level: float,
    *,
    generator: torch.Generator | None = None,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """Corrupt inputs for robustness curves (Lim et al. 2021, section 6).

    Args:
        x: the inputs, any shape.
        kind: ``"white"`` (``x + level·N(0, 1)``), ``"multiplicative"`` (``x·(1 + level·N(0,
            1))``) or ``"salt-and-pepper"`` (each entry, with probability ``level``, set to
            ``low`` or ``high`` with equal chance).
        level: the noise's standard deviation, or the share of corrupted entries.
        generator: the random numbers' generator.
        low, high: the salt-and-pepper values (default: ``x``'s minimum and maximum).

    Returns:
        A corrupted copy of ``x``.
    """
    if kind not in _PERTURBATIONS:
        raise ValueError(f"`kind` must be one of {_PERTURBATIONS}, got {kind!r}")
    level = _positive("level", level, zero=True)
    if kind == "salt-and-pepper" and level > 1:
        raise ValueError(f"salt-and-pepper `level` is a probability in [0, 1], got {level}")
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    if kind == "white":
        return x + level * noise
    if kind == "multiplicative":
        return x * (1 + level * noise)
    u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    lo = x.min() if low is None else torch.as_tensor(low, dtype=x.dtype, device=x.device)
    hi = x.max() if high is None else torch.as_tensor(high, dtype=x.dtype, device=x.device)
    salt = torch.where(noise >= 0, hi, lo)
    return torch.where(u < level, salt, x)
