"""Tracking URIs and what is kept of them (issue 24): bad ones are bad input (exit 2) at once, the
report never writes into a database, credentials are never printed or stored, files are private."""

from __future__ import annotations

import base64
import http.server
import sqlite3
import stat
import threading
import time

import pytest
from conftest import SMALL

from flosssweep import provenance, run, trial
from flosssweep.report import cli as report_cli
from flosssweep.tracking import store


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "uri, words",
    [
        ("sqlite:////proc/flosssweep/mlflow.db", "/proc"),
        ("sqlite:///{tmp}/missing/dir/mlflow.db", "does not exist"),
        ("sqlite:///{tmp}", "is a directory"),
        ("sqlite:///:memory:", "in-memory database"),
        ("http://[::1", "malformed"),
        ("http://127.0.0.1:99999", "malformed"),
    ],
)
def test_unusable_tracking_uri_exits_2_quickly(uri, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code = run.main(["quickstart", "--tracking-uri", uri.format(tmp=tmp_path), "--storage-path", str(tmp_path / "r")])
    assert code == 2
    assert time.monotonic() - started < 15
    assert words in one_line(capsys)


def test_ray_address_port_out_of_range_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run.main(["quickstart", "--address", "127.0.0.1:99999", "--storage-path", str(tmp_path / "r")]) == 2
    assert "--address" in one_line(capsys)


def test_report_never_creates_tables_in_an_unrelated_sqlite_file(tmp_path, capsys):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    assert report_cli.main(["--tracking-uri", f"sqlite:///{path}", "--no-log"]) == 2
    assert "not an MLflow tracking store" in one_line(capsys)
    assert path.read_bytes() == before
    empty = tmp_path / "empty.db"
    empty.touch()
    assert report_cli.main(["--tracking-uri", f"sqlite:///{empty}", "--no-log"]) == 2
    one_line(capsys)
    assert empty.stat().st_size == 0


def test_credentials_redacted_in_error_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = "http://alice:s3cretpw@127.0.0.1:1"
    assert run.main(["quickstart", "--tracking-uri", uri, "--storage-path", str(tmp_path / "r")]) == 3
    err = one_line(capsys)
    assert "s3cretpw" not in err and "alice:***@127.0.0.1:1" in err
    assert report_cli.main(["--tracking-uri", uri, "--no-log"]) == 3
    err = one_line(capsys)
    assert "s3cretpw" not in err


def test_command_line_stored_without_secrets():
    argv = ["run.py", "q", "--tracking-uri", "http://alice:s3cretpw@h:5000", "--password", "pw2", "AWS_SECRET=x9"]
    command = provenance.collect(argv)["command"]
    assert "s3cretpw" not in command and "pw2" not in command and "x9" not in command
    assert "alice:***@h:5000" in command and "q" in command


class _BasicAuthHealth(http.server.BaseHTTPRequestHandler):
    """/health behind basic authentication, as a proxy in front of an MLflow server answers it."""

    expected = "Basic " + base64.b64encode(b"alice:s3cret pw").decode()

    def do_GET(self):  # noqa: N802 - http.server's name
        ok = self.path == "/health" and self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"")

    def log_message(self, *args):
        pass


def test_basic_auth_tracking_uri_passes_the_health_probe():
    server = http.server.HTTPServer(("127.0.0.1", 0), _BasicAuthHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        store._check_server(f"http://alice:s3cret%20pw@127.0.0.1:{port}", timeout=5, attempts=1)
        with pytest.raises(store.TrackingUnavailable, match="401") as refused:
            store._check_server(f"http://alice:wrong@127.0.0.1:{port}", timeout=5, attempts=1)
        assert "wrong" not in str(refused.value)
    finally:
        server.shutdown()
        server.server_close()


def test_results_files_are_private(tmp_path, capsys):
    out = tmp_path / "deep" / "r.parquet"
    args = [f"{k}={v}" for k, v in SMALL.items()] + ["task.delay=4", "train.epochs=10", "--quiet", "--out", str(out)]
    assert trial.main(args) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
