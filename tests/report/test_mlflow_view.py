"""What the sweep's parent run shows in MLflow after its report is logged, read back from a real SQLite
store: metrics whose latest value is the answer, counts as k/n tags, a name that leads with the launch
and T50, a compact description, and report.html with its figures inline."""

import base64
import html
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from conftest import fresh_store, mlflow_server
from test_report import GROUPS, log_sweep, make_records, split_trials

from flosssweep import report
from flosssweep.names import LAUNCH
from flosssweep.tracking.store import TrackingStore, parent_name
from flosssweep.tracking.summary import ui_page

pytestmark = pytest.mark.slow  # three reports with figures, each logged to the store: about 20 s here


@pytest.fixture(scope="module")
def logged(tmp_path_factory, migrated_store):
    root = tmp_path_factory.mktemp("view")
    uri = fresh_store(migrated_store, root / "mlflow.db")
    client = TrackingStore(uri).client
    parent = log_sweep(client, "delay-scan", split_trials(make_records(GROUPS)), root)
    client.set_tag(parent, LAUNCH, "12-07 00:41 arch × floss_mode × delay, 16 trials")
    assert report.main(["--tracking-uri", uri, "--run", parent, "--n-draws", "200", "--log"]) == 0
    return client, parent, root


def test_every_parent_metric_is_a_t50_with_one_value(logged):
    client, parent, _ = logged
    metrics = client.get_run(parent).data.metrics
    name = re.compile(r"t50(_low|_high)?(_at_least|_below)?/arch\.\w+ floss_mode\.\w+")
    assert metrics and all(name.fullmatch(k) for k in metrics), sorted(metrics)
    # rnn none: 10, 8, 4, 0 of 10 at d = 10..40 crosses 0.5 at 20 + 10 * 0.3 / 0.4 = 27.5; rnn pre never
    # falls below it (censored at 40), lstm none starts below it (< 10)
    assert metrics["t50/arch.rnn floss_mode.none"] == 27.5
    assert metrics["t50_at_least/arch.rnn floss_mode.pre"] == 40
    assert metrics["t50_below/arch.lstm floss_mode.none"] == 10
    assert metrics["t50/arch.lstm floss_mode.pre"] == 17.1  # 17.142857 to the 3 digits the tables show
    for key in metrics:  # no history: the latest value is the only one (the old success_rate had step = x)
        assert [m.step for m in client.get_metric_history(parent, key)] == [0]


def test_counts_per_cell_are_k_of_n_tags(logged):
    client, parent, _ = logged
    tags = client.get_run(parent).data.tags
    assert tags["successes/arch.rnn floss_mode.none/delay 20"] == "8/10"
    assert tags["successes/arch.lstm floss_mode.pre/delay 40"] == "2/10"
    assert sum(k.startswith("successes/") for k in tags) == 16


def test_the_name_leads_with_the_launch_and_the_description_with_t50(logged):
    client, parent, _ = logged
    run = client.get_run(parent)
    assert run.info.run_name.startswith("12-07 00:41 T50 ")  # the stamp, then the answer (4 groups)
    assert "rnn none 27.5" in run.info.run_name and run.info.run_name.endswith("· arch × floss_mode × delay, 16 trials")
    description = run.data.tags["mlflow.note.content"]
    first = description.splitlines()[0]
    assert first.startswith("**T50**") and "**rnn, none** 27.5 [" in first
    assert "\n```\n" in description and "flossing schedule" in description  # the table as aligned text


def test_report_html_holds_its_figures_inline(logged, tmp_path):
    client, parent, _ = logged
    names = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.md"} <= names
    page = open(client.download_artifacts(parent, "report/report.html", str(tmp_path))).read()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == ["Figure 1", "Figure 2"]
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    assert "<th>flossing schedule</th>" in page and "<td>8/10</td>" in page.replace(' class="num"', "")


def test_a_second_log_keeps_one_answer_in_the_name(logged):
    client, parent, _ = logged
    uri = client.tracking_uri
    assert report.main(["--tracking-uri", uri, "--run", parent, "--n-draws", "0", "--log"]) == 0
    assert client.get_run(parent).info.run_name.count("T50") == 1


def test_a_launch_name_starts_with_its_stamp_and_names_the_axes():

    from flosssweep.sweep import spec

    sweep = spec.load(spec.locate("quickstart"))
    name = parent_name(sweep, time.strptime("2026-12-07 00:41", "%Y-%m-%d %H:%M"))
    assert name == "12-07 00:41 delay × floss_mode, 6 trials"


CHROMIUM = shutil.which("chromium")
# What the probe of this machine kind found Chromium needs as root without a network: no sandbox, and
# none of its background connections (each refused by the closed network).
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def ui(logged):
    """MLflow's own server over the logged store, on a free loopback port, as `mlflow ui` serves it."""
    client, _, root = logged
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = mlflow_server(port, client.tracking_uri, root / "mlartifacts", root)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


def page_text(address: str, expected: str) -> str:
    """The words of the page as the browser built it (its DOM after the scripts ran, tags and styles
    left out), read until `expected` shows: the UI fetches the run after it loads, so a slow machine
    may need a longer wait."""
    text = ""
    for budget in (20_000, 60_000, 120_000):
        with tempfile.TemporaryDirectory() as profile:  # a fresh profile: the UI keeps view state in it
            done = subprocess.run(
                [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget}", "--dump-dom"]
                + [address],
                capture_output=True,
                text=True,
                timeout=300,
                env=os.environ | {"DBUS_SESSION_BUS_ADDRESS": "disabled:"},
            )
        words = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)\b.*?</\1>", " ", done.stdout, flags=re.S))
        text = html.unescape(re.sub(r"\s+", " ", words))
        if expected in text:
            break
    return text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_printed_address_shows_t50_per_group_in_chromium(logged, ui):
    client, parent, _ = logged
    experiment = client.get_run(parent).info.experiment_id
    metrics = page_text(ui + ui_page(experiment, parent), "t50 (2)")
    # Its sections are the metrics' prefixes, first the groups whose T50 is a number, then the censored
    # ones (the charts inside draw later, as they scroll into view); nothing else is a metric.
    sections = re.findall(r"(\w+) \((\d+)\) Add chart", metrics)
    assert sections[:3] == [("t50", "2"), ("t50_at_least", "1"), ("t50_below", "1")], sections
    assert "success_rate" not in metrics
    # the description's first line, rendered (with or without the interval: an earlier test of this
    # module logs the report again without one)
    answer = "T50 , the longest lag d (steps) where the success rate falls below 0.5"
    overview = page_text(ui + f"#/experiments/{experiment}/runs/{parent}?workflowType=machine_learning", answer)
    assert "12-07 00:41 T50 lstm none < 10, lstm pre 17.1" in overview  # the run's name, as its page title
    assert answer in overview and "rnn, none 27.5" in overview
