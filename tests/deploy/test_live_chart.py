"""The chart's live-caption edge: off by default; on, its own Deployment, Service and policies."""

from __future__ import annotations

import json

from tests.deploy.conftest import FULLNAME, ChartRenderer

LIVE = {
    "live": {
        "enabled": True,
        "allowedOrigins": ["https://captions.example.com"],
        "settings": {"live_max_connections": 200},
    },
    "auth": {"existingSecret": "soriflow-token"},
}


def test_live_edge_is_off_by_default(chart: ChartRenderer) -> None:
    rendered = chart.render()
    assert rendered.find("Deployment", f"{FULLNAME}-live") is None
    assert rendered.find("NetworkPolicy", f"{FULLNAME}-live-to-stt") is None


def test_live_edge_runs_from_the_gateway_image_with_its_settings(chart: ChartRenderer) -> None:
    rendered = chart.render(LIVE)
    container = rendered.container("live")
    assert container["args"] == ["serve", "live"]
    pod = rendered.pod_spec("live")
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == rendered.pod_spec("gateway")["securityContext"]
    assert container["securityContext"] == rendered.container("gateway")["securityContext"]
    assert container["image"] == rendered.container("gateway")["image"]
    env = {e["name"]: e for e in container["env"]}
    assert json.loads(env["SORIFLOW_LIVE_ALLOWED_ORIGINS"]["value"]) == ["https://captions.example.com"]
    assert env["SORIFLOW_LIVE_MAX_CONNECTIONS"]["value"] == "200"
    assert env["SORIFLOW_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "soriflow-token"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    common = rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]
    assert common["SORIFLOW_STT_ADDRESS"].startswith(f"{FULLNAME}-stt.")  # where the edge streams to
    service = rendered.get("Service", f"{FULLNAME}-live")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8080, "metrics": 9155}


def test_live_edge_may_reach_stt_through_its_own_additive_policy(chart: ChartRenderer) -> None:
    rendered = chart.render(LIVE)
    to_stt = rendered.get("NetworkPolicy", f"{FULLNAME}-live-to-stt")
    stt_pods = rendered.deployment("stt")["spec"]["selector"]["matchLabels"]
    assert to_stt["spec"]["podSelector"]["matchLabels"] == stt_pods
    live_pods = rendered.deployment("live")["spec"]["selector"]["matchLabels"]
    assert to_stt["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": live_pods}}]
    # The STT service's own policy is unchanged: the edge is admitted by the added policy alone.
    assert rendered.get("NetworkPolicy", f"{FULLNAME}-stt") == chart.render().get(
        "NetworkPolicy", f"{FULLNAME}-stt"
    )
