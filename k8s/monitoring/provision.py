"""`python -m k8s.monitoring.provision`: create or update, in Grafana, the Prometheus
datasource and the Tandem dashboard (in a folder of its own). Idempotent: a second run with
the same inputs changes nothing. Exit status 2 with a message on bad URL or credentials.

Credentials: --user/--password, or --token (a service account token); the environment
variables GRAFANA_USER, GRAFANA_PASSWORD and GRAFANA_TOKEN are read when the options are unset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from k8s.monitoring.grafana import Grafana, ProvisionError

DASHBOARD_JSON = Path(__file__).resolve().parent / "tandem-dashboard.json"
Change = Literal["created", "updated", "unchanged"]


class ProvisionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grafana_url: str = Field(description="Grafana base URL, e.g. http://localhost:3000.")
    user: str | None = Field(None, description="Basic-auth user (with --password).")
    password: str | None = Field(None, description="Basic-auth password.")
    token: str | None = Field(None, description="Service account token (instead of a user).")
    prometheus_url: str = Field(description="Prometheus URL as Grafana's server reaches it.")
    datasource_name: str = Field("Tandem Prometheus", description="Datasource name.")
    datasource_uid: str = Field("tandem-prometheus", description="Datasource uid.")
    folder_title: str = Field("Tandem", description="Folder of the dashboard.")
    folder_uid: str = Field("tandem", description="Folder uid.")
    dashboard: Path = Field(DASHBOARD_JSON, description="Dashboard JSON to provision.")
    timeout_s: float = Field(10, gt=0, description="Timeout of each Grafana call.")

    @model_validator(mode="after")
    def _credentials(self) -> ProvisionSettings:
        if self.token is None and (self.user is None or self.password is None):
            raise ValueError("give --token, or --user and --password (or GRAFANA_* variables)")
        if not self.grafana_url.startswith(("http://", "https://")):
            raise ValueError(f"--grafana-url {self.grafana_url!r} needs http:// or https://")
        return self

    def credential(self) -> str | tuple[str, str]:
        if self.token is not None:
            return self.token
        assert self.user is not None and self.password is not None
        return (self.user, self.password)


class ProvisionResult(BaseModel):
    grafana_version: str
    datasource: Change
    folder: Change
    dashboard: Change
    dashboard_url: str


def datasource_body(settings: ProvisionSettings) -> dict[str, Any]:
    return {
        "uid": settings.datasource_uid,
        "name": settings.datasource_name,
        "type": "prometheus",
        "access": "proxy",
        "url": settings.prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }


def dashboard_for(board: dict[str, Any], datasource_uid: str) -> dict[str, Any]:
    """The dashboard with its datasource variable defaulting to our datasource."""
    board = json.loads(json.dumps(board))
    board.pop("id", None)
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource":
            variable["current"] = {"text": datasource_uid, "value": datasource_uid}
    return board


def provision(grafana: Grafana, settings: ProvisionSettings) -> ProvisionResult:
    version = grafana.check()
    board = dashboard_for(_read_dashboard(settings.dashboard), settings.datasource_uid)
    datasource = _ensure_datasource(grafana, settings)
    folder = _ensure_folder(grafana, settings)
    dashboard, url = _ensure_dashboard(grafana, board, settings.folder_uid)
    return ProvisionResult(
        grafana_version=version,
        datasource=datasource,
        folder=folder,
        dashboard=dashboard,
        dashboard_url=f"{grafana.url}{url}",
    )


def _ensure_datasource(grafana: Grafana, settings: ProvisionSettings) -> Change:
    api = grafana.api.datasource
    wanted = datasource_body(settings)
    current = grafana.get(
        "read the datasource", lambda: api.get_datasource_by_uid(settings.datasource_uid)
    )
    if current is None:
        by_name = grafana.get(
            "read datasources", lambda: api.get_datasource_by_name(settings.datasource_name)
        )
        if by_name is not None:
            raise ProvisionError(
                f"a datasource named {settings.datasource_name!r} exists with uid "
                f"{by_name.get('uid')!r}; pass --datasource-uid {by_name.get('uid')} to "
                "update it, or --datasource-name to create another"
            )
        grafana.call("create the datasource", lambda: api.create_datasource(wanted))
        return "created"
    if all(current.get(k) == v for k, v in wanted.items()):
        return "unchanged"
    grafana.call(
        "update the datasource",
        lambda: api.update_datasource_by_uid(settings.datasource_uid, wanted),
    )
    return "updated"


def _ensure_folder(grafana: Grafana, settings: ProvisionSettings) -> Change:
    folders = grafana.api.folder
    current = grafana.get("read the folder", lambda: folders.get_folder(settings.folder_uid))
    if current is not None:
        return "unchanged"
    grafana.call(
        "create the folder",
        lambda: folders.create_folder(settings.folder_title, uid=settings.folder_uid),
    )
    return "created"


def _ensure_dashboard(
    grafana: Grafana, board: dict[str, Any], folder_uid: str
) -> tuple[Change, str]:
    api = grafana.api.dashboard
    current = grafana.get("read the dashboard", lambda: api.get_dashboard(board["uid"]))
    if current is not None and _same_dashboard(current, board, folder_uid):
        return "unchanged", str(current.get("meta", {}).get("url", ""))
    payload = {
        "dashboard": board,
        "folderUid": folder_uid,
        "overwrite": True,
        "message": "provisioned by python -m k8s.monitoring.provision",
    }
    saved = grafana.call("save the dashboard", lambda: api.update_dashboard(payload)) or {}
    return ("created" if current is None else "updated"), str(saved.get("url", ""))


def _same_dashboard(current: dict[str, Any], board: dict[str, Any], folder_uid: str) -> bool:
    ignored = ("id", "version")
    stored = {k: v for k, v in current.get("dashboard", {}).items() if k not in ignored}
    wanted = {k: v for k, v in board.items() if k not in ignored}
    return stored == wanted and current.get("meta", {}).get("folderUid") == folder_uid


def _read_dashboard(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ProvisionError(f"cannot read the dashboard {path}: {e}") from e


def parse_args(argv: list[str] | None = None) -> ProvisionSettings:
    p = argparse.ArgumentParser(
        prog="python -m k8s.monitoring.provision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grafana-url", required=True)
    p.add_argument("--user", default=os.environ.get("GRAFANA_USER"))
    p.add_argument("--password", default=os.environ.get("GRAFANA_PASSWORD"))
    p.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"))
    p.add_argument(
        "--prometheus-url",
        required=True,
        help="as Grafana's server reaches it, e.g. http://prometheus-operated:9090",
    )
    p.add_argument("--datasource-name")
    p.add_argument("--datasource-uid")
    p.add_argument("--folder-title")
    p.add_argument("--folder-uid")
    p.add_argument("--dashboard", type=Path)
    p.add_argument("--timeout", type=float, dest="timeout_s")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    try:
        return ProvisionSettings.model_validate(args)
    except ValidationError as e:
        p.error("; ".join(err["msg"] for err in e.errors()))
        raise


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    grafana = Grafana(settings.grafana_url, settings.credential(), settings.timeout_s)
    try:
        result = provision(grafana, settings)
    except ProvisionError as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2
    print(
        f"Grafana {result.grafana_version}: datasource {settings.datasource_uid} "
        f"{result.datasource}, folder {settings.folder_uid} {result.folder}, dashboard "
        f"{result.dashboard} at {result.dashboard_url}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
