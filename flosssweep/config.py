"""Trial configuration: defaults, dotted-key overrides, validation, identity.

A configuration is a plain nested dict. Every leaf has a `Field` in `SCHEMA` with its default, its
type, a one-line help string and the tasks it applies to, so the single-trial CLI, the sweep
validator, the records and the tracked params all agree on what a key means and when it has one.
Bad values raise `ConfigError`, whose message names the dotted key and what was expected;
command-line entry points turn it into one line and exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from flosssweep import footprint, yamlio
from flosssweep.errors import ConfigError
from flosssweep.names import CONFIG_COLUMNS

FLOSS_MODES = ("none", "pre", "during", "pre+during", "regularizer")
ARCHS = ("rnn", "lstm", "gru", "plrnn")
PARITY_TASKS = ("parity",)  # trained by flosssweep.train.parity on generated bit sequences
CHAOTIC_TASKS = ("lorenz63", "roessler")  # trained by flosssweep.train.chaotic (sparse teacher forcing)
TASKS = PARITY_TASKS + CHAOTIC_TASKS
DSTSP_CONVENTIONS = ("flosssweep", "authors")  # chaotic data: this project's D_stsp, the STF authors'
# Every integer key is at most this unless its field says less: records keep integers as int64, and
# a count beyond it is a typo, not a plan.
INT_LIMIT = 2**31 - 1
SEED_LIMIT = 2**32 - 1  # what numpy's and torch's seeding take without folding


@dataclass(frozen=True)
class Field:
    default: Any
    kind: type  # int, float, str or bool
    help: str
    choices: tuple | None = None  # allowed values (for str fields, or extra words for numbers)
    minimum: float | None = None
    positive: bool = False
    maximum: float | None = None  # None: INT_LIMIT for integers, none for other kinds
    tasks: tuple[str, ...] = TASKS  # the task names whose trials use this key at all
    # (task names, default) for tasks whose sensible default differs from `default`
    task_default: tuple[tuple[str, ...], Any] | None = None

    def default_for(self, task: str) -> Any:
        if self.task_default is not None and task in self.task_default[0]:
            return self.task_default[1]
        return self.default

    @property
    def upper(self) -> float | None:
        return INT_LIMIT if self.maximum is None and self.kind is int else self.maximum

    def expected(self) -> str:
        name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.kind]
        if self.kind is str and self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.positive:
            name += " > 0"
        elif self.minimum is not None:
            name += f" >= {self.minimum:g}"
        if self.upper is not None:
            name += f" and <= {self.upper:d}" if self.kind is int else f" and <= {self.upper:g}"
        if self.choices:
            name += " or one of " + ", ".join(map(str, self.choices))
        return name

    def coerce(self, key: str, value: Any) -> Any:
        """The value as this field's type, or ConfigError. Strings from a command line or YAML
        (where `1e-3` is a string) are parsed; bools are never accepted as numbers."""
        if self.choices and value in self.choices:
            return value
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ConfigError(key, self.expected(), value)
        if self.kind is str:
            if isinstance(value, str) and not self.choices:
                return value
            raise ConfigError(key, self.expected(), value)
        if isinstance(value, bool):
            raise ConfigError(key, self.expected(), value)
        if isinstance(value, str):
            try:
                value = float(value) if self.kind is float else int(value)
            except ValueError:
                raise ConfigError(key, self.expected(), value) from None
        if self.kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ConfigError(key, self.expected(), value)
        else:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(key, self.expected(), value)
            value = float(value)
        if (self.positive and value <= 0) or (self.minimum is not None and value < self.minimum):
            raise ConfigError(key, self.expected(), value)
        if self.upper is not None and value > self.upper:
            raise ConfigError(key, self.expected(), value)
        return value


SCHEMA: dict[str, Field] = {
    "seed": Field(0, int, "base seed; member j of seed s is seeded by (s, j) alone", minimum=0, maximum=SEED_LIMIT),
    "ensemble": Field(
        1, int, "realizations trained side by side in this trial (leading axis R)", positive=True, maximum=100_000
    ),
    "device": Field("cpu", str, "torch device", choices=("cpu", "cuda")),
    "threads": Field(
        1, int, "torch intra-op threads (in a sweep: resources.cpu; 1 per trial uses cores best)", positive=True
    ),
    "model.arch": Field("rnn", str, "network: rnn (vanilla tanh), lstm, gru, plrnn (piecewise linear)", choices=ARCHS),
    "model.hidden": Field(80, int, "hidden units N", positive=True, maximum=1_000_000),
    "model.g": Field(1.0, float, "gain of the recurrent weights (rnn)", minimum=0),
    "model.init": Field(
        "gaussian",
        str,
        "recurrent init of rnn: gaussian g*randn/sqrt(N) or g*orthogonal",
        choices=("gaussian", "orthogonal"),
    ),
    "model.relax_steps": Field(100, int, "input-free steps that relax the initial state (rnn)", minimum=0),
    "task.name": Field(
        "parity", str, "task: parity (delayed copy/XOR/...), or chaotic data: lorenz63, roessler", choices=TASKS
    ),
    "task.bits": Field(
        1, int, "parity of this many delayed inputs: 1 copy, 2 XOR, more = harder", positive=True, tasks=PARITY_TASKS
    ),
    "task.delay": Field(
        10,
        int,
        "longest lag d the target depends on (divisible by bits; the inputs are d / bits apart)",
        positive=True,
        tasks=PARITY_TASKS,
    ),
    "task.dt": Field(
        0.01, float, "chaotic data: time units between samples (one RK4 step each)", positive=True, tasks=CHAOTIC_TASKS
    ),
    "task.tau": Field(
        "auto",
        int,
        "chaotic data: sparse teacher forcing interval in steps; none = plain BPTT, "
        "auto = round(ln 2 / lambda_max per step) of the data",
        choices=("none", "auto"),
        positive=True,
        tasks=CHAOTIC_TASKS,
    ),
    "task.train_steps": Field(
        100000, int, "chaotic data: samples in the training part of the trajectory", positive=True, tasks=CHAOTIC_TASKS
    ),
    "task.test_steps": Field(
        20000,
        int,
        "chaotic data: samples in the test part (after the training part)",
        positive=True,
        tasks=CHAOTIC_TASKS,
    ),
    "task.transient": Field(
        50.0, float, "chaotic data: time units integrated and discarded first", minimum=0, tasks=CHAOTIC_TASKS
    ),
    "task.data_seed": Field(
        2,
        int,
        "chaotic data: seed of the initial condition (same data for every member)",
        minimum=0,
        maximum=SEED_LIMIT,
        tasks=CHAOTIC_TASKS,
    ),
    "train.epochs": Field(3000, int, "epochs; one fresh batch and one optimizer step each", positive=True),
    "train.batch": Field(16, int, "sequences per batch", positive=True),
    "train.length": Field(300, int, "sequence length T", positive=True),
    "train.lr": Field(1e-3, float, "Adam learning rate of the task loss", positive=True),
    "train.clip": Field(0.03, float, "gradient-norm clip (0 = off)", minimum=0),
    "train.clip_mode": Field(
        "tensor",
        str,
        "clip each parameter tensor of each member, or one global norm per member",
        choices=("tensor", "global"),
    ),
    "train.success_window": Field(
        100,
        int,
        "epochs at the end whose mean accuracy decides success (chaotic data: whose mean loss is final_loss)",
        positive=True,
    ),
    "train.success_threshold": Field(
        0.95, float, "mean accuracy that counts as success", positive=True, tasks=PARITY_TASKS
    ),
    "train.report_every": Field(50, int, "epochs between progress reports (and spectrum estimates)", positive=True),
    "train.graph": Field(
        "auto",
        str,
        "replay each epoch from a CUDA graph: auto (on cuda without a flossing loss per step, else off; "
        "falls back to eager if capture fails), on, off; needs device cuda",
        choices=("auto", "on", "off"),
    ),
    "train.max_nonfinite": Field(
        10, int, "consecutive non-finite steps after which a member is diverged", positive=True
    ),
    "train.forcing": Field(
        "full",
        str,
        "chaotic data: what a forcing step replaces: full (state <- B^+ x) or "
        "observed (only the part B^+ B of the state that the observation sees)",
        choices=("full", "observed"),
        tasks=CHAOTIC_TASKS,
    ),
    "train.dstsp_threshold": Field(
        2.0,
        float,
        "chaotic data: a realization succeeds when D_stsp is below this "
        "(2 is about the D_stsp of Lorenz-63 with rho = 26 or 30 against rho = 28)",
        positive=True,
        tasks=CHAOTIC_TASKS,
    ),
    "train.dstsp_bins": Field(
        30,
        int,
        "chaotic data: bins per dimension of the D_stsp occupancy",
        positive=True,
        maximum=1000,
        tasks=CHAOTIC_TASKS,
    ),
    "train.dstsp_convention": Field(
        "flosssweep",
        str,
        "chaotic data: how D_stsp is computed: flosssweep (train.dstsp_bins bins over the test data's min-max, "
        "points outside in the edge bins, the train.eval_trajectories runs) or authors (the STF authors' "
        "evaluation: 10 bins over +-2 sd, points outside dropped, one 100000-step free run from the first "
        "test point); train.dstsp_threshold's calibration is flosssweep's",
        choices=DSTSP_CONVENTIONS,
        tasks=CHAOTIC_TASKS,
    ),
    "train.eval_trajectories": Field(
        20,
        int,
        "chaotic data: free-running trajectories per member for the metrics",
        positive=True,
        tasks=CHAOTIC_TASKS,
    ),
    "train.eval_steps": Field(
        5000, int, "chaotic data: steps of each free-running trajectory", positive=True, tasks=CHAOTIC_TASKS
    ),
    # Chaotic data needs bounded, not vanishing, exponents: flossing them toward 0 before training
    # is not a default worth having there (docs/CHAOTIC.md).
    "floss.mode": Field(
        "pre",
        str,
        "flossing schedule (default none for chaotic data)",
        choices=FLOSS_MODES,
        task_default=(CHAOTIC_TASKS, "none"),
    ),
    "floss.k": Field(1, int, "number of Lyapunov exponents flossed", positive=True),
    "floss.pre_steps": Field(500, int, "flossing-only steps before training (pre)", minimum=0),
    "floss.every": Field(100, int, "epochs between flossing episodes (during)", positive=True),
    "floss.steps": Field(500, int, "flossing-only steps per episode (during)", minimum=0),
    "floss.episodes": Field(2, int, "at most this many episodes (during)", minimum=0),
    "floss.strength": Field(0.0, float, "weight of the flossing loss added at every training step", minimum=0),
    "floss.horizon": Field(55, int, "time steps Tp of the spectrum estimate", positive=True),
    "floss.warmup": Field(16, int, "steps before exponents are accumulated", minimum=0),
    "floss.qr_every": Field(1, int, "steps between QR re-orthonormalizations", positive=True),
    "floss.target": Field(
        0.0,
        float,
        "value the flossed exponents are pushed toward; data = the data's largest exponent per step (chaotic data)",
        choices=("data",),
    ),
    "floss.lr": Field(1e-3, float, "Adam learning rate of the flossing optimizer", positive=True),
    "floss.dtype": Field("float32", str, "dtype of the tangent loop", choices=("float32", "float64")),
}

# Keys that change how a trial runs but not what it computes: left out of config_key so that
# realizations of one configuration share it whatever the ensemble size or device.
OPERATIONAL_KEYS = ("seed", "ensemble", "device", "threads", "train.report_every", "train.graph")


def flosses_before_training(mode: str, pre_steps: int) -> bool:
    """Whether a trial runs flossing-only steps before training: what its 'pre' stage comes after."""
    return mode in ("pre", "pre+during") and pre_steps > 0


def column_name(key: str) -> str:
    return CONFIG_COLUMNS.get(key, key.replace(".", "_"))


def defaults(task: str = SCHEMA["task.name"].default) -> dict:
    """Every key at its default for trials of `task` (a task name)."""
    config: dict = {}
    for key, field in SCHEMA.items():
        set_dotted(config, key, field.default_for(task))
    set_dotted(config, "task.name", task)
    return config


def task_of(*layers: dict) -> str:
    """The task name the layers (nested or dotted dicts, later ones winning) set, else the default.
    Raises ConfigError for a name that is not a task."""
    task = SCHEMA["task.name"].default
    for layer in layers:
        flat = flatten(layer)
        if "task.name" in flat:
            task = SCHEMA["task.name"].coerce("task.name", flat["task.name"])
    return task


def applicable_keys(config: dict) -> list[str]:
    """The keys, in schema order, that the trials of this config's task use (records and tracked
    params hold only these: a chaotic trial has no delay, a parity trial no tau)."""
    task = config["task"]["name"]
    return [key for key, field in SCHEMA.items() if task in field.tasks]


def set_dotted(config: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def get_dotted(config: dict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` from a command line; the value is read as YAML (`5` int, `none` string)."""
    if not text.isprintable():  # control characters and line breaks would garble the one line that names it
        raise ConfigError(repr(text), "an override without control characters", show_got=False)
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(text, "an override of the form dotted.key=value", show_got=False)
    return key.strip(), yamlio.load_value(raw, key.strip()) if raw.strip() else raw


def resolve(*layers: dict) -> dict:
    """The task's defaults, then each layer (nested or dotted dicts) on top; validated. Raises
    ConfigError."""
    task = task_of(*layers)
    config = defaults(task)
    for layer in layers:
        for key, value in flatten(layer).items():
            if key not in SCHEMA:
                raise ConfigError(key, "a known key (" + _closest(key) + ")", show_got=False)
            if task not in SCHEMA[key].tasks:  # it would be ignored: trials differing only there are one trial
                raise ConfigError(
                    key, f"a key that {task} trials use (it applies to {', '.join(SCHEMA[key].tasks)})", show_got=False
                )
            set_dotted(config, key, SCHEMA[key].coerce(key, value))
    validate(config)
    return config


def _closest(key: str) -> str:
    section = key.split(".")[0]
    siblings = [k for k in SCHEMA if k.startswith(section + ".")]
    if siblings:
        return "known keys under " + section + ": " + ", ".join(k.split(".", 1)[1] for k in siblings)
    return "top-level keys: " + ", ".join(sorted({k.split(".")[0] for k in SCHEMA}))


def state_size(config: dict) -> int:
    """Dimension of the state the Lyapunov spectrum lives in (the LSTM carries h and c)."""
    hidden = config["model"]["hidden"]
    return 2 * hidden if config["model"]["arch"] == "lstm" else hidden


def validate(config: dict) -> None:
    """Checks that involve more than one key. Single values were checked by `Field.coerce`."""
    for key, field in SCHEMA.items():
        field.coerce(key, get_dotted(config, key))
    task, train, floss = config["task"], config["train"], config["floss"]
    chaotic = task["name"] in CHAOTIC_TASKS
    if chaotic:
        if config["model"]["hidden"] < 3:
            raise ConfigError("model.hidden", f">= 3 (the dimension of {task['name']} data)", config["model"]["hidden"])
        if train["length"] >= task["train_steps"]:
            raise ConfigError("train.length", f"less than task.train_steps = {task['train_steps']}", train["length"])
    elif floss["target"] == "data":
        raise ConfigError(
            "floss.target", "a number unless task.name is chaotic (" + ", ".join(CHAOTIC_TASKS) + ")", floss["target"]
        )
    if task["name"] == "parity":
        if task["delay"] % task["bits"]:
            raise ConfigError("task.delay", f"a multiple of task.bits = {task['bits']}", task["delay"])
        if task["delay"] >= train["length"]:
            raise ConfigError("task.delay", f"less than train.length = {train['length']}", task["delay"])
    if floss["k"] > state_size(config):
        raise ConfigError(
            "floss.k",
            f"at most the state size {state_size(config)} of "
            f"{config['model']['arch']} with hidden = {config['model']['hidden']}",
            floss["k"],
        )
    if floss["warmup"] >= floss["horizon"]:
        raise ConfigError("floss.warmup", f"less than floss.horizon = {floss['horizon']}", floss["warmup"])
    if floss["mode"] == "regularizer" and floss["strength"] <= 0:
        raise ConfigError("floss.strength", "> 0 when floss.mode is regularizer", floss["strength"])
    if floss["mode"] != "regularizer" and floss["strength"] > 0:
        # Otherwise a `pre` trial with a strength would floss on both schedules and be recorded as `pre`.
        raise ConfigError(
            "floss.strength",
            f"0 when floss.mode is {floss['mode']} (a strength adds the flossing loss at every step: that is "
            "floss.mode regularizer)",
            floss["strength"],
        )
    if not chaotic and train["success_window"] > train["epochs"]:
        raise ConfigError("train.success_window", f"at most train.epochs = {train['epochs']}", train["success_window"])
    if train["graph"] == "on" and config["device"] != "cuda":
        raise ConfigError("train.graph", "auto or off unless device is cuda (CUDA graphs)", train["graph"])
    if train["success_threshold"] > 1:
        raise ConfigError("train.success_threshold", "an accuracy in (0, 1]", train["success_threshold"])
    too_big = footprint.refusal(config, chaotic)
    if too_big:
        key, expected = too_big
        raise ConfigError(key, expected, get_dotted(config, key))


def config_key(config: dict) -> str:
    """Stable identity of a configuration: realizations that differ only in operational keys
    (seed, ensemble size, device, threads, reporting) share it."""
    flat = {k: v for k, v in flatten(config).items() if k not in OPERATIONAL_KEYS}
    return hashlib.sha1(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def record_columns(config: dict) -> dict[str, Any]:
    """Every config value that applies to the task, as its record column (docs/DESIGN.md,
    "Records")."""
    return {column_name(key): get_dotted(config, key) for key in applicable_keys(config)}
