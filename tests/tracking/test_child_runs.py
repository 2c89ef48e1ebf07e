"""Child runs as the MLflow UI lists them: named by their values, no charts of counters that never moved."""

from types import SimpleNamespace

from flosssweep import names
from flosssweep.tracking.recorder import SweepRecorder, run_label
from flosssweep.tracking.store import TrackingStore

BASE = {
    "model": {"hidden": 8},
    "task": {"bits": 1, "delay": 2},
    "train": {"epochs": 30, "length": 40, "success_window": 10},
}


def test_names_lead_with_the_varied_values_words_first_numbers_under_short_unambiguous_keys():
    assert run_label({"task.delay": 24, "floss.mode": "pre"}, ["task.delay", "floss.mode"]) == "pre delay=24"
    # two keys end alike: the record column names tell them apart
    assert run_label({"train.lr": 0.001, "floss.lr": 0.01}, ["train.lr", "floss.lr"]) == "train_lr=0.001 floss_lr=0.01"


def test_child_run_name_tags_and_counters_logged_from_their_first_non_zero_value(tmp_path, mlflow_uri):
    uri = mlflow_uri
    tracking = TrackingStore(uri)
    client = tracking.client
    experiment = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment).info.run_id
    recorder = SweepRecorder(
        tracking,
        experiment,
        parent,
        "c",
        BASE,
        ["task.delay", "floss.mode"],
        flush_seconds=0,
        run_tags={"mlflow.source.git.commit": "abc"},
    )
    trial = SimpleNamespace(
        trial_id="t_00001", config={"task.delay": 4, "floss.mode": "none"}, last_result={}, num_failures=0
    )
    recorder.trial_started(trial, [trial])
    for epoch, nonfinite in ((0, 0), (10, 0), (20, 3), (30, 0)):
        recorder.trial_result(
            trial,
            [trial],
            {
                "epoch": epoch,
                "losses/task": 1.0 / (1 + epoch),
                "charts/nonfinite_steps": nonfinite,
                "charts/diverged": 0,
            },
        )
    recorder.flush()
    run = client.search_runs([experiment], f"tags.`{names.PARENT}` = '{parent}'")[0]
    assert run.info.run_name == "none delay=4 (t_00001)"
    assert run.data.tags["mlflow.source.git.commit"] == "abc"
    assert "charts/diverged" not in run.data.metrics  # never non-zero: no chart of zeros
    history = client.get_metric_history(run.info.run_id, "charts/nonfinite_steps")
    assert [(m.step, m.value) for m in history] == [(20, 3.0), (30, 0.0)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "losses/task")] == [0, 10, 20, 30]
