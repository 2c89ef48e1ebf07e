"""The driver's Ray Tune callbacks, hook by hook (the sweeps that run them whole are in test_driver.py,
test_storage.py and test_mlflow_outage.py)."""

from __future__ import annotations

import pytest

from flosssweep.sweep.callbacks import MLflowCallback
from flosssweep.tracking.store import TrackingUnavailable


class RecorderWithFullStore:
    """The recorder's hooks as the callback calls them, where closing a trial finds the store's disk full."""

    def __init__(self):
        self.calls: list[str] = []

    def trial_ended(self, trial, trials, failed):
        raise TrackingUnavailable("the disk of the tracking store sqlite:///x.db is full")

    def trial_result(self, trial, trials, result):
        self.calls.append("result")

    def flush_if_due(self):
        self.calls.append("flush")


def test_an_error_in_a_trial_hook_stops_the_sweep_at_the_step_end_as_itself():
    """Raised from on_trial_complete, Ray would have made it that trial's failure and rerun the trial;
    from on_trial_result, a TuneError with a traceback. Held, it stops Tuner.fit as itself."""
    recorder = RecorderWithFullStore()
    callback = MLflowCallback(recorder)
    callback.on_trial_complete(0, [], trial=None)
    callback.on_trial_result(0, [], trial=None, result={})
    with pytest.raises(TrackingUnavailable, match="is full"):
        callback.on_step_end(0, [])
    assert recorder.calls == [], "nothing more is recorded once the sweep is stopping"
