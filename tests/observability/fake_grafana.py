"""A small stand-in for Grafana's HTTP API (the endpoints provisioning uses, with Grafana's
status codes and shapes), keeping its state in memory for the tests to inspect."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

USER, PASSWORD, TOKEN = "admin", "s3cret", "glsa_test_token"


@dataclass
class GrafanaState:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, meta}
    writes: list[str] = field(default_factory=list)  # "POST /api/..." of every change


Reply = tuple[int, dict[str, Any]]


class _Api:
    def __init__(self, state: GrafanaState) -> None:
        self.s = state
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            for pattern, verb, fn in self.routes():
                match = re.fullmatch(pattern, path)
                if match and verb == method:
                    return fn(body, *match.groups())
        return 404, {"message": "Not found"}

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            (r"/api/org", "GET", lambda b: (200, {"id": 1, "name": "Main Org."})),
            (r"/api/datasources/uid/([^/]+)", "GET", self.get_datasource),
            (r"/api/datasources/name/([^/]+)", "GET", self.get_datasource_by_name),
            (r"/api/datasources", "POST", self.create_datasource),
            (r"/api/datasources/uid/([^/]+)", "PUT", self.update_datasource),
            (r"/api/folders/([^/]+)", "GET", self.get_folder),
            (r"/api/folders", "POST", self.create_folder),
            (r"/api/dashboards/uid/([^/]+)", "GET", self.get_dashboard),
            (r"/api/dashboards/db", "POST", self.save_dashboard),
        ]

    def get_datasource(self, body: dict, uid: str) -> Reply:
        found = self.s.datasources.get(uid)
        return (200, found) if found else (404, {"message": "Data source not found"})

    def get_datasource_by_name(self, body: dict, name: str) -> Reply:
        for ds in self.s.datasources.values():
            if ds["name"] == name:
                return 200, ds
        return 404, {"message": "Data source not found"}

    def create_datasource(self, body: dict) -> Reply:
        if any(ds["name"] == body["name"] for ds in self.s.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        ds = {**body, "id": len(self.s.datasources) + 1, "orgId": 1}
        self.s.datasources[body["uid"]] = ds
        self.s.writes.append("POST /api/datasources")
        return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added"}

    def update_datasource(self, body: dict, uid: str) -> Reply:
        if uid not in self.s.datasources:
            return 404, {"message": "Data source not found"}
        self.s.datasources[uid] = {**self.s.datasources[uid], **body}
        self.s.writes.append(f"PUT /api/datasources/uid/{uid}")
        return 200, {"datasource": self.s.datasources[uid], "message": "Datasource updated"}

    def get_folder(self, body: dict, uid: str) -> Reply:
        found = self.s.folders.get(uid)
        return (200, found) if found else (404, {"message": "folder not found"})

    def create_folder(self, body: dict) -> Reply:
        folder = {"uid": body["uid"], "title": body["title"], "id": len(self.s.folders) + 1}
        self.s.folders[body["uid"]] = folder
        self.s.writes.append("POST /api/folders")
        return 200, folder

    def get_dashboard(self, body: dict, uid: str) -> Reply:
        found = self.s.dashboards.get(uid)
        return (200, found) if found else (404, {"message": "Dashboard not found"})

    def save_dashboard(self, body: dict) -> Reply:
        board, folder = body["dashboard"], body.get("folderUid")
        if folder not in self.s.folders:
            return 400, {"message": "folder not found"}
        old = self.s.dashboards.get(board["uid"])
        if old and not body.get("overwrite"):
            return 412, {"message": "A dashboard with the same uid already exists"}
        version = old["dashboard"]["version"] + 1 if old else 1
        url = f"/d/{board['uid']}/tandem"
        stored = {**board, "id": 7, "version": version}
        self.s.dashboards[board["uid"]] = {
            "dashboard": stored,
            "meta": {"folderUid": folder, "url": url, "version": version},
        }
        self.s.writes.append("POST /api/dashboards/db")
        return 200, {"id": 7, "uid": board["uid"], "url": url, "status": "success",
                     "version": version}  # fmt: skip


def _authorized(header: str | None) -> bool:
    if header is None:
        return False
    if header == f"Bearer {TOKEN}":
        return True
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return header == f"Basic {expected}"


def _handler(api: _Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            if self.path == "/api/health":
                status, reply = 200, {"database": "ok", "version": "11.3.0-fake"}
            elif not _authorized(self.headers.get("Authorization")):
                status, reply = 401, {"message": "Unauthorized"}
            else:
                status, reply = api.handle(method, unquote(self.path.split("?")[0]), body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

    return Handler


@contextmanager
def fake_grafana() -> Iterator[tuple[str, GrafanaState]]:
    """(base URL, state) of a fake Grafana on a free loopback port."""
    state = GrafanaState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_Api(state)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
