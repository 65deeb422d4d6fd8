"""The Serve REST API of a Ray dashboard, as `serve deploy` and `serve status` use it (no Ray import).

A deploy PUTs the whole declarative config and Serve reconciles towards it, so a later deploy that changes only
a deployment's `user_config` reconfigures its replicas in place: how a promoted ranker reaches every replica.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

APP_NAME = "opensesame"


def deploy(dashboard_url: str, config: dict[str, Any]) -> None:
    """What `serve deploy` does: PUT the declarative config; Serve reconciles towards it."""
    response = httpx.put(f"{dashboard_url}/api/serve/applications/", json=config, timeout=60)
    if response.status_code != 200:
        # A refusal's cause is at the end of the dashboard's traceback (HAProxy's own message, say).
        text = response.text if len(response.text) <= 3000 else "..." + response.text[-3000:]
        raise RuntimeError(f"serve deploy refused the config ({response.status_code}): {text}")


def app_status(dashboard_url: str) -> dict[str, Any]:
    status = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=10).json()
    return status.get("applications", {}).get(APP_NAME, {})


def wait_running(
    dashboard_url: str, timeout_s: float = 300, since: float | None = None, answering: str | None = None
) -> None:
    """Until the app is RUNNING (after the deploy submitted at wall time `since`), or, with `answering` (the
    ingress's /readyz), until that answers 200: the ranker serves before a slow deployment (the vLLM generator,
    which predictions wait for no longer than their budget) is up. A failed deploy raises."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = app_status(dashboard_url)
        fresh = since is None or state.get("last_deployed_time_s", 0) >= since
        if fresh and state.get("status") == "RUNNING":
            return
        if fresh and state.get("status") == "DEPLOY_FAILED":
            raise RuntimeError(f"deploy failed: {_messages(state)}")
        if fresh and answering is not None and _answers(answering):
            return
        time.sleep(1)
    raise TimeoutError(f"app not RUNNING after {timeout_s:.0f} s: {state.get('status')} {_messages(state)}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:  # the port not open yet, or the proxy still starting
        return False


def reload_ranker(dashboard_url: str, version: str, timeout_s: float = 300) -> dict[str, Any]:
    """After a promotion: redeploy the running app's own config with the Ranker's `user_config.version` set to
    the new champion. Only a `user_config` changes, so Serve reconfigures the replicas in place (no restart)."""
    started = time.monotonic()
    try:
        config = running_config(dashboard_url)
    except httpx.HTTPError as exc:
        return {"reloaded": False, "why": f"no Ray dashboard at {dashboard_url} ({exc}); replicas pick the new "
                                          "champion up at their next alias check"}
    except LookupError as exc:
        return {"reloaded": False, "why": str(exc)}
    ranker = deployment(config, "Ranker")
    ranker["user_config"] = {**(ranker.get("user_config") or {}), "version": version}
    submitted = time.time()
    deploy(dashboard_url, config)
    wait_running(dashboard_url, timeout_s=timeout_s, since=submitted)
    return {"reloaded": True, "seconds": round(time.monotonic() - started, 2)}


def running_config(dashboard_url: str) -> dict[str, Any]:
    """The declarative config the cluster runs now (what `serve deploy` last put), ready to change and deploy."""
    details = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=10).json()
    apps = details.get("applications", {})
    if APP_NAME not in apps or not apps[APP_NAME].get("deployed_app_config"):
        raise LookupError(f"no Serve app {APP_NAME!r} deployed at {dashboard_url}")
    configs = [app["deployed_app_config"] for app in apps.values() if app.get("deployed_app_config")]
    config = {"proxy_location": details.get("proxy_location"), "http_options": details.get("http_options"),
              "applications": configs}
    return {k: v for k, v in config.items() if v is not None}


def application(config: dict[str, Any]) -> dict[str, Any]:
    """Our app in a config (the dict itself: changing it changes the config)."""
    return next(app for app in config["applications"] if app["name"] == APP_NAME)


def deployment(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Our app's deployment `name` in a config (the dict itself: changing it changes the config)."""
    return next(d for d in application(config).get("deployments", []) if d["name"] == name)


def _messages(state: dict[str, Any]) -> str:
    parts = [state.get("message", "")]
    for name, deployment in state.get("deployments", {}).items():
        if deployment.get("message"):
            parts.append(f"{name}: {deployment['message']}")
    return " | ".join(p for p in parts if p)[:4000]
