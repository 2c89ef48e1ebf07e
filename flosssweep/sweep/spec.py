"""Sweep files: load and validate every axis and every corner before Ray starts; describe the trials.

A sweep file is YAML with a fixed `base` config (merged over the trainer's defaults) and a `space`
of dotted keys to vary. Every value an axis can take is checked against `config.SCHEMA` before
Ray starts, and the base merged with each corner of the space goes through `config.resolve`, so a
sweep that would fail in its 40th trial fails now, with the dotted key and what was expected.

Axis kinds (one per key of `space`):

    {grid: [a, b, ...]}        every value, in every combination with the other grids
    {choice: [a, b, ...]}      one value drawn at random per trial
    {uniform: [lo, hi]}        a number drawn uniformly (float keys)
    {loguniform: [lo, hi]}     a number drawn uniformly in log space, lo > 0 (float keys)
    {randint: [lo, hi]}        an integer in lo..hi, both ends included (integer keys)
    {lograndint: [lo, hi]}     an integer in lo..hi drawn in log space, lo > 0 (integer keys)
    {adaptive: {lo, hi, step, rounds, per_round, target, stop_width}}
                               values placed in rounds where the success rate crosses `target`
                               (flosssweep.sweep.adaptive); at most one such axis, every other
                               axis a grid: each combination of grid values is a group with its
                               own track of rounds

`replicates: n` (grid search) repeats every cell with base seeds seed, seed + 1, ..., seed + n - 1: a
grid axis over `seed`, kept out of the report's groups (docs/DESIGN.md, "Replicates").

Searches: `grid` enumerates the grid axes (`num_samples` repeats the whole grid) and draws the other
axes per trial; `random` draws every axis, grid axes uniformly from their values, `num_samples` trials;
`optuna` runs Optuna's TPE over the non-grid axes for `num_samples` trials, or, when every axis is a
grid, Optuna's grid sampler over the whole grid (mixing grid axes with distributions under Optuna is
refused: use `choice`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flosssweep import config as cfg
from flosssweep import yamlio
from flosssweep.config import ConfigError
from flosssweep.names import METRIC_ALIASES, METRICS
from flosssweep.sweep import plan as adaptive_plan
from flosssweep.sweep.plan import Adaptive

SEARCHES = ("grid", "random", "optuna")
AXIS_KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "lograndint", "adaptive")
DISCRETE = ("grid", "choice")
TOP_KEYS = {
    "name": "MLflow experiment and Ray run name",
    "description": "free text",
    "metric": "what the search algorithm and the scheduler see",
    "mode": "max or min",
    "search": "grid, random or optuna",
    "search_seed": "seed of the search algorithm",
    "num_samples": "grid: repeats of the whole grid; random/optuna: number of trials",
    "replicates": "grid: independent repeats of every cell, each with its own base seed (seed, seed + 1, ...)",
    "max_concurrent": "trials running at once",
    "resources": "per trial: {cpu: n, gpu: fraction}",
    "scheduler": "none or asha",
    "max_failures": "retries of a trial whose worker dies",
    "checkpoint_seconds": "least wall time between two checkpoints of a trial",
    "base": "fixed config merged over the defaults",
    "space": "dotted keys to vary",
}
ASHA_KEYS = ("type", "grace_period", "reduction_factor")
RESOURCE_KEYS = ("cpu", "gpu")  # of `resources`: what one trial asks Ray for
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The name becomes a directory of Ray's storage, with trial folder names under it: far below the
# 255 bytes a file name may have.
MAX_NAME = 100
MAX_TRIALS = 100_000  # per launch: more is a typo (and --dry-run would list them all)
MAX_REPLICATES = 1000  # independent seeds per cell: more is a typo
# Above this many corners the cross-key checks fall back to varying one axis at a time.
MAX_CORNERS = 5000

SEARCH_SPACES_DIR = "search_spaces"


@dataclass(frozen=True)
class Axis:
    key: str  # dotted config key
    kind: str  # one of AXIS_KINDS
    values: tuple  # grid/choice: the values; distributions: (lo, hi), both ends included; adaptive: every candidate
    plan: Adaptive | None = None  # adaptive: its settings (flosssweep.sweep.plan)

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE

    def corners(self) -> tuple:
        """Values the cross-key checks try: every listed value, or both bounds (adaptive: the first
        two candidates too, which catch a step that breaks a cross-key rule such as delay % bits)."""
        if self.plan is not None:
            return tuple(dict.fromkeys(self.values[:2] + self.values[-1:]))
        return self.values

    def describe(self) -> str:
        if self.plan is not None:
            return self.plan.describe()
        if self.discrete:
            return f"{self.kind} {list(self.values)}"
        return f"{self.kind}({self.values[0]:g}, {self.values[1]:g})"


@dataclass
class Sweep:
    name: str
    metric: str  # as written in the file
    mode: str
    search: str
    num_samples: int
    max_concurrent: int | None
    resources: dict[str, float]
    scheduler: dict | None  # None or {"type": "asha", "grace_period": int, "reduction_factor": float}
    search_seed: int
    max_failures: int
    checkpoint_seconds: float
    base: dict  # nested, as written (validated)
    space: dict[str, Axis]
    description: str = ""
    source: str = ""  # path the sweep was read from
    text: str = ""  # the file's text, logged with the parent run
    raw: dict = field(default_factory=dict)
    # Grid cells an --extend launch leaves out: an earlier launch of the experiment recorded them.
    left_out: list[dict] = field(default_factory=list)

    # -- what Ray sees ---------------------------------------------------------------------------
    @property
    def ray_metric_name(self) -> str:
        """The metric under the name the trainer reports it (`success_rate` is `charts/success_rate`)."""
        return METRIC_ALIASES.get(self.metric, self.metric)

    @property
    def grid_axes(self) -> list[Axis]:
        return [a for a in self.space.values() if a.kind == "grid"]

    @property
    def adaptive(self) -> Axis | None:
        """The adaptive axis, if any (at most one)."""
        return next((a for a in self.space.values() if a.plan is not None), None)

    def groups(self) -> list[dict[str, Any]]:
        """Under an adaptive axis: every combination of the grid axes' values, each a group with its
        own rounds, in the order of the file."""
        return self.cells()

    @property
    def optuna_grid(self) -> bool:
        """Optuna over a space of grids only: runs Optuna's grid sampler."""
        return self.search == "optuna" and bool(self.space) and all(a.kind == "grid" for a in self.space.values())

    def grid_size(self) -> int:
        return math.prod(len(a.values) for a in self.grid_axes)

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of the grid axes' values (under an adaptive axis, its groups), in the
        order of the file, less the cells in `left_out`."""
        grid = self.grid_axes
        every = [dict(zip((a.key for a in grid), row)) for row in itertools.product(*(a.values for a in grid))]
        return [c for c in every if c not in self.left_out]

    def num_trials(self) -> int:
        """Trials of a launch; under an adaptive axis the most it may run (groups stop early)."""
        if self.adaptive is not None:
            return self.grid_size() * self.adaptive.plan.rounds * self.adaptive.plan.per_round
        if self.search == "grid":
            return len(self.cells()) * self.num_samples
        if self.optuna_grid:
            return self.grid_size()
        return self.num_samples

    def tune_num_samples(self) -> int:
        if self.adaptive is not None or self.left_out:
            return self.num_trials()
        if self.search == "grid":
            return self.num_samples
        if self.optuna_grid:
            return self.grid_size()
        return self.num_samples

    def base_values(self) -> dict:
        """Defaults with the base on top, each value checked on its own (the cross-key checks need
        the trial's varied values too: see `trial_config`)."""
        return merged_base(self.base)

    def max_epochs(self) -> int:
        base = self.base_values()
        axis = self.space.get("train.epochs")
        return max(axis.values) if axis else base["train"]["epochs"]

    def trial_config(self, overrides: dict[str, Any]) -> dict:
        """The resolved config of one trial: base, then the trial's dotted values."""
        return cfg.resolve(self.base, overrides)

    def fingerprint(self) -> dict:
        """What must not change between a launch and its resume."""
        return {
            "search": self.search,
            "base": self.base,
            "num_samples": self.num_samples,
            "space": {
                k: [a.kind, list(a.values)] + ([dataclasses.asdict(a.plan)] if a.plan else [])
                for k, a in self.space.items()
            },
        }

    # -- humans ----------------------------------------------------------------------------------
    def describe(self) -> str:
        """What `--dry-run` prints: the trials this sweep would run."""
        values = self.base_values()
        base = cfg.flatten(values)
        shown = (
            "model.arch",
            "model.hidden",
            "model.g",
            "task.name",
            "task.bits",
            "task.delay",
            "task.tau",
            "train.epochs",
            "train.length",
            "ensemble",
            "floss.mode",
            "floss.k",
            "floss.strength",
            "device",
        )
        applies = set(cfg.applicable_keys(values))
        fixed = ", ".join(f"{k}={base[k]}" for k in shown if k not in self.space and k in applies)
        lines = [
            f"sweep {self.name} ({self.source})",
            f"  search {'adaptive' if self.adaptive else self.search}, "
            f"{'at most ' if self.adaptive else ''}{self.num_trials()} trials, at most "
            f"{self.max_concurrent or 'as many as fit'} at once, "
            f"resources per trial {self.resources}, metric {self.metric} ({self.mode}), "
            f"scheduler {'asha' if self.scheduler else 'none'}",
            f"  every trial: {fixed}",
        ]
        if not self.space:
            lines.append("  1 configuration (no axes)")
            return "\n".join(lines)
        if self.adaptive is not None:
            lines.extend(adaptive_plan.describe(self))
            return "\n".join(lines)
        sampled = [a for a in self.space.values() if not (a.kind == "grid" and self.search == "grid")]
        if self.search == "grid" or self.optuna_grid:
            grid = self.grid_axes
            if grid:
                rows = list(itertools.product(*(a.values for a in grid)))
                repeats = self.num_samples if self.search == "grid" else 1
                widths = [max(len(a.key), *(len(str(v)) for v in a.values)) for a in grid]
                header = "  " + "trial".rjust(5) + "  " + "  ".join(a.key.ljust(w) for a, w in zip(grid, widths))
                lines.append(header)
                number = 0
                for _ in range(repeats):
                    for row in rows:
                        number += 1
                        lines.append(
                            "  " + str(number).rjust(5) + "  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths))
                        )
                if self.optuna_grid:
                    lines.append("  (Optuna's grid sampler visits these in its own order)")
            if sampled and self.search == "grid":
                lines.append("  drawn per trial: " + "; ".join(f"{a.key} {a.describe()}" for a in sampled))
        else:
            lines.append(f"  {self.num_trials()} trials drawn by {self.search} (seed {self.search_seed}) from:")
            for a in self.space.values():
                lines.append(f"    {a.key}: {a.describe()}")
        return "\n".join(lines)


# -- locating and loading ------------------------------------------------------------------------
def search_space_dirs() -> list[Path]:
    """Where named sweeps live: shipped inside the package, or next to it in a checkout."""
    package = Path(cfg.__file__).resolve().parent
    return [package / SEARCH_SPACES_DIR, package.parent / SEARCH_SPACES_DIR]


def locate(sweep: str) -> Path:
    """A sweep given as a path, or as the name of a file in the project's search_spaces/
    (`quickstart`, `quickstart.yaml` or `search_spaces/quickstart.yaml` from anywhere)."""
    path = Path(sweep).expanduser()
    if path.is_file():
        return path.resolve()
    name = path.name if path.suffix in (".yaml", ".yml") else path.name + ".yaml"
    for directory in search_space_dirs():
        if (directory / name).is_file():
            return (directory / name).resolve()
    known = sorted({p.stem for d in search_space_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError("sweep", "a sweep file path or one of: " + (", ".join(known) or "(none found)"), sweep)


def load(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raises ConfigError naming the dotted key."""
    path = Path(path)
    raw, text = yamlio.load_file(path)
    sweep = parse(raw)
    sweep.source, sweep.text = str(path), text
    return sweep


def parse(raw: Any) -> Sweep:
    """Validate a sweep given as a dict (the parsed YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError("sweep", "a mapping with keys " + ", ".join(TOP_KEYS), type(raw).__name__)
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(str(key), "a sweep key (one of " + ", ".join(TOP_KEYS) + ")", show_got=False)

    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) > MAX_NAME:
        shown = (
            name if not isinstance(name, str) or len(name) <= MAX_NAME else name[:20] + f"... ({len(name)} characters)"
        )
        raise ConfigError("name", f"a name of at most {MAX_NAME} letters, digits, '.', '_' or '-'", shown)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description", "a string", description)

    metric = raw.get("metric", "success_rate")
    if metric not in METRIC_ALIASES and metric not in METRICS:
        raise ConfigError("metric", "one of " + ", ".join((*METRIC_ALIASES, *METRICS)), metric)
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError("mode", "max or min", mode)
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        raise ConfigError("search", "one of " + ", ".join(SEARCHES), search)
    search_seed = _integer(raw, "search_seed", 0, minimum=0)
    num_samples = _integer(raw, "num_samples", 1, minimum=1, maximum=MAX_TRIALS)
    max_concurrent = _integer(raw, "max_concurrent", None, minimum=1)
    max_failures = _integer(raw, "max_failures", 2, minimum=0)
    checkpoint_seconds = _number("checkpoint_seconds", raw.get("checkpoint_seconds", 60))
    if checkpoint_seconds < 0:
        raise ConfigError("checkpoint_seconds", "a number of seconds >= 0", checkpoint_seconds)
    resources = _resources(raw.get("resources", {}))
    scheduler = _scheduler(raw.get("scheduler", "none"))

    base = raw.get("base", {})
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise ConfigError("base", "a mapping of config keys", type(base).__name__)
    if resources["gpu"] > 0 and "device" not in cfg.flatten(base):
        base = {**base, "device": "cuda"}
    # Ray reserves resources.cpu cores for each trial; without this its torch would use one of them.
    if resources["cpu"] >= 2 and "threads" not in cfg.flatten(base):
        base = {**base, "threads": int(resources["cpu"])}
    base_values = merged_base(base)

    space_raw = raw.get("space", {})
    if space_raw is None:
        space_raw = {}
    if not isinstance(space_raw, dict):
        raise ConfigError("space", "a mapping of dotted config keys to axes", type(space_raw).__name__)
    space = {str(key): _axis(str(key), spec) for key, spec in space_raw.items()}
    space.update(_replicates(raw, search, space, base_values))

    sweep = Sweep(
        name=name,
        metric=metric,
        mode=mode,
        search=search,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        resources=resources,
        scheduler=scheduler,
        search_seed=search_seed,
        max_failures=max_failures,
        checkpoint_seconds=checkpoint_seconds,
        base=base,
        space=space,
        description=description,
        raw=raw,
    )
    if sweep.num_trials() > MAX_TRIALS:
        raise ConfigError(
            "num_samples", f"at most {MAX_TRIALS} trials in one launch ({sweep.num_trials()} asked for)", num_samples
        )
    _check_search(sweep)
    if sweep.adaptive is not None:
        adaptive_plan.check(sweep, scheduler)
    _check_corners(sweep)
    _check_devices(sweep, base_values)
    if scheduler:
        epochs = sweep.max_epochs()
        if scheduler["grace_period"] > epochs:
            raise ConfigError(
                "scheduler.grace_period", f"at most the trial's epochs ({epochs})", scheduler["grace_period"]
            )
    return sweep


# -- pieces ----------------------------------------------------------------------------------------
def merged_base(base: dict) -> dict:
    """Defaults with `base` on top, every value checked against its schema field but no cross-key
    check (a base may rely on the space, e.g. mode regularizer with the strength varied)."""
    values = {}
    for key, value in cfg.flatten(base).items():
        if key not in cfg.SCHEMA:
            raise ConfigError(f"base.{key}", "a known key (" + _known_keys(key) + ")", show_got=False)
        values[key] = cfg.SCHEMA[key].coerce(f"base.{key}", value)
    merged = cfg.defaults(values.get("task.name", cfg.SCHEMA["task.name"].default))
    for key, value in values.items():
        cfg.set_dotted(merged, key, value)
    return merged


def _replicates(raw: dict, search: str, space: dict, base_values: dict) -> dict[str, Axis]:
    """`replicates: n` as a grid axis over the base seed: n independent ensembles per cell, whose rows
    differ only in `seed` (an operational key: one config_key, pooled by the report, which also shows
    the spread between seeds)."""
    replicates = _integer(raw, "replicates", 1, minimum=1, maximum=MAX_REPLICATES)
    if replicates == 1:
        return {}
    if search != "grid":
        raise ConfigError("replicates", "only with search: grid (repeats of every grid cell)", replicates)
    if "seed" in space:
        raise ConfigError("replicates", "not together with a space.seed axis (both vary the seed)", replicates)
    first = base_values["seed"]
    if first + replicates - 1 > cfg.SEED_LIMIT:
        raise ConfigError("replicates", f"at most {cfg.SEED_LIMIT - first + 1} from base seed {first}", replicates)
    return {"seed": Axis("seed", "grid", tuple(range(first, first + replicates)))}


def _integer(raw: dict, key: str, default: int | None, minimum: int, maximum: int = cfg.INT_LIMIT) -> int | None:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(key, f"an integer >= {minimum} and <= {maximum}", value)
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, "a number", value)
    return value


def _resources(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ConfigError("resources", "a mapping {cpu: n, gpu: fraction}", raw)
    for key in raw:
        if key not in RESOURCE_KEYS:
            raise ConfigError(f"resources.{key}", "cpu or gpu", show_got=False)
    cpu = _number("resources.cpu", raw.get("cpu", 1))
    gpu = _number("resources.gpu", raw.get("gpu", 0))
    if cpu <= 0:
        raise ConfigError("resources.cpu", "a number > 0", cpu)
    if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()):
        raise ConfigError("resources.gpu", "a fraction in [0, 1] (0.25 = four trials per GPU) or a whole number", gpu)
    return {"cpu": cpu, "gpu": gpu}


def _scheduler(raw: Any) -> dict | None:
    if raw in (None, "none", False):
        return None
    if raw == "asha":
        raw = {"type": "asha"}
    if not isinstance(raw, dict) or raw.get("type") != "asha":
        raise ConfigError("scheduler", "none, asha, or {type: asha, grace_period: epochs, reduction_factor: r}", raw)
    for key in raw:
        if key not in ASHA_KEYS:
            raise ConfigError(f"scheduler.{key}", "one of " + ", ".join(ASHA_KEYS), show_got=False)
    grace = raw.get("grace_period", 100)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
        raise ConfigError("scheduler.grace_period", "an integer number of epochs >= 1", grace)
    factor = _number("scheduler.reduction_factor", raw.get("reduction_factor", 3))
    if factor <= 1:
        raise ConfigError("scheduler.reduction_factor", "a number > 1", factor)
    return {"type": "asha", "grace_period": grace, "reduction_factor": factor}


def _axis(key: str, spec: Any) -> Axis:
    where = f"space.{key}"
    if key not in cfg.SCHEMA:
        raise ConfigError(where, "a known config key (" + _known_keys(key) + ")", show_got=False)
    field_ = cfg.SCHEMA[key]
    if not isinstance(spec, dict) or len(spec) != 1:
        hint = " (fixed values belong under base)" if not isinstance(spec, (dict, list)) else ""
        raise ConfigError(where, "a mapping with exactly one of " + ", ".join(AXIS_KINDS) + hint, spec)
    kind, values = next(iter(spec.items()))
    if kind not in AXIS_KINDS:
        raise ConfigError(f"{where}.{kind}", "one of " + ", ".join(AXIS_KINDS), show_got=False)
    if kind == "adaptive":
        settings = adaptive_plan.parse(key, values)
        return Axis(key, "adaptive", settings.candidates(), settings)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}", "a non-empty list", values)
    if kind in DISCRETE:
        coerced = tuple(field_.coerce(f"{where}.{kind}[{i}]", v) for i, v in enumerate(values))
        if len(set(coerced)) != len(coerced):
            raise ConfigError(f"{where}.{kind}", "distinct values", values)
        return Axis(key, kind, coerced)
    if len(values) != 2:
        raise ConfigError(f"{where}.{kind}", "two bounds [low, high]", values)
    wants = int if kind in ("randint", "lograndint") else float
    if field_.kind is not wants:
        other = "randint or lograndint" if field_.kind is int else "uniform or loguniform"
        other = "grid or choice" if field_.kind in (str, bool) else other
        raise ConfigError(where, f"{other} for this {field_.kind.__name__} key, not {kind}", show_got=False)
    lo, hi = (field_.coerce(f"{where}.{kind}[{i}]", v) for i, v in enumerate(values))
    if not lo < hi:
        raise ConfigError(f"{where}.{kind}", "low < high", values)
    if kind.startswith("log") and lo <= 0:
        raise ConfigError(f"{where}.{kind}[0]", "a lower bound > 0 (log scale)", lo)
    return Axis(key, kind, (lo, hi))


def _known_keys(key: str) -> str:
    try:
        cfg.resolve({key: None})
    except ConfigError as err:
        return err.expected.removeprefix("a known key (").removesuffix(")")
    return ""


def _check_search(sweep: Sweep) -> None:
    if sweep.search != "optuna" or sweep.optuna_grid:
        if sweep.optuna_grid and sweep.num_samples != 1:
            raise ConfigError(
                "num_samples",
                "1 when every axis is a grid under optuna (its grid sampler "
                "runs each grid point once; repeat realizations with ensemble or a seed grid)",
                sweep.num_samples,
            )
        return
    if not sweep.space:
        raise ConfigError("space", "at least one axis for Optuna to search", show_got=False)
    for axis in sweep.space.values():
        if axis.kind == "grid":
            raise ConfigError(
                f"space.{axis.key}",
                "choice, uniform, loguniform, randint or lograndint under "
                "search: optuna (grid axes work under optuna only when every axis is a grid; "
                "write choice to let Optuna pick)",
                show_got=False,
            )


def _prefixed(err: ConfigError, prefix: str, context: str = "") -> ConfigError:
    """The same complaint with the key as it appears in the sweep file."""
    rest = str(err)[len(err.key) + 2 :]  # after "key: "
    return ConfigError(prefix + err.key, rest.removeprefix("expected ") + context, show_got=False)


def _check_corners(sweep: Sweep) -> None:
    """Resolve the base with every combination of listed values and bounds (cross-key checks:
    k against the state size, delay against bits and length, ...)."""
    axes = list(sweep.space.values())
    total = math.prod(len(a.corners()) for a in axes)
    if total <= MAX_CORNERS:
        corners = (
            dict(zip((a.key for a in axes), values)) for values in itertools.product(*(a.corners() for a in axes))
        )
    else:  # too many: each axis through its values, the others at their first
        first = {a.key: a.corners()[0] for a in axes}
        corners = ({**first, a.key: v} for a in axes for v in a.corners())
    for corner in corners:
        try:
            cfg.resolve(sweep.base, corner)
        except ConfigError as err:
            prefix = "space." if err.key in sweep.space else "base."
            others = {k: v for k, v in corner.items() if k != err.key}
            context = " (in the trial with " + ", ".join(f"{k}={v}" for k, v in others.items()) + ")" if others else ""
            raise _prefixed(err, prefix, context) from None


def _check_devices(sweep: Sweep, base: dict) -> None:
    devices = set(sweep.space["device"].values) if "device" in sweep.space else {base["device"]}
    if "cuda" in devices and sweep.resources["gpu"] <= 0:
        raise ConfigError("resources.gpu", "> 0 when trials run on device cuda", sweep.resources["gpu"])
