"""`smartcity dashboards push`: upload the committed dashboards to a running Grafana.

Uses grafana-client (the maintained successor of grafana-api). Each dashboard is saved with
`overwrite`, so pushing again updates it in place (same uid). The datasource uids in the
queries are rewritten when the target Grafana's PostgreSQL or Prometheus datasource has
another uid.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from dashboards.check import load, panels
from dashboards.sql import DATASOURCE_UID, PLUGIN_TYPE, PROMETHEUS_TYPE, PROMETHEUS_UID
from smartcity.errors import ServiceUnavailableError


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    url: str


def with_datasource(
    data: dict[str, Any], uid: str, prometheus_uid: str = PROMETHEUS_UID
) -> dict[str, Any]:
    """A copy of `data` whose PostgreSQL references point at datasource `uid`, and whose
    Prometheus references at `prometheus_uid`."""
    out = copy.deepcopy(data)
    uids = {PLUGIN_TYPE: uid, PROMETHEUS_TYPE: prometheus_uid}

    def fix(ref: Any) -> None:
        if isinstance(ref, dict) and ref.get("type") in uids:
            ref["uid"] = uids[ref["type"]]

    for panel in panels(out):
        fix(panel.get("datasource"))
        for target in panel.get("targets", []):
            fix(target.get("datasource"))
    for var in out.get("templating", {}).get("list", []):
        fix(var.get("datasource"))
    return out


def push(
    url: str,
    token: str,
    *,
    datasource_uid: str = DATASOURCE_UID,
    prometheus_uid: str = PROMETHEUS_UID,
    folder_uid: str | None = None,
) -> list[Pushed]:
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(url, credential=token)
    pushed: list[Pushed] = []
    for data in load().values():
        body: dict[str, Any] = {
            "dashboard": {**with_datasource(data, datasource_uid, prometheus_uid), "id": None},
            "overwrite": True,
            "message": "smartcity dashboards push",
        }
        if folder_uid:
            body["folderUid"] = folder_uid
        try:
            answer = api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise ServiceUnavailableError(
                f"Grafana at {url} refused dashboard {data.get('uid')!r}: {exc}. Check the URL "
                "and that the token belongs to a service account with the Editor role"
            ) from exc
        except Exception as exc:
            raise ServiceUnavailableError(f"cannot reach Grafana at {url}: {exc}") from exc
        pushed.append(Pushed(str(data.get("uid")), str(data.get("title")), str(answer.get("url"))))
    return pushed
