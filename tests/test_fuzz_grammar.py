"""A fuzzer over the two grammars users write (issue 24): sweep files and dotted-key overrides.

Invariant: every input gives exit 0 or 2, and a refusal is one line on stderr with no traceback, in
bounded time and memory. The entry points run in this process (`run.main --dry-run`,
`trial.main --dry-run`), so an exception, a hang or a blow-up is the test's own. The budget is fixed
and the examples derandomized, so CI runs the same inputs every time; the figures (inputs tried,
seconds, peak memory growth) are printed (`pytest -s`) and written to $FLOSSSWEEP_FUZZ_FIGURES if set.
"""

from __future__ import annotations

import json
import os
import resource
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flosssweep import run, trial
from flosssweep.config import SCHEMA
from flosssweep.sweep.spec import AXIS_KINDS, TOP_KEYS

EXAMPLES = 200  # per grammar
EXAMPLE_SECONDS = 10.0  # the slowest input may take (a dry run of the largest grid lists it whole)
TOTAL_SECONDS = 120.0  # both grammars, on a loaded 2-core CI machine
MEMORY_GROWTH = 512 * 2**20  # bytes the process may grow by over all inputs

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,  # timed here, per example, against EXAMPLE_SECONDS
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values: what a careless or hostile user writes ---------------------------------------------------
WORDS = ["none", "pre", "during", "auto", "rnn", "lstm", "plrnn", "lorenz63", "parity", "cuda", "asha", "grid", "x"]
scalars = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(WORDS + list(AXIS_KINDS)), inner, max_size=3)
    ),
    max_leaves=12,
)
config_keys = st.sampled_from(sorted(SCHEMA)) | st.text(min_size=1, max_size=10)
axes = st.dictionaries(
    config_keys,
    st.one_of(
        st.fixed_dictionaries({"grid": st.lists(scalars, min_size=1, max_size=5)}),
        st.dictionaries(st.sampled_from(AXIS_KINDS), st.lists(scalars, min_size=1, max_size=3), min_size=1, max_size=1),
        values,
    ),
    max_size=4,
)
nested_base = st.dictionaries(
    st.sampled_from(["model", "task", "train", "floss", "seed", "ensemble"]),
    st.dictionaries(st.sampled_from(sorted({k.split(".")[-1] for k in SCHEMA})), scalars, max_size=4) | scalars,
    max_size=4,
)
sweeps = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzz", "a" * 300, "bad name", ""]) | st.text(max_size=8)},
    optional={
        "base": nested_base | st.dictionaries(config_keys, scalars, max_size=4) | values,
        "space": axes | values,
        "search": st.sampled_from(["grid", "random", "optuna"]) | scalars,
        "num_samples": scalars,
        "max_concurrent": scalars,
        "resources": st.fixed_dictionaries({"cpu": scalars, "gpu": scalars}) | values,
        "scheduler": st.sampled_from(["none", "asha"]) | values,
        "metric": st.sampled_from(["success_rate", "charts/dstsp"]) | scalars,
        "checkpoint_seconds": scalars,
        "search_seed": scalars,
        "replicates": scalars,
        **{key: values for key in ("mode", "description", "max_failures")},
    },
)
# Raw text: a valid file cut, spliced with YAML's own punctuation (anchors, aliases, flow brackets,
# tags, merge keys), or with bytes that are not UTF-8.
NOISE = st.sampled_from(
    ["&a ", "*a", "[", "]", "{", "}", ": ", "- ", "<<: ", "!!python/object ", "\t", "\n", "#", "'", '"']
)


# Sweeps that are valid or nearly so, so that the accepting path is walked too
plausible = st.fixed_dictionaries(
    {
        "name": st.just("fuzz"),
        "base": st.fixed_dictionaries(
            {
                "model": st.fixed_dictionaries({"hidden": st.sampled_from([4, 8, 0])}),
                "ensemble": st.sampled_from([1, 2]),
            }
        ),
        "space": st.fixed_dictionaries(
            {
                "task.delay": st.fixed_dictionaries(
                    {"grid": st.lists(st.sampled_from([2, 4, 6, 7]), min_size=1, max_size=3)}
                )
                | st.fixed_dictionaries(
                    {
                        "adaptive": st.fixed_dictionaries(
                            {"lo": st.sampled_from([2, 3, 30]), "hi": st.sampled_from([2, 12, 30, 50])},
                            optional={
                                "step": st.sampled_from([1, 2, 0, 1.5]),
                                "rounds": st.sampled_from([1, 3, 0]),
                                "per_round": st.sampled_from([1, 2]),
                                "target": st.sampled_from([0.5, 0.8, 1]),
                                "stop_width": st.sampled_from([0, 4, -1]),
                            },
                        )
                    }
                )
            },
            optional={
                "floss.mode": st.fixed_dictionaries({"choice": st.lists(st.sampled_from(["none", "pre"]), min_size=1)})
            },
        ),
    },
    optional={
        "num_samples": st.sampled_from([1, 3, 100001]),
        "search": st.sampled_from(["grid", "random"]),
        "replicates": st.sampled_from([1, 3, 0, 100001]),
    },
)


@st.composite
def sweep_files(draw) -> bytes:
    sweep = draw(sweeps | plausible)
    if sweep.get("base") and draw(st.booleans()):
        sweep["base"] = (
            {k.replace("_", "."): v for k, v in sweep["base"].items()} if isinstance(sweep["base"], dict) else {}
        )
    text = yaml.safe_dump(sweep, allow_unicode=True)
    how = draw(st.sampled_from(["as is", "spliced", "cut", "bytes", "top keys"]))
    if how == "spliced":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "".join(draw(st.lists(NOISE, min_size=1, max_size=6))) + text[at:]
    elif how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "top keys":  # a key written twice, or an unknown one
        text += f"{draw(st.sampled_from(sorted(TOP_KEYS) + ['spaces']))}: {json.dumps(draw(scalars))}\n"
    data = text.encode()
    if how == "bytes":
        data += draw(st.binary(min_size=1, max_size=8))
    return data


override_values = st.one_of(
    scalars.map(lambda v: json.dumps(v) if not isinstance(v, str) else v),
    st.text(max_size=16),
    st.lists(NOISE, max_size=5).map("".join),
)
overrides = st.lists(st.tuples(config_keys, st.sampled_from(["=", "", "=="]), override_values).map("".join), max_size=5)


class Figures:
    def __init__(self):
        self.inputs, self.slowest, self.codes = 0, 0.0, {}

    def one(self, call, capsys) -> None:
        started = time.monotonic()
        try:
            code = call()
        except SystemExit as exit_:  # argparse's refusals
            code = exit_.code
        seconds = time.monotonic() - started
        out, err = capsys.readouterr()
        self.inputs += 1
        self.slowest = max(self.slowest, seconds)
        self.codes[code] = self.codes.get(code, 0) + 1
        assert code in (0, 2), (code, err[-2000:])
        assert "Traceback" not in err and "Traceback" not in out, err[-2000:]
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err[-2000:]
        assert seconds < EXAMPLE_SECONDS


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


@pytest.fixture(scope="module")
def figures():
    collected = {}
    yield collected
    line = json.dumps(collected)
    print(f"\nfuzzer figures: {line}")
    if os.environ.get("FLOSSSWEEP_FUZZ_FIGURES"):
        with open(os.environ["FLOSSSWEEP_FUZZ_FIGURES"], "a") as out:
            out.write(line + "\n")


def measured(name: str, fuzz, figures) -> None:
    rss, started = peak_rss(), time.monotonic()
    counter = Figures()
    fuzz(counter)
    seconds = time.monotonic() - started
    figures[name] = {
        "inputs": counter.inputs,
        "seconds": round(seconds, 1),
        "slowest_s": round(counter.slowest, 2),
        "exit_codes": counter.codes,
        "rss_growth_mb": round((peak_rss() - rss) / 2**20),
    }
    assert counter.inputs >= EXAMPLES
    assert seconds < TOTAL_SECONDS and peak_rss() - rss < MEMORY_GROWTH, figures[name]


def test_fuzz_sweep_files_exit_0_or_2_in_one_line(tmp_path, capsys, figures, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "fuzz.yaml"

    def fuzz(counter):
        @FUZZ
        @given(sweep_files())
        def one(data):
            path.write_bytes(data)
            counter.one(lambda: run.main([str(path), "--dry-run"]), capsys)

        one()

    measured("sweep files", fuzz, figures)


def test_fuzz_overrides_exit_0_or_2_in_one_line(capsys, figures):
    def fuzz(counter):
        @FUZZ
        @given(overrides)
        def one(texts):
            counter.one(lambda: trial.main([*texts, "--dry-run"]), capsys)

        one()

    measured("overrides", fuzz, figures)
