"""The adaptive axis of a sweep file: its settings, their validation, and where its first round goes.

`space.<key>: {adaptive: {lo, hi, step, rounds, per_round, target, stop_width}}` on an integer or number
key. `flosssweep.sweep.spec` reads the rest of the file and calls `parse` and `check`; the searcher that
runs the rounds is `flosssweep.sweep.adaptive.AdaptiveSearch` (docs/DESIGN.md, "Adaptive sweeps, resume
and extend"). No Ray here: validation and --dry-run happen before Ray starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flosssweep import config as cfg
from flosssweep.config import ConfigError
from flosssweep.threshold import ThresholdPosterior

MAX_COUNT = 1000  # rounds, or trials per round: more is a typo

# The settings of an adaptive axis and what each means; lo and hi have no default.
ADAPTIVE_KEYS = {
    "lo": "the smallest value tried",
    "hi": "the largest value tried",
    "step": "spacing of the values tried, from lo (a multiple of task.bits for task.delay)",
    "rounds": "rounds of trials per group",
    "per_round": "trials per group and round",
    "target": "the success rate whose crossing is sought (0.5: T50)",
    "stop_width": "a group stops once its 95% interval is narrower than this (0: never early)",
}
MAX_CANDIDATES = 10_000  # values between lo and hi: more is a typo in step


@dataclass(frozen=True)
class Adaptive:
    """The plan of an adaptive axis: where its values may fall, and the rounds that place them."""

    lo: float
    hi: float
    step: float
    rounds: int
    per_round: int
    target: float
    stop_width: float

    def candidates(self) -> tuple:
        count = int(math.floor((self.hi - self.lo) / self.step + 1e-9)) + 1
        values = (self.lo + i * self.step for i in range(count))
        return tuple(v if isinstance(self.step, int) and isinstance(self.lo, int) else round(v, 12) for v in values)

    def describe(self) -> str:
        return (
            f"adaptive({self.lo:g}..{self.hi:g} step {self.step:g}, {self.rounds} rounds of {self.per_round}, "
            f"target {self.target:g}, stop width {self.stop_width:g})"
        )


def parse(key: str, raw: Any) -> Adaptive:
    """The plan of `space.<key>: {adaptive: raw}`, or ConfigError naming the offending setting."""
    where = f"space.{key}.adaptive"
    field_ = cfg.SCHEMA[key]
    if field_.kind not in (int, float):
        raise ConfigError(
            f"space.{key}", f"grid or choice for this {field_.kind.__name__} key, not adaptive", show_got=False
        )
    if not isinstance(raw, dict):
        raise ConfigError(where, "a mapping with keys " + ", ".join(ADAPTIVE_KEYS), raw)
    for name in raw:
        if name not in ADAPTIVE_KEYS:
            raise ConfigError(f"{where}.{name}", "one of " + ", ".join(ADAPTIVE_KEYS), show_got=False)
    for name in ("lo", "hi"):
        if name not in raw:
            raise ConfigError(f"{where}.{name}", ADAPTIVE_KEYS[name] + " (required)", show_got=False)
    lo, hi = (field_.coerce(f"{where}.{name}", raw[name]) for name in ("lo", "hi"))
    if not lo < hi:
        raise ConfigError(f"{where}.hi", f"a value > lo = {lo}", hi)
    if field_.kind is int:
        step = raw.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"{where}.step", "an integer >= 1 (this key takes integers)", step)
    else:
        if "step" not in raw:
            raise ConfigError(f"{where}.step", ADAPTIVE_KEYS["step"] + " (required for a number key)", show_got=False)
        step = _real(f"{where}.step", raw["step"])
        if step <= 0:
            raise ConfigError(f"{where}.step", "a number > 0", step)
    if (hi - lo) / step + 1 > MAX_CANDIDATES:
        raise ConfigError(f"{where}.step", f"at most {MAX_CANDIDATES} values from lo to hi", step)
    rounds, per_round = _count(raw, "rounds", 4, where), _count(raw, "per_round", 2, where)
    target = _real(f"{where}.target", raw.get("target", 0.5))
    if not 0 < target < 1:
        raise ConfigError(f"{where}.target", "a success rate strictly between 0 and 1", target)
    stop_width = _real(f"{where}.stop_width", raw.get("stop_width", 0))
    if stop_width < 0:
        raise ConfigError(f"{where}.stop_width", "a width >= 0 (0: every round runs)", stop_width)
    plan = Adaptive(lo, hi, step, rounds, per_round, target, stop_width)
    candidates = plan.candidates()
    if len(candidates) < 2:
        raise ConfigError(f"{where}.step", f"at most hi - lo = {hi - lo} (two values at least)", step)
    for value in candidates[-1:]:
        field_.coerce(f"{where}.hi", value)
    return plan


def check(sweep, scheduler: dict | None) -> None:
    """A `spec.Sweep` with an adaptive axis: one at most; every other axis a grid (its groups); no
    repeats of the whole sweep, no scheduler stopping trials early."""
    adaptive = [a for a in sweep.space.values() if a.plan is not None]
    if not adaptive:
        return
    axis = adaptive[0]
    if len(adaptive) > 1:
        raise ConfigError(
            f"space.{adaptive[1].key}", f"one adaptive axis per sweep (another: {axis.key})", show_got=False
        )
    if sweep.search != "grid":
        raise ConfigError("search", f"grid (the default) with the adaptive axis {axis.key}", sweep.search)
    if sweep.num_samples != 1:
        raise ConfigError(
            "num_samples",
            f"1 with the adaptive axis {axis.key} (its rounds decide the trials; ensemble sets the realizations)",
            sweep.num_samples,
        )
    if scheduler:
        raise ConfigError(
            "scheduler", f"none with the adaptive axis {axis.key} (a trial stopped early has no k/n)", show_got=False
        )
    if "seed" in sweep.space:  # the searcher gives a value placed again the next seed: a seed axis would collide
        raise ConfigError(
            "space.seed",
            f"no seed axis beside the adaptive axis {axis.key} (ensemble sets the realizations per trial, "
            "and a value placed again runs under the next seed)",
            show_got=False,
        )
    for other in sweep.space.values():
        if other is not axis and other.kind != "grid":
            raise ConfigError(
                f"space.{other.key}",
                f"a grid beside the adaptive axis {axis.key} (its grid values make the groups), not {other.kind}",
                show_got=False,
            )
    if axis.key == "task.delay":
        bits = sweep.space["task.bits"].values if "task.bits" in sweep.space else (sweep.base_values()["task"]["bits"],)
        for b in bits:
            for name in ("lo", "step"):
                if getattr(axis.plan, name) % b:
                    raise ConfigError(
                        f"space.task.delay.adaptive.{name}", f"a multiple of task.bits = {b}", getattr(axis.plan, name)
                    )


def describe(sweep) -> list[str]:
    """What --dry-run shows of a `spec.Sweep` with an adaptive axis: its groups and the values of their
    first round (later rounds follow the results)."""
    axis = sweep.adaptive
    plan = axis.plan
    lines = [
        f"  {axis.key}: {plan.describe()}, {len(axis.values)} candidate values;",
        f"  {len(sweep.groups())} group(s), at most {plan.rounds * plan.per_round} trials each; round 1 places:",
    ]
    placed = first_round(plan)
    for group in sweep.groups():
        label = ", ".join(f"{k}={v}" for k, v in group.items()) or "(one group)"
        lines.append(f"    {label}: {axis.key} = " + ", ".join(f"{x:g}" for x in placed))
    return lines


def first_round(plan: Adaptive) -> list:
    """The values of every group's first round, from the prior alone."""
    return snap(ThresholdPosterior.prior(plan.lo, plan.hi, plan.target).place(plan.candidates(), plan.per_round), plan)


def snap(placed, plan: Adaptive) -> list:
    """Placed values as candidates, of the axis's own type (a delay stays an integer)."""
    candidates = plan.candidates()
    return [min(candidates, key=lambda c: abs(c - x)) for x in placed]


def _count(raw: dict, name: str, default: int, where: str) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ConfigError(f"{where}.{name}", f"an integer >= 1 and <= {MAX_COUNT}", value)
    return value


def _real(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(where, "a number", value)
    return value
