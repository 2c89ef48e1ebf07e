"""Adaptive placement of one numeric axis: a Ray Tune searcher that runs each group's trials in rounds,
each round placed where that group's threshold posterior is least certain.

A group is one combination of the sweep's grid values (floss.mode x arch x ...). Each keeps its
observations, k successes of n realizations per (x, seed), and its posterior is always
`ThresholdPosterior.prior(...).updated(observations)`: a pure function of them. Observations are keyed
by (x, seed), the trial's realizations, so a trial reported twice (Ray replays a finished trial after a
resume; an extended sweep reads what earlier launches recorded) changes nothing. A value placed again in
a group runs under the next seed (base seed + how often the group already has that value), so its
realizations are new ones and not a rerun of the same networks.

The searcher's state (observations, round, placed and pending trials) is saved by Ray with the
experiment snapshot, taken together with the trials' states, and restored by `--resume`: the rounds go
on where they were. A trial placed after the last snapshot is placed again with the same value and
seed, and the recorder and the worker find its child run and checkpoints by that configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from flosssweep.names import ADAPTIVE_STATE
from flosssweep.protocol import FinalResult
from flosssweep.sweep.plan import Adaptive, snap
from flosssweep.sweep.saved import SavedStateSearcher
from flosssweep.threshold import Observation, ThresholdPosterior
from flosssweep.tracking.recorder import run_label

SEED = "seed"  # the config key a repeated value varies
LEVEL = 0.95  # of the interval that `stop_width` and the round lines refer to
Key = tuple[float, int]  # (x, seed): one trial's realizations within a group


def outcome(result: dict | None) -> tuple[int, int] | None:
    """(k, n) of a finished trial's result: successes among the realizations that did not fail with an
    error (as the report counts them); None for a result without records (stopped, failed)."""
    final = FinalResult.of(result)
    if final is None:
        return None
    counted = [r for r in final.records if r.get("status") != "error"]
    return sum(bool(r.get("success")) for r in counted), len(counted)


@dataclass
class Track:
    """One group's rounds."""

    group: dict[str, Any]
    observations: dict[Key, tuple[int, int]] = field(default_factory=dict)
    rounds_done: int = 0  # in this launch
    queue: list[Key] = field(default_factory=list)  # placed this round, not handed to Ray yet
    pending: dict[str, Key] = field(default_factory=dict)  # Ray trial id -> its key, not complete yet
    done: str = ""  # why the group stopped ("" while it runs)

    @property
    def label(self) -> str:
        """The group as its trials are named ('pre', 'bits=4 k=16'): bare numbers would not say which
        axis they are."""
        return run_label(self.group, list(self.group)) or "all"

    @property
    def realizations(self) -> int:
        return sum(n for _, n in self.observations.values())

    def posterior(self, plan: Adaptive) -> ThresholdPosterior:
        prior = ThresholdPosterior.prior(plan.lo, plan.hi, plan.target)
        return prior.updated(Observation(x, k, n) for (x, _), (k, n) in sorted(self.observations.items()))

    def next_seed(self, x, base_seed: int) -> int:
        taken = [key for key in (*self.observations, *self.queue, *self.pending.values()) if key[0] == x]
        return base_seed + len(taken)


class AdaptiveSearch(SavedStateSearcher):
    """Ray Tune searcher of a sweep with an adaptive axis. `seen`: observations earlier launches of the
    experiment recorded, per group (index into `groups`), for `--extend`. `tag`: (store, parent run id),
    whose parent run is tagged when every group has stopped (how the driver tells a finished adaptive
    launch from an interrupted one)."""

    def __init__(
        self,
        key: str,
        plan: Adaptive,
        groups: list[dict[str, Any]],
        base_seed: int,
        max_concurrent: int | None = None,
        seen: list[dict[Key, tuple[int, int]]] | None = None,
        tag: tuple[Any, str] | None = None,
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__(metric=metric, mode=mode)
        self.key, self.plan, self.base_seed = key, plan, base_seed
        self.max_concurrent = max_concurrent
        self.tag = tag
        self.tracks = [Track(dict(g), dict((seen or [{}] * len(groups))[i])) for i, g in enumerate(groups)]
        self.turn = 0  # the track whose trial goes next: groups take turns
        self.tagged = False
        for track in self.tracks:
            self._start_round(track)

    # -- rounds -----------------------------------------------------------------------------------
    def line(self, track: Track, posterior: ThresholdPosterior) -> str:
        median, low, high = posterior.interval(LEVEL)
        name = "T50" if self.plan.target == 0.5 else f"T{self.plan.target * 100:g}"
        return (
            f"{track.label}: {name} {median:.1f} [{low:.1f}, {high:.1f}] after round {track.rounds_done} "
            f"({track.realizations} realizations)"
        )

    def _start_round(self, track: Track) -> None:
        """Place the group's next round, or stop it: rounds spent, or its interval narrow enough."""
        if track.done:
            return
        posterior = track.posterior(self.plan)
        if track.observations and self.plan.stop_width > 0:
            _, low, high = posterior.interval(LEVEL)
            if high - low < self.plan.stop_width:
                track.done = f"interval {high - low:.1f} < stop_width {self.plan.stop_width:g}"
        if not track.done and track.rounds_done >= self.plan.rounds:
            track.done = f"{self.plan.rounds} rounds done"
        if track.done:
            print(f"{track.label}: stopped ({track.done})", flush=True)
            if self.finished:
                self._tag_finished()
            return
        for x in snap(posterior.place(self.plan.candidates(), self.plan.per_round), self.plan):
            track.queue.append((x, track.next_seed(x, self.base_seed)))

    def _round_ended(self, track: Track) -> None:
        track.rounds_done += 1
        print(self.line(track, track.posterior(self.plan)), flush=True)
        self._start_round(track)

    @property
    def finished(self) -> bool:
        return all(t.done for t in self.tracks)

    # -- Ray's side -------------------------------------------------------------------------------
    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent or None
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.finished:
            self._tag_finished()
            return Searcher.FINISHED
        running = sum(len(t.pending) for t in self.tracks)
        if self.max_concurrent and running >= self.max_concurrent:
            return None
        for offset in range(len(self.tracks)):
            track = self.tracks[(self.turn + offset) % len(self.tracks)]
            if track.queue:
                self.turn = (self.tracks.index(track) + 1) % len(self.tracks)
                key = track.queue.pop(0)
                track.pending[trial_id] = key
                return {**track.group, self.key: key[0], SEED: key[1]}
        return None  # every group waits for its round to end

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        track = next((t for t in self.tracks if trial_id in t.pending), None)
        if track is None:
            return  # not ours, or reported before (its observation is kept)
        key = track.pending.pop(trial_id)
        counted = None if error else outcome(result)
        if counted is not None:
            track.observations[key] = counted
        if not track.queue and not track.pending:
            self._round_ended(track)

    def _tag_finished(self) -> None:
        if self.tag is None or self.tagged:
            return
        store, run_id = self.tag
        store.tag_run(run_id, {ADAPTIVE_STATE: "finished"})
        self.tagged = True

    # -- snapshot (with the experiment's, for --resume) -------------------------------------------
    def get_state(self) -> dict:
        return {"tracks": self.tracks, "turn": self.turn, "tagged": self.tagged}

    def set_state(self, state: dict) -> None:
        self.tracks, self.turn, self.tagged = state["tracks"], state["turn"], state["tagged"]


def group_of(trial_config: dict, groups: list[dict[str, Any]]) -> int | None:
    """Which group a recorded trial's varied values belong to (None: none of this sweep's)."""
    for i, group in enumerate(groups):
        if all(trial_config.get(k) == v for k, v in group.items()):
            return i
    return None


def seen_from(recorded: list[dict], key: str, groups: list[dict[str, Any]], base_seed: int) -> list[dict]:
    """Observations per group from trials earlier launches recorded (`TrackingStore.recorded_trials`):
    each (x, seed) once, however many launches ran it."""
    seen: list[dict[Key, tuple[int, int]]] = [{} for _ in groups]
    for trial in recorded:
        config = json.loads(trial["trial_config"]) if isinstance(trial["trial_config"], str) else trial["trial_config"]
        index = group_of(config, groups)
        if index is None or key not in config:
            continue
        seen[index][(config[key], int(config.get(SEED, base_seed)))] = (trial["successes"], trial["members"])
    return seen
