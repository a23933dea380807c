"""Image optimisers behind one protocol, and the step loop with callbacks.

An optimiser sees the image as a flat float32 vector and a function ``fg(x) -> (loss, parts, grad)``.
Its whole state (including L-BFGS's curvature pairs) is a dict of arrays, so a run can be checkpointed and
resumed to the same result as an uninterrupted one. Pixels are kept in [0, 255] by projection after each
step. The network's forward/backward pass dominates a step; the optimiser's own work is a few vector ops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .errors import ConfigError, NonFiniteLossError

FG = Callable[[np.ndarray], tuple[float, dict, np.ndarray]]

# The optimisers' own default step sizes, used when StyleConfig.learning_rate is None.
DEFAULT_LEARNING_RATES = {"lbfgs": 1.0, "adam": 5.0}

PIXEL_MIN, PIXEL_MAX = 0.0, 255.0


def _finite(value: float, grad: np.ndarray | None = None) -> bool:
    """The loss, and its gradient where given, are finite (a float16 network's gradient can overflow while the
    float32 loss does not)."""
    return math.isfinite(value) and (grad is None or bool(np.isfinite(grad).all()))


def _non_finite(value: float) -> str:
    """What was not finite, for the error: the loss, or else its gradient."""
    return (
        f"the loss is {value}" if not math.isfinite(value) else f"the loss's gradient is not finite (loss {value:.6g})"
    )


class LBFGS:
    """Limited-memory BFGS with the two-loop recursion, Armijo backtracking and projection to the pixel box.

    One instance lives for a whole scale of a run, so its curvature history is never restarted between callbacks,
    snapshots or chunks (a multi-scale run starts a new one at each scale: the pairs are of another image size).
    Invariant to the scale of the loss: the first step moves the largest-gradient pixel by ``learning_rate`` grey
    levels, later steps use the two-loop recursion's sᵀy/yᵀy scaling.

    ``noise`` is the loss's relative evaluation noise (0 in float32; a bfloat16 network's rounding makes the loss
    jitter by ~2e-5 of its value between neighbouring images). Late in a run the true decrease per step falls to
    that size, so the Armijo test is relaxed by 2 · noise · |f| (Shi, Xie, Byrd & Nocedal 2022, noise-tolerant
    quasi-Newton); without it every step backtracked to the limit. A line search that still fails does not move:
    it drops the curvature pairs (the likely cause) and the next step starts again from the gradient. Where the
    gradient's own line search fails, the image is stationary to the loss's precision: the remaining steps of the
    scale stay there without evaluating the network (they would repeat the same failed search, 11 evaluations each).
    """

    name = "lbfgs"

    def __init__(
        self,
        learning_rate: float = 1.0,
        history: int = 100,
        c1: float = 1e-4,
        max_backtracks: int = 10,
        noise: float = 0.0,
    ):
        self.lr, self.m, self.c1, self.max_backtracks, self.noise = learning_rate, history, c1, max_backtracks, noise
        self.s: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.rho: list[float] = []
        self.f: float | None = None
        self.g: np.ndarray | None = None
        self.parts: dict = {}
        self.evaluations = 0
        self.stalled = False  # the gradient's line search failed here: nothing left to gain at this precision

    def _direction(self, g: np.ndarray) -> np.ndarray:
        q = g.astype(np.float32, copy=True)
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a = rho * float(np.dot(s, q))
            q -= a * y
            alphas.append(a)
        y_last = self.y[-1]
        q *= float(np.dot(self.s[-1], y_last)) / float(np.dot(y_last, y_last))
        for (s, y, rho), a in zip(zip(self.s, self.y, self.rho), reversed(alphas)):
            b = rho * float(np.dot(y, q))
            q += (a - b) * s
        return -q

    def _first_step(self, g: np.ndarray) -> float:
        """Scale-free: the steepest-descent step that moves the most-affected pixel by ``lr`` grey levels.
        (Torch's min(1, 1/|g|₁) depends on the loss's scale: tiny losses took steps float32 cannot hold.)"""
        return self.lr / max(float(np.abs(g).max()), 1e-30)

    def step(self, x: np.ndarray, fg: FG) -> np.ndarray:
        if self.g is None:
            self.f, self.parts, self.g = fg(x)
            self.evaluations += 1
            if not _finite(self.f, self.g):
                raise NonFiniteLossError(f"{_non_finite(self.f)} at the starting image")
        if self.stalled:
            return x
        g = self.g
        if self.s:
            d, t = self._direction(g), self.lr
        else:
            d, t = -g, self._first_step(g)
        gtd = float(np.dot(g, d))
        if not gtd < 0:  # not a descent direction: drop the history and fall back to the gradient
            self.s, self.y, self.rho = [], [], []
            d, t = -g, self._first_step(g)
            gtd = float(np.dot(g, d))
        slack = 2.0 * self.noise * abs(self.f)
        accepted = False
        for _ in range(self.max_backtracks + 1):
            x_new = np.clip(x + t * d, PIXEL_MIN, PIXEL_MAX)
            f_new, parts_new, g_new = fg(x_new)
            self.evaluations += 1
            if _finite(f_new, g_new) and f_new <= self.f + self.c1 * t * gtd + slack:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            if not _finite(f_new, g_new):
                raise NonFiniteLossError(f"{_non_finite(f_new)} and backtracking could not recover")
            # no acceptable point along d: stay (a worse image is never taken) and restart from the gradient
            self.stalled = not self.s  # d was the gradient already
            self.s, self.y, self.rho = [], [], []
            return x
        s, y = x_new - x, g_new - g
        sy, yy = float(np.dot(s, y)), float(np.dot(y, y))
        # positive curvature only: sᵀy / yᵀy (the two-loop's scaling, an inverse curvature) above 1e-10; that goes
        # inversely with the loss's scale, so the test is not scale-free, but far from any loss's here
        if sy > 1e-10 * yy and yy > 0:
            # the oldest pairs leave before the new one joins: never m + 1 in the history, nor more than m after a
            # resume with a smaller limit (a smaller memory budget)
            while self.s and len(self.s) >= self.m:
                del self.s[0], self.y[0], self.rho[0]
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / sy)
        self.f, self.parts, self.g = f_new, parts_new, g_new
        return x_new

    def state_dict(self) -> dict[str, Any]:
        """The whole state; the curvature pairs as one array each (``s_000``, ``y_000``, …), not stacked: a
        stacked copy of a 4K image's history would take another gigabyte while the checkpoint is written."""
        pairs = {f"s_{i:03d}": s for i, s in enumerate(self.s)} | {f"y_{i:03d}": y for i, y in enumerate(self.y)}
        return {
            **pairs,
            "rho": np.asarray(self.rho, np.float64),
            "f": np.asarray(np.nan if self.f is None else self.f),
            "g": np.zeros(0, np.float32) if self.g is None else self.g,
            "parts": np.asarray([self.parts.get(k, np.nan) for k in ("content", "style", "tv")], np.float64),
            "evaluations": np.asarray(self.evaluations),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # not restored: a resume (perhaps with other weights or precision) tries the gradient once more; where
        # nothing changed that search fails again at once and leaves the image, so the result is the same
        self.stalled = False
        self.rho = [float(r) for r in state["rho"]]
        if "s" in state:  # checkpoints written before the pairs were stored one by one
            self.s, self.y = list(state["s"]), list(state["y"])
        else:
            self.s = [state[f"s_{i:03d}"] for i in range(len(self.rho))]
            self.y = [state[f"y_{i:03d}"] for i in range(len(self.rho))]
        self.g = state["g"] if state["g"].size else None
        self.f = None if self.g is None else float(state["f"])
        self.parts = dict(zip(("content", "style", "tv"), (float(v) for v in state["parts"])))
        self.evaluations = int(state["evaluations"])


class Adam:
    """Adam (Kingma & Ba 2015) on the pixels, projected to ``box`` ([0, 255]) after each step; ``box=None``
    for unbounded variables (a VQGAN latent in guided generation)."""

    name = "adam"

    def __init__(
        self,
        learning_rate: float = 5.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        box: tuple[float, float] | None = (PIXEL_MIN, PIXEL_MAX),
    ):
        self.lr, self.b1, self.b2, self.eps, self.box = learning_rate, beta1, beta2, epsilon, box
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0
        self.f: float | None = None
        self.parts: dict = {}
        self.evaluations = 0

    def step(self, x: np.ndarray, fg: FG) -> np.ndarray:
        f, parts, g = fg(x)
        self.evaluations += 1
        if not _finite(f, g):  # a step along a non-finite gradient would write NaN pixels
            raise NonFiniteLossError(_non_finite(f))
        if self.m is None:
            self.m, self.v = np.zeros_like(g), np.zeros_like(g)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        # Adam reports the loss of the image it was given; the step moves past it.
        self.f, self.parts = f, parts
        x = x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return (x if self.box is None else np.clip(x, *self.box)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        empty = np.zeros(0, np.float32)
        return {
            "m": empty if self.m is None else self.m,
            "v": empty if self.v is None else self.v,
            "t": np.asarray(self.t),
            "evaluations": np.asarray(self.evaluations),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = state["m"] if state["m"].size else None
        self.v = state["v"] if state["v"].size else None
        self.t, self.evaluations = int(state["t"]), int(state["evaluations"])


def make_optimizer(config, pairs: int | None = None, noise: float = 0.0) -> LBFGS | Adam:
    """The optimiser a StyleConfig names; ``pairs`` overrides ``lbfgs_history`` (fewer pairs for huge images);
    ``noise`` is the loss's relative evaluation noise at the network's precision (L-BFGS's line search allows for
    it; Adam does not compare losses)."""
    lr = config.learning_rate or DEFAULT_LEARNING_RATES[config.optimizer]
    if config.optimizer == "lbfgs":
        return LBFGS(lr, history=pairs or config.lbfgs_history, noise=noise)
    if config.optimizer == "adam":
        return Adam(lr, beta1=config.adam_beta1, epsilon=config.adam_epsilon)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}")


# --- the step loop -----------------------------------------------------------------------------------
@dataclass
class StepInfo:
    """What a callback sees after each step. ``image()`` returns the current uint8 image (computed lazily)."""

    step: int
    steps: int
    level: int
    losses: dict[str, float]
    elapsed: float
    x: np.ndarray  # the flat float image after this step
    to_image: Callable[[np.ndarray], np.ndarray]

    def image(self) -> np.ndarray:
        return self.to_image(self.x)


class Callback:
    """Override what you need. Returning True from ``on_step`` stops the run (a Stop button)."""

    def on_start(self, steps: int, level: int) -> None: ...

    def on_step_begin(self, step: int) -> None: ...

    def on_step(self, info: StepInfo) -> bool | None: ...

    def on_end(self, info: StepInfo | None) -> None: ...


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_step(self, info):
        return self.fn(info)


def as_callbacks(callbacks: Sequence) -> list[Callback]:
    return [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]


@dataclass
class LoopResult:
    x: np.ndarray
    steps_done: int
    stopped: bool = False
    interrupted: bool = False


def run_steps(
    optimizer,
    fg: FG,
    x: np.ndarray,
    start: int,
    steps: int,
    callbacks: Sequence[Callback] = (),
    level: int = 0,
    to_image: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    desc: str = "stylize",
    unit: str = "step",
) -> LoopResult:
    """Run steps ``start+1 .. steps``; each callback sees every step. Ctrl-C stops cleanly after a step."""
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True, leave=True)
    for cb in callbacks:
        cb.on_start(steps, level)
    info = None
    result = LoopResult(x, start)
    try:
        for step in range(start + 1, steps + 1):
            for cb in callbacks:
                cb.on_step_begin(step)
            x = optimizer.step(x, fg)
            losses = {"total": float(optimizer.f), **{k: float(v) for k, v in optimizer.parts.items()}}
            result.x, result.steps_done = x, step
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.4g}", refresh=False)
            info = StepInfo(step, steps, level, losses, time.perf_counter() - t0, x, to_image)
            if any([bool(cb.on_step(info)) for cb in callbacks]):
                result.stopped = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
    except NonFiniteLossError as exc:
        exc.partial = result  # the last good image and the steps before it
        raise
    finally:
        bar.close()
        for cb in callbacks:
            cb.on_end(info)
    return result
