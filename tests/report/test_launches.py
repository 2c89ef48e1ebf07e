"""A report over the launches of one experiment: every launch by default (an --extend launch adds to
the earlier ones, and a realization two launches ran counts once), one launch with --launch."""

from __future__ import annotations

import pyarrow.parquet as pq
from conftest import fresh_store
from test_report import log_sweep, make_records, split_trials

from flosssweep import report


def test_every_launch_by_default_each_realization_once_and_one_with_launch(tmp_path, migrated_store, capsys):
    from mlflow.tracking import MlflowClient

    uri = fresh_store(migrated_store, tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    first = make_records({("rnn", "pre"): [10, 8]}, delays=(10, 20), sweep="extended")
    # The second launch ran delay 20 again (the same realizations, the same outcomes) and added 30.
    second = make_records({("rnn", "pre"): [8, 2]}, delays=(20, 30), sweep="extended")
    log_sweep(client, "extended", split_trials(first), tmp_path)
    later = log_sweep(client, "extended", split_trials(second), tmp_path)

    def counts(*flags: str) -> dict:
        out = tmp_path / "-".join(flags or ("all",))
        code = report.main(["--tracking-uri", uri, *flags, "--n-draws", "0", "--no-log", "--out", str(out)])
        assert code == 0
        curves = pq.read_table(out / "success_curves.parquet")  # one group: rnn, pre
        return {x: (k, n) for x, k, n in zip(*(curves[c].to_pylist() for c in ("delay", "k", "n")))}

    assert counts("--experiment", "extended") == {10: (10, 10), 20: (8, 10), 30: (2, 10)}
    assert "2 launch(es) of experiment 'extended'" in capsys.readouterr().err
    assert counts() == {10: (10, 10), 20: (8, 10), 30: (2, 10)}  # the latest sweep, every launch of it
    assert counts("--launch", later) == {20: (8, 10), 30: (2, 10)}


def test_launches_that_disagree_on_a_realization_are_refused_with_the_way_out(tmp_path, migrated_store, capsys):
    from mlflow.tracking import MlflowClient

    uri = fresh_store(migrated_store, tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    log_sweep(
        client, "rerun", split_trials(make_records({("rnn", "pre"): [10]}, delays=(10,), sweep="rerun")), tmp_path
    )
    # the same realizations, other outcomes (another device, or code that changed the results)
    later = log_sweep(
        client, "rerun", split_trials(make_records({("rnn", "pre"): [7]}, delays=(10,), sweep="rerun")), tmp_path
    )
    assert report.main(["--tracking-uri", uri, "--experiment", "rerun", "--n-draws", "0", "--no-log"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the line saying what is read
    assert error.startswith("flosssweep.report: error: conflicting records of one realization"), error
    assert error.endswith("the launches disagree, report one with --launch PARENT_RUN_ID"), error
    assert report.main(["--tracking-uri", uri, "--launch", later, "--n-draws", "0", "--no-log"]) == 0
