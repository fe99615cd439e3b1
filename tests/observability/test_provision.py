"""`python -m k8s.monitoring.provision` against a fake Grafana: creates, then leaves alone,
then updates what changed; clear errors for a bad URL or bad credentials."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from k8s.monitoring.dashboard import UID
from k8s.monitoring.provision import DASHBOARD_JSON, main
from tests.observability.fake_grafana import PASSWORD, TOKEN, USER, fake_grafana

PROMETHEUS = "http://prometheus.monitoring:9090"


def _provision(url: str, *extra: str, prometheus: str = PROMETHEUS) -> int:
    return main(["--grafana-url", url, "--prometheus-url", prometheus, *extra])


def _basic() -> list[str]:
    return ["--user", USER, "--password", PASSWORD]


def test_first_run_creates_datasource_folder_and_dashboard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with fake_grafana() as (url, state):
        assert _provision(url, *_basic()) == 0
    out = capsys.readouterr().out
    assert "datasource tandem-prometheus created" in out
    assert "dashboard created" in out
    ds = state.datasources["tandem-prometheus"]
    assert (ds["type"], ds["url"], ds["access"]) == ("prometheus", PROMETHEUS, "proxy")
    board = state.dashboards[UID]
    assert board["meta"]["folderUid"] == "tandem"
    shipped = json.loads(DASHBOARD_JSON.read_text())
    assert [p["title"] for p in board["dashboard"]["panels"]] == [
        p["title"] for p in shipped["panels"]
    ]
    (variable,) = [v for v in board["dashboard"]["templating"]["list"] if v["name"] == "datasource"]
    assert variable["current"]["value"] == "tandem-prometheus"


def test_second_run_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_grafana() as (url, state):
        assert _provision(url, *_basic()) == 0
        writes = list(state.writes)
        assert _provision(url, "--token", TOKEN) == 0
        assert state.writes == writes
        assert state.dashboards[UID]["dashboard"]["version"] == 1
    out = capsys.readouterr().out.splitlines()[-1]
    assert "datasource tandem-prometheus unchanged, folder tandem unchanged" in out
    assert "dashboard unchanged" in out


def test_changed_inputs_are_updated_in_place(tmp_path: Path) -> None:
    board = json.loads(DASHBOARD_JSON.read_text())
    board["title"] = "Tandem (staging)"
    edited = tmp_path / "dashboard.json"
    edited.write_text(json.dumps(board))
    with fake_grafana() as (url, state):
        assert _provision(url, *_basic()) == 0
        new_prometheus = "http://prometheus-2:9090"
        changed = ["--dashboard", str(edited)]
        assert _provision(url, *_basic(), *changed, prometheus=new_prometheus) == 0
        assert len(state.datasources) == 1 and len(state.dashboards) == 1
        assert state.datasources["tandem-prometheus"]["url"] == new_prometheus
        assert state.dashboards[UID]["dashboard"]["title"] == "Tandem (staging)"
        assert state.dashboards[UID]["dashboard"]["version"] == 2


def test_wrong_password_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_grafana() as (url, state):
        assert _provision(url, "--user", USER, "--password", "wrong") == 2
        assert state.writes == []
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "--user/--password or --token" in err


def test_unreachable_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    assert _provision(f"http://127.0.0.1:{port}", *_basic(), "--timeout", "3") == 2
    err = capsys.readouterr().err
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in err and "--grafana-url" in err


def test_a_url_that_is_not_grafana_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    class NotGrafana(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = b"<html>welcome to nginx</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotGrafana)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert _provision(url, *_basic()) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert "did not answer like Grafana" in capsys.readouterr().err


def test_missing_credentials_are_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GRAFANA_USER", "GRAFANA_PASSWORD", "GRAFANA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        _provision("http://127.0.0.1:1")
    assert exit_info.value.code == 2
    assert "give --token, or --user and --password" in capsys.readouterr().err


def test_a_datasource_name_taken_by_another_uid_is_explained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with fake_grafana() as (url, _):
        assert _provision(url, *_basic(), "--datasource-uid", "other") == 0
        assert _provision(url, *_basic()) == 2
    assert "pass --datasource-uid other" in capsys.readouterr().err
