"""The adaptive axis and its searcher without Ray running: rounds placed per group, each trial's k/n read
from its final result, groups stopped by interval width or spent rounds, and the state that --resume and
--extend start from counting every realization once. (The searcher is ours; Ray only calls it.)"""

from __future__ import annotations

import copy
import math

import pytest
from conftest import sweep_with

from flosssweep.protocol import FinalResult
from flosssweep.sweep import search
from flosssweep.sweep import spec as space
from flosssweep.sweep.adaptive import AdaptiveSearch, outcome, seen_from
from flosssweep.threshold import Observation, ThresholdPosterior

ADAPTIVE = {"adaptive": {"lo": 2, "hi": 36, "step": 2, "rounds": 3, "per_round": 2, "stop_width": 0}}


def adaptive_sweep(**plan) -> space.Sweep:
    axis = copy.deepcopy(ADAPTIVE)
    axis["adaptive"].update(plan)
    return space.parse(sweep_with(**{"space__task.delay": axis}))


def result(k: int, n: int, errors: int = 0) -> dict:
    records = [{"success": i < k, "status": "ok"} for i in range(n)]
    records += [{"success": False, "status": "error"} for _ in range(errors)]
    return FinalResult(records, []).to_result()


def steep(horizon: dict[str, float], n: int = 4):
    """Successes of a step curve: every realization below the group's horizon, none above."""
    return lambda config: n if config["task.delay"] < horizon[config["floss.mode"]] else 0


def drain(searcher: AdaptiveSearch, successes, n: int = 4, start: int = 0, stop_after: int | None = None):
    """Hand out every trial the searcher has, complete them, repeat; returns the configs in order
    (and stops after `stop_after` completions, with the rest still pending)."""
    given, number, completed = [], start, 0
    while True:
        batch = []
        while (config := searcher.suggest(f"t{number}")) not in (None, "FINISHED"):
            batch.append((f"t{number}", config))
            number += 1
        if not batch:
            return given, config
        for trial_id, config in batch:
            if stop_after is not None and completed == stop_after:
                return given + [c for _, c in batch], None
            searcher.on_trial_complete(trial_id, result(successes(config), n))
            completed += 1
        given.extend(c for _, c in batch)


def test_the_axis_parses_into_candidates_groups_and_a_trial_budget():
    sweep = adaptive_sweep()
    axis = sweep.adaptive
    assert axis.values == tuple(range(2, 37, 2))
    assert sweep.groups() == [{"floss.mode": "none"}, {"floss.mode": "pre"}]
    assert sweep.num_trials() == 2 * 3 * 2 and search.param_space(sweep) == {}
    described = sweep.describe()
    assert "search adaptive, at most 12 trials" in described
    assert "floss.mode=pre: task.delay = " in described  # round 1's values shown for every group


@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"space__task.delay": {"adaptive": [2, 36]}}, "space.task.delay.adaptive", "a mapping with keys lo, hi"),
        ({"space__task.delay": {"adaptive": {"hi": 36}}}, "space.task.delay.adaptive.lo", "required"),
        ({"space__task.delay": {"adaptive": {"lo": 8, "hi": 4}}}, "space.task.delay.adaptive.hi", "> lo = 8"),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 8, "width": 1}}},
            "space.task.delay.adaptive.width",
            "one of lo",
        ),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 8, "target": 1}}},
            "space.task.delay.adaptive.target",
            "strictly between 0 and 1",
        ),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 8, "rounds": 0}}},
            "space.task.delay.adaptive.rounds",
            ">= 1",
        ),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 8, "stop_width": -1}}},
            "space.task.delay.adaptive.stop_width",
            ">= 0",
        ),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 8, "step": 1.5}}},
            "space.task.delay.adaptive.step",
            "an integer >= 1",
        ),
        ({"space__model.g": {"adaptive": {"lo": 0.5, "hi": 2}}}, "space.model.g.adaptive.step", "required"),
        ({"space__floss.mode": {"adaptive": {"lo": 0, "hi": 1}}}, "space.floss.mode", "not adaptive"),
        # cross-key: the delay's values must stay multiples of task.bits and below train.length
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 20, "step": 3}}, "base__task__bits": 2},
            "space.task.delay.adaptive.step",
            "a multiple of task.bits = 2",
        ),
        (
            {"space__task.delay": {"adaptive": {"lo": 2, "hi": 20, "step": 2}}, "space__task.bits": {"grid": [1, 4]}},
            "space.task.delay.adaptive.lo",
            "a multiple of task.bits = 4",
        ),
        ({"space__task.delay": {"adaptive": {"lo": 2, "hi": 60}}}, "space.task.delay", "less than train.length = 40"),
        # what goes beside it
        (
            {"space__task.delay": ADAPTIVE, "space__model.g": {"adaptive": {"lo": 0.5, "hi": 2, "step": 0.5}}},
            "space.model.g",
            "one adaptive axis per sweep",
        ),
        (
            {"space__task.delay": ADAPTIVE, "space__model.g": {"choice": [1.0, 1.5]}},
            "space.model.g",
            "a grid beside the adaptive axis task.delay",
        ),
        ({"space__task.delay": ADAPTIVE, "space__seed": {"grid": [0, 1]}}, "space.seed", "no seed axis beside"),
        ({"space__task.delay": ADAPTIVE, "search": "random"}, "search", "grid (the default) with the adaptive axis"),
        ({"space__task.delay": ADAPTIVE, "num_samples": 2}, "num_samples", "1 with the adaptive axis"),
        ({"space__task.delay": ADAPTIVE, "scheduler": "asha"}, "scheduler", "none with the adaptive axis"),
    ],
)
def test_bad_adaptive_axes_are_refused_with_the_dotted_key(changes, key, words):
    with pytest.raises(space.ConfigError) as info:
        space.parse(sweep_with(**changes))
    message = str(info.value)
    assert "\n" not in message and message.startswith(key + ": "), message
    assert words in message, message


def test_rounds_place_each_group_on_its_own_track_and_end_with_finished(capsys):
    sweep = adaptive_sweep()
    searcher = search.searcher(sweep)
    given, last = drain(searcher, steep({"none": 9, "pre": 27}))
    assert last == "FINISHED" and len(given) == 12
    # groups take turns, and each group's later rounds move towards its own horizon
    assert [c["floss.mode"] for c in given[:4]] == ["none", "pre", "none", "pre"]
    last_round = {mode: [c["task.delay"] for c in given[-4:] if c["floss.mode"] == mode] for mode in ("none", "pre")}
    assert all(abs(d - 9) <= 6 for d in last_round["none"]), last_round
    assert all(abs(d - 27) <= 6 for d in last_round["pre"]), last_round
    lines = [line for line in capsys.readouterr().out.splitlines() if "after round" in line]
    assert (
        len(lines) == 6 and lines[-1].startswith("pre: T50 ") and lines[-1].endswith("after round 3 (24 realizations)")
    )
    median, low, high = (
        float(v)
        for v in lines[-1]
        .split("T50 ")[1]
        .split(" after")[0]
        .replace("[", "")
        .replace("]", "")
        .replace(",", "")
        .split()
    )
    assert low <= 27 <= high and low <= median <= high


def test_a_group_stops_once_its_interval_is_narrower_than_stop_width():
    searcher = search.searcher(adaptive_sweep(rounds=20, stop_width=8))
    given, last = drain(searcher, steep({"none": 9, "pre": 27}, n=8), n=8)
    assert last == "FINISHED"
    for track in searcher.tracks:
        _, low, high = track.posterior(searcher.plan).interval()
        assert high - low < 8 and "stop_width" in track.done
        assert track.rounds_done < 20


def test_k_and_n_leave_out_realizations_that_failed_with_an_error():
    assert outcome(result(3, 4, errors=2)) == (3, 4)
    assert outcome({"epoch": 10}) is None  # an intermediate report, or a trial stopped early


def test_a_trial_reported_twice_or_failed_counts_once_or_not_at_all():
    sweep = adaptive_sweep()
    searcher = search.searcher(sweep)
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", result(4, 4))
    searcher.on_trial_complete("a", result(4, 4))  # Ray replays a finished trial after a resume
    track = searcher.tracks[0]
    assert track.observations == {(first["task.delay"], 0): (4, 4)}
    assert searcher.suggest("b")["floss.mode"] == "pre"  # groups take turns
    assert searcher.suggest("c")["floss.mode"] == "none"
    searcher.on_trial_complete("c", None, error=True)
    assert track.realizations == 4 and track.rounds_done == 1  # the failed trial ends the round, adds nothing


def test_a_value_placed_again_runs_under_the_next_seed():
    searcher = search.searcher(adaptive_sweep(rounds=12, per_round=2))
    given, _ = drain(searcher, lambda config: 2)  # flat at one half: the posterior keeps coming back
    seen = [(c["floss.mode"], c["task.delay"], c["seed"]) for c in given]
    assert len(set(seen)) == len(seen)  # no realization run twice
    assert any(seed > 0 for *_, seed in seen)


def test_chance_level_plateaus_do_not_break_it():
    searcher = search.searcher(adaptive_sweep())
    given, last = drain(searcher, lambda config: 0)  # gated networks: 0/4 everywhere
    assert last == "FINISHED" and len(given) == 12
    median, low, high = searcher.tracks[0].posterior(searcher.plan).interval()
    assert all(math.isfinite(v) for v in (median, low, high)) and low <= median <= high


def test_max_concurrent_holds_trials_back():
    searcher = search.searcher(
        adaptive_sweep(),
    )
    searcher.set_max_concurrency(1)
    assert searcher.suggest("a") is not None and searcher.suggest("b") is None
    searcher.on_trial_complete("a", result(1, 4))
    assert searcher.suggest("b") is not None


def test_a_restored_searcher_continues_mid_round_as_if_never_stopped(tmp_path):
    curve = steep({"none": 11, "pre": 23})
    whole, _ = drain(search.searcher(adaptive_sweep()), curve)
    interrupted = search.searcher(adaptive_sweep())
    before, _ = drain(interrupted, curve, stop_after=5)  # round 2 under way
    pending = [t for track in interrupted.tracks for t in track.pending]
    interrupted.save(str(tmp_path / "state.pkl"))
    resumed = search.searcher(adaptive_sweep())
    resumed.restore(str(tmp_path / "state.pkl"))
    # Ray requeues the pending trials under their ids; they complete, then the rounds go on
    for trial_id in pending:
        track = next(t for t in resumed.tracks if trial_id in t.pending)
        x, seed = track.pending[trial_id]
        resumed.on_trial_complete(trial_id, result(curve({**track.group, "task.delay": x}), 4))
    after, last = drain(resumed, curve, start=100)
    assert last == "FINISHED"
    assert before + after == whole  # same trials, none twice
    for a, b in zip(resumed.tracks, search_done(curve).tracks):
        assert a.observations == b.observations


def search_done(curve) -> AdaptiveSearch:
    searcher = search.searcher(adaptive_sweep())
    drain(searcher, curve)
    return searcher


def test_extend_starts_from_recorded_trials_each_realization_once():
    sweep = adaptive_sweep()
    recorded = [  # two launches ran delay 10 under seed 0: the same realizations
        {"trial_config": {"floss.mode": "pre", "task.delay": 10, "seed": 0}, "successes": 4, "members": 4},
        {"trial_config": {"floss.mode": "pre", "task.delay": 10, "seed": 0}, "successes": 4, "members": 4},
        {"trial_config": {"floss.mode": "pre", "task.delay": 30}, "successes": 0, "members": 4},  # a grid launch
        {"trial_config": {"floss.mode": "lstm", "task.delay": 30}, "successes": 0, "members": 4},  # not a group
    ]
    seen = seen_from(recorded, "task.delay", sweep.groups(), base_seed=0)
    assert seen == [{}, {(10, 0): (4, 4), (30, 0): (0, 4)}]
    searcher = search.searcher(sweep, seen=seen)
    pre = searcher.tracks[1]
    assert pre.realizations == 8
    expected = ThresholdPosterior.prior(2, 36).updated([Observation(10, 4, 4), Observation(30, 0, 4)])
    assert pre.posterior(searcher.plan).interval() == expected.interval()
    placed = [x for x, _ in pre.queue]
    assert all(10 <= x <= 30 for x in placed), placed  # between what succeeded and what failed


@pytest.mark.parametrize(
    "sweep, flags, words",
    [
        ("quickstart", ["--extend", "--resume"], "--extend: not with --resume"),
        ("quickstart", ["--extend", "--close"], "--extend: not with --close"),
        ("strength_optuna", ["--extend"], "--extend: expected a sweep with an adaptive axis or grid axes only"),
    ],
)
def test_extend_is_refused_where_it_cannot_tell_recorded_trials(tmp_path, sweep, flags, words):
    from conftest import in_process, sweep_environment

    from flosssweep import run

    result = in_process(run.main, sweep, *flags, cwd=tmp_path, env=sweep_environment(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"flosssweep.run: error: {words}"), result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_group_is_named_by_its_axes_as_its_trials_are():
    """'4, 16' did not say which number was the bits and which the k."""
    from flosssweep.sweep.adaptive import Track

    assert Track({"task.bits": 4, "floss.k": 16}, {}).label == "bits=4 k=16"
    assert Track({"floss.mode": "pre"}, {}).label == "pre"
    assert Track({}, {}).label == "all"
