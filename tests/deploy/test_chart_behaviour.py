"""What the rendered chart does, value set by value set: GPUs only where meant, probes,
security, autoscaling, models, secrets by reference, network policies, settings.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from tests.deploy.conftest import (
    COMPONENTS,
    FULLNAME,
    GPU_COMPONENTS,
    GRPC_PORTS,
    METRICS_PORTS,
    NAMESPACE,
    STAGES,
    ChartRenderer,
    Rendered,
    merged,
    secret_placeholder,
    value_set,
)

GPU_RESOURCE_PREFIX = "nvidia.com/"
CACHE_OWNER_SECURITY = {
    "runAsUser": 0,
    "runAsGroup": 0,
    "runAsNonRoot": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
}


def env_names(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def gpu_limits(container: dict[str, Any]) -> dict[str, Any]:
    limits = container.get("resources", {}).get("limits", {})
    return {k: v for k, v in limits.items() if k.startswith(GPU_RESOURCE_PREFIX)}


# --- GPUs ------------------------------------------------------------------------------------


def test_gpu_limits_only_on_the_gpu_services_by_default(chart: ChartRenderer) -> None:
    rendered = chart.render()
    for name in COMPONENTS:
        limits = gpu_limits(rendered.container(name))
        spec = rendered.pod_spec(name)
        tolerations = [t["key"] for t in spec.get("tolerations", [])]
        if name in GPU_COMPONENTS:
            assert limits == {"nvidia.com/gpu": 1}, name
            assert "nvidia.com/gpu" in tolerations
            assert rendered.config(name)[f"SORIFLOW_{name.upper()}_DEVICE"] == "cuda"
            assert rendered.container(name)["image"].endswith(f"soriflow-{name}:0.1.0")
        else:
            assert limits == {}, name
            assert "nvidia.com/gpu" not in tolerations
        assert "runtimeClassName" not in spec


def test_cpu_mode_requests_no_gpu_anywhere(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("cpu"))
    for name in COMPONENTS:
        spec = rendered.pod_spec(name)
        assert gpu_limits(rendered.container(name)) == {}, name
        assert not any(t.get("key", "").startswith(GPU_RESOURCE_PREFIX) for t in spec.get("tolerations", []))
        assert "runtimeClassName" not in spec
    for name in GPU_COMPONENTS:
        assert rendered.config(name)[f"SORIFLOW_{name.upper()}_DEVICE"] == "cpu"
        assert rendered.container(name)["image"].endswith(f"soriflow-{name}:0.1.0-cpu")
    assert "CPU only" in rendered.notes


def test_gpu_selection_mig_and_runtime_class(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("pvc-models"))
    stt = rendered.pod_spec("stt")
    assert stt["runtimeClassName"] == "nvidia"
    assert stt["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-name": "l4"}
    assert gpu_limits(rendered.container("summarizer")) == {"nvidia.com/mig-3g.40gb": 1}
    assert "nodeSelector" not in rendered.pod_spec("scoring")


def test_one_gpu_service_on_cpu_keeps_the_other_on_gpu(chart: ChartRenderer) -> None:
    rendered = chart.render({"summarizer": {"gpu": {"enabled": False}}})
    assert gpu_limits(rendered.container("stt")) == {"nvidia.com/gpu": 1}
    assert gpu_limits(rendered.container("summarizer")) == {}
    assert rendered.container("summarizer")["image"].endswith("-cpu")


# --- probes ----------------------------------------------------------------------------------


def test_native_grpc_probes_against_the_health_service(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    tls = rendered.values.get("tls", {}).get("enabled", False)
    for component in COMPONENTS:
        container = rendered.container(component)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": GRPC_PORTS[component], "metrics": METRICS_PORTS[component]}
        probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")}
        for kind, probe in probes.items():
            if tls:  # the kubelet's gRPC probe cannot do TLS: the CLI checks from inside
                command = probe["exec"]["command"]
                assert command[:3] == ["soriflow", "health", f"localhost:{GRPC_PORTS[component]}"]
                assert float(command[command.index("--timeout") + 1]) < probe["timeoutSeconds"]
                assert "grpc" not in probe
            else:
                assert probe["grpc"] == {"port": GRPC_PORTS[component]}, (name, component, kind)
        # readiness and liveness are separate: liveness tolerates longer trouble before a restart
        readiness, liveness = probes["readiness"], probes["liveness"]
        assert readiness != liveness
        assert (
            liveness["periodSeconds"] * liveness["failureThreshold"]
            > readiness["periodSeconds"] * readiness["failureThreshold"]
        )
        startup = probes["startup"]
        window = startup["periodSeconds"] * startup["failureThreshold"]
        minimum = 600 if component in GPU_COMPONENTS else 300
        assert window >= minimum, f"{name}/{component}: startup window {window}s"


# --- security --------------------------------------------------------------------------------


def test_pods_run_non_root_with_a_read_only_root(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    pods = list(rendered.pods())
    # the five Deployments, the helm test pod, and the migration Job with a PostgreSQL store
    assert len(pods) == len(COMPONENTS) + 1 + len(rendered.kind("Job"))
    for pod_name, spec in pods:
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True, pod_name
        assert sc["runAsUser"] == 10001, pod_name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert not spec.get("hostNetwork")
        assert not spec.get("hostPID")
        assert not spec.get("hostIPC")
        mounts_by_container = {}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            csc = container["securityContext"]
            if container["name"] == "model-cache-owner":  # the one root step: chown of the node cache
                assert csc == CACHE_OWNER_SECURITY, pod_name
                assert container["command"] == ["chown", "10001:10001", "/var/cache/soriflow"]
                assert {m["name"] for m in container["volumeMounts"]} == {"tmp", "model-cache"}
                assert {v["name"]: v for v in spec["volumes"]}["model-cache"]["hostPath"]["type"] == (
                    "DirectoryOrCreate"
                )
                continue
            assert csc["readOnlyRootFilesystem"] is True, (pod_name, container["name"])
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["capabilities"] == {"drop": ["ALL"]}
            assert csc.get("privileged") is False
            mounts_by_container[container["name"]] = {m["mountPath"] for m in container["volumeMounts"]}
            # a read-only root needs somewhere to write: /tmp always, the cache for services
            assert "/tmp" in mounts_by_container[container["name"]]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        for volume in volumes.values():
            if "hostPath" in volume:  # only the node model cache: opted into, or s3 models by default
                assert volume["name"] == "model-cache"
                assert name in {"tls", "s3-models"} or rendered.values.get("models", {}).get("source") == "s3"


def test_services_write_only_to_mounted_volumes(rendered_set: tuple[str, Rendered]) -> None:
    _, rendered = rendered_set
    for component in COMPONENTS:
        config = rendered.config(component)
        mounts = {m["mountPath"] for m in rendered.container(component)["volumeMounts"]}
        assert config["SORIFLOW_CACHE_DIR"] in mounts
        assert env_names(rendered.container(component))["HOME"]["value"] == "/tmp"
    gateway = rendered.config("gateway")
    if "SORIFLOW_GATEWAY_DATABASE_URL" in gateway:  # embedded SQLite: a file on a volume
        path = gateway["SORIFLOW_GATEWAY_DATABASE_URL"].removeprefix("sqlite:///")
        assert os.path.dirname(path) in {
            m["mountPath"] for m in rendered.container("gateway")["volumeMounts"]
        }


# --- settings --------------------------------------------------------------------------------


def _settings_class(component: str) -> type[Any]:
    import importlib

    module = importlib.import_module(f"soriflow.{component}.settings")
    cls: type[Any] = module.Settings
    return cls


def test_every_setting_the_chart_writes_exists_and_parses(
    rendered_set: tuple[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings ignore unknown SORIFLOW_* variables, so a misspelt one would silently do nothing:
    every variable the chart sets must be a field of that service's Settings, and the service's
    Settings must accept the rendered values (types, enums, ranges)."""
    name, rendered = rendered_set
    for component in COMPONENTS:
        cls = _settings_class(component)
        fields = {f"SORIFLOW_{f.upper()}" for f in cls.model_fields}
        env = dict(rendered.config(component))
        for entry in rendered.container(component).get("env", []):
            if entry["name"].startswith("SORIFLOW_"):
                env[entry["name"]] = entry.get("value", secret_placeholder(entry["name"]))
        unknown = sorted(set(env) - fields)
        assert not unknown, f"{name}/{component}: not settings of soriflow.{component}: {unknown}"
        for key in list(os.environ):
            if key.startswith("SORIFLOW_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = cls()
        assert settings.port == GRPC_PORTS[component]
        assert settings.metrics_port == METRICS_PORTS[component]


def test_peer_addresses_point_at_the_services(rendered_set: tuple[str, Rendered]) -> None:
    _, rendered = rendered_set
    common = rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]
    for component in COMPONENTS:
        host, port = common[f"SORIFLOW_{component.upper()}_ADDRESS"].rsplit(":", 1)
        assert host == f"{FULLNAME}-{component}.{NAMESPACE}.svc"
        service = rendered.get("Service", f"{FULLNAME}-{component}")
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc["port"] == int(port)


def test_extra_settings_become_environment_variables(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("keda"))
    tts = rendered.config("tts")
    assert tts["SORIFLOW_TTS_ENGINES"] == '["google","espeak-ng"]'  # JSON, as pydantic reads lists
    assert tts["SORIFLOW_TTS_DEFAULT_ENGINE"] == "google"
    assert rendered.config("gateway")["SORIFLOW_GATEWAY_CONCURRENCY"] == "8"
    big = chart.render({"gateway": {"settings": {"audio_max_bytes": 2_000_000_000}}})
    assert big.config("gateway")["SORIFLOW_AUDIO_MAX_BYTES"] == "2000000000"  # no 2e+09


def test_gateway_ingest_and_notification_settings(chart: ChartRenderer) -> None:
    import json

    import yaml

    rendered = chart.render(value_set("keda"))
    gateway = rendered.config("gateway")
    assert json.loads(gateway["SORIFLOW_GATEWAY_INPUT_URIS"]) == [
        "s3://acme-speech-input/connect/",
        "s3://acme-speech-input/transcribe/",
    ]
    assert gateway["SORIFLOW_GATEWAY_SNS_TOPIC_ARN"].startswith("arn:aws:sns:")
    assert gateway["SORIFLOW_GATEWAY_PIPELINES_FILE"] == "/etc/soriflow/pipelines/pipelines.yaml"
    two = merged(
        value_set("keda"),
        {
            "gateway": {
                "pipelines": [
                    {"name": "a", "stages": [{"name": "stt", "uses": "stt.recognize"}]},
                    {"name": "b", "stages": [{"name": "tts", "uses": "tts.synthesize"}]},
                ]
            }
        },
    )
    text = chart.render(two).get("ConfigMap", f"{FULLNAME}-pipelines")["data"]["pipelines.yaml"]
    assert [doc["name"] for doc in yaml.safe_load_all(text)] == ["a", "b"]  # one document each
    mount = next(m for m in rendered.container("gateway")["volumeMounts"] if m["name"] == "pipelines")
    assert mount["mountPath"] == "/etc/soriflow/pipelines"
    assert "SORIFLOW_GATEWAY_PIPELINES_FILE" not in chart.render().config("gateway")


def test_config_changes_roll_the_pods(chart: ChartRenderer) -> None:
    def checksum(rendered: Rendered, component: str) -> str:
        value: str = rendered.deployment(component)["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        return value

    base = chart.render()
    changed = chart.render({"stt": {"computeType": "int8"}})
    assert checksum(base, "stt") != checksum(changed, "stt")
    assert checksum(base, "tts") == checksum(changed, "tts")


# --- autoscaling -----------------------------------------------------------------------------


def test_keda_scales_the_gateway_on_queue_depth(chart: ChartRenderer) -> None:
    values = value_set("keda")
    rendered = chart.render(values)
    scaled = rendered.get("ScaledObject", f"{FULLNAME}-gateway")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{FULLNAME}-gateway",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 20)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"] == {
        "queueURL": values["gateway"]["queueUrl"],
        "queueLength": "8",
        "activationQueueLength": "0",
        "awsRegion": "ap-northeast-2",
        "scaleOnInFlight": "true",
    }
    # the queue KEDA watches is the queue the gateway consumes
    assert rendered.config("gateway")["SORIFLOW_GATEWAY_QUEUE_URL"] == trigger["metadata"]["queueURL"]
    auth = rendered.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"] == {"podIdentity": {"provider": "aws", "identityOwner": "workload"}}
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 600}
    }
    # KEDA owns the replica count: no HPA of ours, no replicas in the Deployment
    assert rendered.find("HorizontalPodAutoscaler", f"{FULLNAME}-gateway") is None
    assert "replicas" not in rendered.deployment("gateway")["spec"]


def test_keda_with_an_operator_role(chart: ChartRenderer) -> None:
    rendered = chart.render(
        merged(
            value_set("keda"),
            {
                "gateway": {
                    "keda": {"identityOwner": "keda", "roleArn": "arn:aws:iam::123456789012:role/keda-sqs"}
                }
            },
        )
    )
    auth = rendered.get("TriggerAuthentication", f"{FULLNAME}-gateway-aws")
    assert auth["spec"]["podIdentity"] == {
        "provider": "aws",
        "roleArn": "arn:aws:iam::123456789012:role/keda-sqs",
    }


def test_no_keda_objects_unless_enabled(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    if name != "keda":
        assert rendered.kind("ScaledObject") == []
        assert rendered.kind("TriggerAuthentication") == []


def test_hpa_on_cpu_or_custom_metrics(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("pvc-models"))
    stt = rendered.get("HorizontalPodAutoscaler", f"{FULLNAME}-stt")
    assert stt["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-stt"
    assert stt["spec"]["metrics"][0]["pods"]["metric"]["name"] == "soriflow_grpc_requests_in_flight"
    scoring = rendered.get("HorizontalPodAutoscaler", f"{FULLNAME}-scoring")
    assert scoring["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]
    for name in ("stt", "scoring"):
        assert "replicas" not in rendered.deployment(name)["spec"]
    assert rendered.deployment("tts")["spec"]["replicas"] == 1
    assert rendered.find("HorizontalPodAutoscaler", f"{FULLNAME}-tts") is None


def test_pdbs_and_topology_spread(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    for component in COMPONENTS:
        labels = rendered.deployment(component)["spec"]["selector"]["matchLabels"]
        pdb = rendered.get("PodDisruptionBudget", f"{FULLNAME}-{component}")
        assert pdb["spec"]["selector"]["matchLabels"] == labels
        assert pdb["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in pdb["spec"]
        spread = rendered.pod_spec(component).get("topologySpreadConstraints", [])
        if name == "cpu":
            assert spread == []
        else:
            assert [c["topologyKey"] for c in spread] == [
                "topology.kubernetes.io/zone",
                "kubernetes.io/hostname",
            ]
            assert all(c["labelSelector"]["matchLabels"] == labels for c in spread)
            assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread)


# --- models ----------------------------------------------------------------------------------


def test_bundled_models_need_no_volume_and_no_init_container(chart: ChartRenderer) -> None:
    rendered = chart.render()
    for component in COMPONENTS:
        spec = rendered.pod_spec(component)
        assert "initContainers" not in spec
        assert "models" not in {v["name"] for v in spec["volumes"]}
    assert rendered.config("stt")["SORIFLOW_STT_MODEL"] == "tiny.en"
    assert rendered.config("summarizer")["SORIFLOW_SUMMARIZER_MODEL"] == "smollm2-135m-instruct"


def test_models_from_a_shared_read_only_volume(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("pvc-models"))
    for component in COMPONENTS:
        spec = rendered.pod_spec(component)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m for m in rendered.container(component)["volumeMounts"]}
        if component == "gateway":
            assert "models" not in volumes
            continue
        assert volumes["models"]["persistentVolumeClaim"] == {
            "claimName": "soriflow-models",
            "readOnly": True,
        }
        assert mounts["models"] == {
            "name": "models",
            "mountPath": "/models",
            "readOnly": True,
            "subPath": "v1",
        }
        assert "initContainers" not in spec
    assert rendered.config("stt")["SORIFLOW_STT_MODEL"] == "/models/whisper-large-v3-ct2"
    summarizer = rendered.config("summarizer")
    assert summarizer["SORIFLOW_SUMMARIZER_ADAPTER"] == "/models/llama-3.2-3b-callsummary-lora"


def test_models_from_s3_are_pulled_once_into_a_shared_cache(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("s3-models"))
    pvc = rendered.get("PersistentVolumeClaim", f"{FULLNAME}-model-cache")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    expected = {
        "stt": [
            "s3://acme-models/soriflow/whisper-large-v3-ct2/",
            "s3://acme-models/soriflow/whisper-large-v3-turbo-ct2/",
        ],
        "summarizer": [
            "s3://acme-models/soriflow/kobart-summary/",
            "s3://acme-models/adapters/callsummary-lora/",
        ],
    }
    for component in COMPONENTS:
        spec = rendered.pod_spec(component)
        if component not in expected:
            assert "initContainers" not in spec, component
            continue
        [init] = spec["initContainers"]
        assert init["command"] == ["soriflow", "models", "pull"]
        assert init["args"] == expected[component]
        assert init["image"] == rendered.container(component)["image"]
        # the pull and the service see the same cache, at the same SORIFLOW_CACHE_DIR, so the
        # service's resolve_model finds the complete copy instead of downloading again
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-model-cache"
        init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        main_mounts = {m["name"]: m["mountPath"] for m in rendered.container(component)["volumeMounts"]}
        assert (
            init_mounts["model-cache"]
            == main_mounts["model-cache"]
            == rendered.config(component)["SORIFLOW_CACHE_DIR"]
        )
        assert [e["configMapRef"]["name"] for e in init["envFrom"]] == [f"{FULLNAME}-common"]
    assert rendered.config("stt")["SORIFLOW_STT_MODEL"] == expected["stt"][0]
    config = rendered.config("summarizer")
    assert [config["SORIFLOW_SUMMARIZER_MODEL"], config["SORIFLOW_SUMMARIZER_ADAPTER"]] == expected[
        "summarizer"
    ]


S3_MODELS = {"models": {"source": "s3", "s3": {"prefix": "s3://acme-models/soriflow/"}}}


def test_s3_models_default_to_one_download_per_node(chart: ChartRenderer) -> None:
    """Without a cache choice, components that pull s3:// models share a node cache (hostPath,
    created and handed to the pods' user first); the others keep a pod emptyDir, not a hostPath."""
    rendered = chart.render(S3_MODELS)
    for component in COMPONENTS:
        spec = rendered.pod_spec(component)
        volumes = {v["name"]: v for v in spec["volumes"]}
        inits = [c["name"] for c in spec.get("initContainers", [])]
        if component in GPU_COMPONENTS:  # stt.model and summarizer.model resolve under the prefix
            assert volumes["model-cache"]["hostPath"] == {
                "path": "/var/cache/soriflow",
                "type": "DirectoryOrCreate",
            }
            assert inits == ["model-cache-owner", "models-pull"]  # owned before the pull writes
            pull = spec["initContainers"][1]
            assert pull["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert {m["mountPath"] for m in pull["volumeMounts"]} >= {"/var/cache/soriflow"}
        else:
            assert "hostPath" not in volumes["model-cache"]
            assert "emptyDir" in volumes["model-cache"]
            assert inits == []
    assert "cached per node in /var/cache/soriflow (hostPath)" in rendered.notes
    assert "every new replica downloads them again" not in rendered.notes


def test_a_bootstrapped_node_cache_needs_no_root_step(chart: ChartRenderer) -> None:
    rendered = chart.render(
        merged(S3_MODELS, {"models": {"cache": {"hostPath": {"path": "/data/soriflow", "prepare": False}}}})
    )
    spec = rendered.pod_spec("stt")
    assert [c["name"] for c in spec["initContainers"]] == ["models-pull"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model-cache"]["hostPath"] == {"path": "/data/soriflow", "type": "Directory"}


def test_s3_models_into_pod_caches_only_when_chosen_and_flagged(chart: ChartRenderer) -> None:
    values = merged(value_set("s3-models"), {"models": {"cache": {"type": "emptyDir"}}})
    rendered = chart.render(values)
    for component in GPU_COMPONENTS:
        volumes = {v["name"]: v for v in rendered.pod_spec(component)["volumes"]}
        assert "emptyDir" in volumes["model-cache"]
    assert "every new replica downloads them again" in rendered.notes
    assert "(stt, summarizer)" in rendered.notes
    assert "every new replica" not in chart.render(value_set("s3-models")).notes
    assert "every new replica" not in chart.render(S3_MODELS).notes


# --- secrets ---------------------------------------------------------------------------------

CANARY = {
    "auth": {"existingSecret": "canary-auth-secret", "key": "canary-token-key"},
    "tls": {"enabled": True, "existingSecret": "canary-tls-secret"},
    "gateway": {
        "database": {"existingSecret": "canary-db-secret", "key": "canary-db-key"},
        "notifications": {
            "webhookUrl": "https://hooks.example.com/x",
            "webhookSecret": {"existingSecret": "canary-hook-secret", "key": "canary-hook-key"},
        },
        "images": {
            "openai": {"apiKey": {"existingSecret": "canary-image-secret", "key": "canary-image-key"}}
        },
    },
    "summarizer": {
        "engine": "openai",
        "model": "llama3.2:1b",
        "openai": {
            "baseUrl": "http://ollama.llm.svc:11434/v1",
            "apiKey": {"existingSecret": "canary-llm-secret", "key": "canary-llm-key"},
        },
    },
    "tts": {"google": {"existingSecret": "canary-google-secret", "key": "canary-google-key"}},
}


def _secret_references(node: Any, path: str = "") -> list[str]:
    """Paths where a canary Secret name occurs in a manifest."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _secret_references(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _secret_references(value, f"{path}/{index}")
    elif isinstance(node, str) and "canary-" in node:
        found.append(path)
    return found


def test_secrets_are_only_referenced(chart: ChartRenderer) -> None:
    rendered = chart.render(CANARY)
    assert rendered.kind("Secret") == []  # given Secrets by name, the chart creates none
    for doc in rendered.docs:
        for path in _secret_references(doc):
            # a Secret's name or key may appear only in a secretKeyRef or a secret volume
            assert "/secretKeyRef/" in path or "/secret/" in path, f"{doc['kind']} {path}"
        if doc["kind"] == "ConfigMap":
            assert not {"SORIFLOW_AUTH_TOKEN", "SORIFLOW_GATEWAY_DATABASE_URL"} & set(doc["data"])
    gateway = env_names(rendered.container("gateway"))
    assert gateway["SORIFLOW_GATEWAY_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "canary-hook-secret",
        "key": "canary-hook-key",
    }
    assert gateway["SORIFLOW_GATEWAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "canary-db-secret",
        "key": "canary-db-key",
    }
    for component in COMPONENTS:
        token = env_names(rendered.container(component))["SORIFLOW_AUTH_TOKEN"]
        assert token == {
            "name": "SORIFLOW_AUTH_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "canary-auth-secret", "key": "canary-token-key"}},
        }
    tts = rendered.pod_spec("tts")
    google = next(v for v in tts["volumes"] if v["name"] == "google-credentials")
    assert google["secret"]["secretName"] == "canary-google-secret"
    assert env_names(rendered.container("tts"))["GOOGLE_APPLICATION_CREDENTIALS"]["value"].startswith(
        "/var/run/secrets/"
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env_names(rendered.container("stt"))
    assert gateway["SORIFLOW_IMAGE_OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "canary-image-secret",
        "key": "canary-image-key",
    }
    summarizer = rendered.pod_spec("summarizer")
    llm = next(v for v in summarizer["volumes"] if v["name"] == "llm-api-key")
    assert llm["secret"]["secretName"] == "canary-llm-secret"
    assert llm["secret"]["items"] == [{"key": "canary-llm-key", "path": "api-key"}]
    # the migration hook reads the same database Secret, by reference
    job = rendered.get("Job", f"{FULLNAME}-db-upgrade")["spec"]["template"]["spec"]["containers"][0]
    assert env_names(job)["SORIFLOW_GATEWAY_DATABASE_URL"] == gateway["SORIFLOW_GATEWAY_DATABASE_URL"]


def test_no_secret_values_in_the_chart_defaults_or_examples(chart: ChartRenderer) -> None:
    """Every value whose name suggests a secret is a reference (a Secret name or key) or empty."""
    secretish = ("token", "password", "secret", "credential", "apikey", "accesskey")
    allowed_keys = {"existingSecret", "key", "certKey", "keyKey", "caKey", "automountServiceAccountToken"}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                lowered = key.lower().replace("_", "")
                if any(s in lowered for s in secretish) and key not in allowed_keys:
                    assert isinstance(value, dict | list) or value in ("", None), (
                        f"{path}/{key} holds a literal"
                    )
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    from tests.deploy.conftest import VALUE_SETS

    walk(chart.render().values or {}, "defaults")
    import yaml

    from tests.deploy.conftest import CHART

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), "values.yaml")
    for name in VALUE_SETS:
        walk(value_set(name), name)


def test_irsa_service_account(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("keda"))
    account = rendered.get("ServiceAccount", FULLNAME)
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/soriflow",
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    assert account["automountServiceAccountToken"] is False
    for component in COMPONENTS:
        assert rendered.pod_spec(component)["serviceAccountName"] == FULLNAME
        # no static AWS keys anywhere
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(
            env_names(rendered.container(component))
        )


def test_tls_mounts_the_certificate_for_servers_and_clients(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("tls"))
    common = rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]
    assert common["SORIFLOW_TLS_CERT_FILE"] == "/etc/soriflow/tls/tls.crt"
    assert common["SORIFLOW_TLS_CA_FILE"] == "/etc/soriflow/tls/ca.crt"
    for pod_name, spec in rendered.pods():
        tls = next(v for v in spec["volumes"] if v["name"] == "tls")
        assert tls["secret"]["secretName"] == "soriflow-tls"
        assert {i["path"] for i in tls["secret"]["items"]} == {"tls.crt", "tls.key", "ca.crt"}
        for container in spec["containers"]:
            mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
            assert mount["mountPath"] == "/etc/soriflow/tls", pod_name
            assert mount["readOnly"] is True, pod_name
    assert "tls" not in {v["name"] for v in chart.render().pod_spec("stt")["volumes"]}


# --- services and network --------------------------------------------------------------------


def test_services_are_cluster_ip_with_named_grpc_ports(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    for component in COMPONENTS:
        service = rendered.get("Service", f"{FULLNAME}-{component}")
        deployment = rendered.deployment(component)
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["appProtocol"] == "grpc"
        assert ports["grpc"]["targetPort"] == "grpc"
        assert ports["metrics"]["targetPort"] == "metrics"
        expected = "LoadBalancer" if (component == "gateway" and name == "tls") else "ClusterIP"
        assert service["spec"]["type"] == expected, (name, component)


def test_network_policies_fence_the_stage_services(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("keda"))

    def components_of(peers: list[dict[str, Any]]) -> set[str]:
        return {
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in peers
            if "podSelector" in p
        }

    for component in STAGES:
        policy = rendered.get("NetworkPolicy", f"{FULLNAME}-{component}")
        assert (
            policy["spec"]["podSelector"]["matchLabels"]
            == rendered.deployment(component)["spec"]["selector"]["matchLabels"]
        )
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        grpc_rule, metrics_rule = policy["spec"]["ingress"]
        assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
        callers = {"gateway", "test", "scoring"} if component == "stt" else {"gateway", "test"}
        assert components_of(grpc_rule["from"]) == callers
        assert all(
            p["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"
            for p in grpc_rule["from"]
            if "podSelector" in p
        )
        namespaces = [
            p["namespaceSelector"]["matchExpressions"][0]["values"]
            for p in grpc_rule["from"]
            if "namespaceSelector" in p
        ]
        assert namespaces == [["batch-jobs"]]
        assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert metrics_rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]
    assert chart.render({"networkPolicy": {"enabled": False}}).kind("NetworkPolicy") == []


def test_the_gateway_api_admits_only_listed_callers(chart: ChartRenderer) -> None:
    """Not every pod of the cluster: the release's test pods, pods of the namespace labelled as
    clients, and networkPolicy.gatewayFrom (issue: the API was open to every pod)."""
    test_pod = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "soriflow",
                "app.kubernetes.io/instance": "demo",
                "app.kubernetes.io/component": "test",
            }
        }
    }
    client = {"podSelector": {"matchLabels": {f"{FULLNAME}-client": "true"}}}
    policy = chart.render().get("NetworkPolicy", f"{FULLNAME}-gateway")
    grpc_rule = policy["spec"]["ingress"][0]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert grpc_rule["from"] == [test_pod, client]  # no peer-less rule: nobody else
    apps = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "learning-app"}}}
    listed = chart.render({"networkPolicy": {"gatewayFrom": [apps]}})
    assert listed.get("NetworkPolicy", f"{FULLNAME}-gateway")["spec"]["ingress"][0]["from"] == [
        test_pod,
        client,
        apps,
    ]
    tls = chart.render(value_set("tls")).get("NetworkPolicy", f"{FULLNAME}-gateway")
    assert {"ipBlock": {"cidr": "10.0.0.0/8"}} in tls["spec"]["ingress"][0]["from"]
    assert f'{FULLNAME}-client: "true"' in chart.render().notes


def test_the_token_is_required_when_installed(chart: ChartRenderer) -> None:
    """No auth value given: a Secret with a random token is generated and every component
    requires and sends it; an existing Secret replaces it; switching auth off is explicit."""
    rendered = chart.render()
    [secret] = rendered.kind("Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-auth"
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48
    assert token.isalnum()
    other = chart.render({"logging": {"level": "DEBUG"}}).kind("Secret")[0]  # another render: another token
    assert base64.b64decode(other["data"]["token"]).decode() != token
    for component in COMPONENTS:
        assert env_names(rendered.container(component))["SORIFLOW_AUTH_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": f"{FULLNAME}-auth", "key": "token"}
        }
    assert f"get secret {FULLNAME}-auth" in rendered.notes
    given = chart.render({"auth": {"existingSecret": "soriflow-auth"}})
    assert given.kind("Secret") == []
    assert env_names(given.container("gateway"))["SORIFLOW_AUTH_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "soriflow-auth", "key": "token"}
    }
    off = chart.render({"auth": {"enabled": False}})
    assert off.kind("Secret") == []
    assert all("SORIFLOW_AUTH_TOKEN" not in env_names(off.container(c)) for c in COMPONENTS)
    assert "auth.enabled=false" in off.notes
    assert "TLS is off" in rendered.notes
    assert "TLS is off" not in chart.render(value_set("tls")).notes


def test_every_component_reads_only_the_allowed_s3_locations(
    chart: ChartRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SORIFLOW_READ_URIS reaches every component: the gateway's inputs and submissions (which
    the stage services read for its jobs) and readUris; other buckets are refused."""
    from soriflow.storage import ReadAllowList, S3Uri

    rendered = chart.render(value_set("keda"))
    common = rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]
    assert json.loads(common["SORIFLOW_READ_URIS"]) == [
        "s3://standard-audio-file/",
        "s3://acme-speech-input/connect/",
        "s3://acme-speech-input/transcribe/",
        "s3://acme-speech-input/submissions/",
    ]
    for component in COMPONENTS:
        for key in list(os.environ):
            if key.startswith("SORIFLOW_"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("SORIFLOW_READ_URIS", common["SORIFLOW_READ_URIS"])
        allowed = ReadAllowList.parse(_settings_class(component)().readable_uris())
        assert allowed.allows(S3Uri("acme-speech-input", "connect/call.wav"))
        assert allowed.allows(S3Uri("standard-audio-file", "daily/level_1/Title/audio_line_1.wav"))
        assert not allowed.allows(S3Uri("some-other-bucket", "secret.wav"))
        assert not allowed.allows(S3Uri("acme-speech-output", "results/x/transcript.json"))
    default = chart.render().get("ConfigMap", f"{FULLNAME}-common")["data"]
    assert json.loads(default["SORIFLOW_READ_URIS"]) == ["s3://soriflow-input/submissions/"]


def test_observability(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("keda"))
    for component in COMPONENTS:
        annotations = rendered.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS[component])
    monitor = rendered.get("ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for component in COMPONENTS:
        labels = rendered.get("Service", f"{FULLNAME}-{component}")["metadata"]["labels"]
        assert selector.items() <= labels.items()
    assert chart.render().kind("ServiceMonitor") == []


def test_gateway_exposure_is_opt_in(chart: ChartRenderer) -> None:
    assert chart.render().kind("Ingress") == []
    rendered = chart.render(value_set("tls"))
    ingress = rendered.get("Ingress", f"{FULLNAME}-gateway")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "speech.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-gateway", "port": {"name": "grpc"}}
    service = rendered.get("Service", f"{FULLNAME}-gateway")
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]["SORIFLOW_GATEWAY_ADDRESS"].endswith(
        ":443"
    )


# --- helm test, NOTES, components --------------------------------------------------------------


def test_helm_test_checks_every_component(rendered_set: tuple[str, Rendered]) -> None:
    _, rendered = rendered_set
    [pod] = rendered.kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"  # allowed by the policies
    by_name = {c["name"]: c for c in pod["spec"]["containers"]}
    postgres = bool(rendered.values.get("gateway", {}).get("database", {}).get("existingSecret"))
    assert set(by_name) == set(COMPONENTS) | ({"job-store"} if postgres else set())
    common = rendered.get("ConfigMap", f"{FULLNAME}-common")["data"]
    for component in COMPONENTS:
        container = by_name[component]
        assert container["command"] == ["soriflow", "health"]
        assert container["args"][0] == common[f"SORIFLOW_{component.upper()}_ADDRESS"]
        assert container["args"][1:] == ["--wait", "300"]
    if postgres:  # the schema is the revision the gateway image needs
        store = by_name["job-store"]
        assert store["command"] == ["soriflow", "db", "current", "--check"]
        assert store["image"] == rendered.container("gateway")["image"]
        [url] = [e for e in store["env"] if e["name"] == "SORIFLOW_GATEWAY_DATABASE_URL"]
        assert url["valueFrom"] == env_names(rendered.container("gateway"))[url["name"]]["valueFrom"]


def test_a_disabled_component_is_gone(chart: ChartRenderer) -> None:
    rendered = chart.render({"summarizer": {"enabled": False}})
    assert all(
        d["metadata"]["labels"].get("app.kubernetes.io/component") != "summarizer" for d in rendered.docs
    )
    [pod] = rendered.kind("Pod")
    assert "summarizer" not in {c["name"] for c in pod["spec"]["containers"]}
    assert "summarizer" not in rendered.notes.split("Components:")[1].split("1.")[0]


def test_notes_tell_how_to_reach_the_api_and_check_health(chart: ChartRenderer) -> None:
    notes = chart.render().notes
    assert f"kubectl -n {NAMESPACE} port-forward service/{FULLNAME}-gateway 50050:50050" in notes
    assert "soriflow health 127.0.0.1:50050" in notes
    assert f"helm test demo -n {NAMESPACE}" in notes
    assert "SQLite" in notes  # no database secret: the operator is told jobs are not durable
    keda = chart.render(value_set("keda")).notes
    assert "KEDA scales the gateway between 1 and 20 replicas" in keda
    assert "SQLite" not in keda
    assert "SORIFLOW_AUTH_TOKEN" in keda
    lb = chart.render(value_set("tls")).notes
    assert "speech.example.com" in lb
    assert "mutual TLS" in lb
