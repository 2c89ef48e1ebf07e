"""The sweep's summary on its parent run: the numbers per group, as metrics, a table and a description."""

import json

import pytest

from flosssweep import records, report
from flosssweep.report.headline import TABLE_ARTIFACT, headline, summary_metrics, summary_table, summary_tags
from flosssweep.tracking.store import TrackingStore
from flosssweep.tracking.summary import LOGGED_ARTIFACTS, NOTE, log_summary


def sweep_records(groups: dict[str, list[int]], delays=(8, 16, 24), n=8, x="delay"):
    rows = []
    for mode, ks in groups.items():
        for delay, k in zip(delays, ks):
            rows += [
                {
                    "sweep": "s",
                    "trial_id": f"{mode}-{delay}",
                    "member": i,
                    "seed": 0,
                    "config_key": f"{mode}-{delay}",
                    x: delay,
                    "floss_mode": mode,
                    "success": i < k,
                    "status": "ok",
                }
                for i in range(n)
            ]
    return records.to_table(rows)


@pytest.fixture(scope="module")
def tables():
    # none falls below 0.5 between delay 8 and 16; pre never does (T50 censored at 24)
    return report.aggregate(sweep_records({"none": [8, 2, 0], "pre": [8, 8, 8]}), n_draws=0)


def test_table_rows_are_the_groups_with_counts_and_t50(tables):
    table = summary_table(tables)
    assert table["floss_mode"] == ["none", "pre"]
    assert table["realizations"] == [24, 24]
    assert table["delay 8"] == ["8/8", "8/8"] and table["delay 16"] == ["2/8", "8/8"]
    # none: rate 1 at 8, 0.25 at 16: crosses 0.5 at 8 + 8 * 0.5 / 0.75 = 13.33
    assert table["T50"] == ["13.3", ">= 24"]
    assert table["T50 low"] == ["n/a", "n/a"]  # no bootstrap


def test_metrics_name_the_group_and_say_when_t50_is_censored(tables):
    metrics = {(name, step): value for name, value, step in summary_metrics(tables)}
    # 8 + 8 * 0.5 / 0.75 = 13.33, to the three significant figures the tables show
    assert metrics == {("t50/floss_mode.none", 0): 13.3, ("t50_at_least/floss_mode.pre", 0): 24}


def test_counts_are_k_of_n_tags_and_the_headline_names_each_group(tables):
    tags = summary_tags(tables)
    assert tags["successes/floss_mode.none/delay 16"] == "2/8" and len(tags) == 6
    assert headline(tables) == "T50 none 13.3, pre >= 24"
    t = sweep_records({"none": [8, 2, 0], "pre": [8, 8, 2]}, delays=(0.5, 1.0, 1.5), x="model_g")
    names = {name for name, _, _ in summary_metrics(report.aggregate(t, x="model_g", n_draws=0))}
    assert names == {"t50/floss_mode.none", "t50/floss_mode.pre"}


def test_logged_onto_a_run_and_a_second_report_replaces_the_table(tmp_path, tables, monkeypatch, mlflow_uri):
    uri = mlflow_uri
    client = TrackingStore(uri).client
    experiment = client.create_experiment("s", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    for _ in range(2):
        path = log_summary(client, run_id, summary_table(tables), summary_metrics(tables), "| md |", TABLE_ARTIFACT)
    run = client.get_run(run_id)
    assert run.data.metrics["t50/floss_mode.none"] == 13.3
    assert run.data.tags[NOTE] == "| md |"
    assert json.loads(run.data.tags[LOGGED_ARTIFACTS]) == [{"path": path, "type": "table"}]
    local = client.download_artifacts(run_id, path, str(tmp_path / "dl"))
    doc = json.loads(open(local).read())
    assert doc["columns"][:3] == ["sweep", "floss_mode", "realizations"] and len(doc["data"]) == 2
    pandas = pytest.importorskip("pandas")  # MLflow's own reader of tables
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # load_table searches the default store
    loaded = client.load_table(experiment, path, run_ids=[run_id])
    assert isinstance(loaded, pandas.DataFrame) and list(loaded["floss_mode"]) == ["none", "pre"]


def test_the_name_gets_one_answer_however_often_it_is_logged(tmp_path, tables, mlflow_uri):
    client = TrackingStore(mlflow_uri).client
    experiment = client.create_experiment("s", artifact_location=(tmp_path / "art").as_uri())
    older = client.create_run(experiment, run_name="quickstart 2026-12-07 00:39:56").info.run_id  # no launch tag
    for _ in range(2):
        log_summary(client, older, summary_table(tables), [], "| md |", TABLE_ARTIFACT, headline=headline(tables))
    assert client.get_run(older).info.run_name == "T50 none 13.3, pre >= 24 · quickstart 2026-12-07 00:39:56"
