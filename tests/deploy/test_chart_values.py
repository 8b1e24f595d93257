"""values.schema.json (and the few template checks beside it) reject bad values before
anything reaches the cluster, naming the value that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, VALUE_SETS, ChartRenderer, merged, value_set

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/soriflow-ingest"


def rejection(chart: ChartRenderer, values: dict[str, Any]) -> str:
    """The message Helm gives when it refuses `values` (render runs the schema, then templates)."""
    import helm_python as helm

    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as info:
        chart.render(values)
    return str(info.value)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_shipped_value_sets_are_valid(chart: ChartRenderer, name: str) -> None:
    chart.validate_schema(value_set(name))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"stt": {"replicas": -1}}, "at '/stt/replicas': minimum: got -1, want 0"),
        ({"stt": {"gpu": {"mode": "shared"}}}, "at '/stt/gpu': additional properties 'mode' not allowed"),
        ({"stt": {"gpu": {"enabled": "yes"}}}, "at '/stt/gpu/enabled'"),
        ({"summarizer": {"gpu": {"resourceName": "amd.com/gpu"}}}, "at '/summarizer/gpu/resourceName'"),
        ({"stt": {"engine": "whisper.cpp"}}, "at '/stt/engine'"),
        ({"summarizer": {"engine": "gpt"}}, "at '/summarizer/engine'"),
        ({"models": {"source": "huggingface"}}, "at '/models/source'"),
        ({"models": {"cache": {"type": "nfs"}}}, "at '/models/cache/type'"),
        ({"logging": {"level": "verbose"}}, "at '/logging/level'"),
        ({"gateway": {"service": {"type": "ExternalName"}}}, "at '/gateway/service/type'"),
        ({"gateway": {"outputUri": "/var/results"}}, "at '/gateway/outputUri'"),
        ({"gateway": {"queueUrl": "soriflow-ingest"}}, "at '/gateway/queueUrl'"),
        ({"aws": {"region": "Seoul"}}, "at '/aws/region'"),
        ({"serviceAccount": {"irsaRoleArn": "soriflow-role"}}, "at '/serviceAccount/irsaRoleArn'"),
        (
            {
                "stt": {
                    "probes": {"startup": {"periodSeconds": 0, "failureThreshold": 3, "timeoutSeconds": 1}}
                }
            },
            "at '/stt/probes/startup/periodSeconds'",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "at '/podSecurityContext/runAsNonRoot'"),
        ({"containerSecurityContext": {"privileged": True}}, "at '/containerSecurityContext/privileged'"),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_values_are_rejected_with_the_key_named(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    assert expected in rejection(chart, values)


# Relations between values are checked by templates/validate.yaml, whose refusals say what to
# set and why (a JSON-schema `minLength: got 0, want 1` at some path says neither).


def test_keda_needs_the_queue_url(chart: ChartRenderer) -> None:
    message = rejection(chart, {"gateway": {"keda": {"enabled": True}, "database": {"existingSecret": "db"}}})
    assert "gateway.keda.enabled needs gateway.queueUrl" in message
    assert "KEDA scales the gateway on the depth of that SQS queue" in message
    assert "minLength" not in message


def test_keda_and_hpa_exclude_each_other(chart: ChartRenderer) -> None:
    message = rejection(
        chart,
        {
            "gateway": {
                "queueUrl": QUEUE,
                "database": {"existingSecret": "db"},
                "keda": {"enabled": True},
                "autoscaling": {"enabled": True},
            }
        },
    )
    assert "gateway.keda.enabled and gateway.autoscaling.enabled exclude each other" in message
    assert "Set gateway.autoscaling.enabled=false" in message


@pytest.mark.parametrize(
    "gateway",
    [{"replicas": 2}, {"autoscaling": {"enabled": True}}, {"queueUrl": QUEUE, "keda": {"enabled": True}}],
    ids=["replicas", "hpa", "keda"],
)
def test_several_gateways_need_a_shared_job_store(chart: ChartRenderer, gateway: dict[str, Any]) -> None:
    message = rejection(chart, {"gateway": gateway})
    assert "more than one gateway replica" in message
    assert "set gateway.database.existingSecret to a Secret holding a postgresql:// URL" in message
    assert "replicas would not see each other's jobs" in message
    chart.render({"gateway": merged(gateway, {"database": {"existingSecret": "soriflow-db"}})})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"models": {"source": "pvc"}},
            "models.source=pvc needs models.pvc.claimName: the name of an existing PersistentVolumeClaim",
        ),
        (
            {"models": {"source": "s3"}},
            "models.source=s3 needs models.s3.prefix (s3://bucket/path/): relative model names",
        ),
        (
            {"models": {"cache": {"type": "pvc"}}},
            "models.cache.type=pvc needs a claim: set models.cache.pvc.claimName",
        ),
        (
            {"tls": {"enabled": True}},
            "tls.enabled needs tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt",
        ),
        (
            {"gateway": {"ingress": {"enabled": True}}},
            "gateway.ingress.enabled needs at least one entry in gateway.ingress.hosts",
        ),
    ],
    ids=["models-pvc", "models-s3", "cache-pvc", "tls", "ingress"],
)
def test_a_feature_needs_its_companion_value(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    message = rejection(chart, values)
    assert expected in message
    assert "minLength" not in message
    assert "minItems" not in message


def test_a_malformed_model_prefix_is_still_refused_by_the_schema(chart: ChartRenderer) -> None:
    message = rejection(chart, {"models": {"source": "s3", "s3": {"prefix": "https://bucket/models"}}})
    assert "at '/models/s3/prefix'" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"stt": {"settings": {"auth_token": "hunter2"}}}, "at '/stt/settings/auth_token'"),
        (
            {"gateway": {"settings": {"gateway_database_url": "postgresql://u:p@db/x"}}},
            "at '/gateway/settings/gateway_database_url'",
        ),
        (
            {"gateway": {"extraEnv": [{"name": "SORIFLOW_AUTH_TOKEN", "value": "hunter2"}]}},
            "at '/gateway/extraEnv/0/value'",
        ),
        (
            {"tts": {"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"}]}},
            "at '/tts/extraEnv/0/value'",
        ),
        (
            {"summarizer": {"settings": {"summarizer_openai_api_key": "hunter2"}}},
            "at '/summarizer/settings/summarizer_openai_api_key'",
        ),
        (
            {"gateway": {"settings": {"image_openai_api_key": "hunter2"}}},
            "at '/gateway/settings/image_openai_api_key'",
        ),
        (
            {"gateway": {"extraEnv": [{"name": "SORIFLOW_IMAGE_OPENAI_API_KEY", "value": "hunter2"}]}},
            "at '/gateway/extraEnv/0/value'",
        ),
        (
            {"summarizer": {"extraEnv": [{"name": "OPENAI_API_KEY", "value": "hunter2"}]}},
            "at '/summarizer/extraEnv/0/value'",
        ),
        (
            {"summarizer": {"openai": {"apiKey": {"existingSecret": "", "key": "k", "value": "hunter2"}}}},
            "additional properties 'value' not allowed",
        ),
        ({"auth": {"token": "hunter2"}}, "additional properties 'token' not allowed"),
        (
            {"gateway": {"database": {"url": "postgresql://u:p@db/x"}}},
            "additional properties 'url' not allowed",
        ),
    ],
    ids=[
        "settings-token",
        "settings-db",
        "env-token",
        "env-aws",
        "settings-llm-key",
        "settings-image-key",
        "env-image-key",
        "env-openai-key",
        "llm-key-value",
        "auth-token",
        "db-url",
    ],
)
def test_secrets_cannot_be_given_as_values(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    message = rejection(chart, values)
    assert expected in message
    assert "hunter2" not in message
    assert "u:p@" not in message


def test_secrets_by_reference_are_accepted(chart: ChartRenderer) -> None:
    chart.validate_schema(
        {
            "auth": {"existingSecret": "soriflow-auth"},
            "gateway": {
                "extraEnv": [
                    {
                        "name": "SORIFLOW_AUTH_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "other", "key": "token"}},
                    }
                ]
            },
        }
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"scoring": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
            "scoring.autoscaling.minReplicas (5) is larger than scoring.autoscaling.maxReplicas (2)",
        ),
        (
            {
                "gateway": {
                    "queueUrl": QUEUE,
                    "database": {"existingSecret": "db"},
                    "keda": {"enabled": True, "minReplicas": 4, "maxReplicas": 2},
                }
            },
            "gateway.keda.minReplicas (4) is larger than gateway.keda.maxReplicas (2)",
        ),
        (
            {
                "gateway": {
                    "queueUrl": QUEUE,
                    "database": {"existingSecret": "db"},
                    "keda": {"enabled": True, "roleArn": "arn:aws:iam::123456789012:role/keda"},
                }
            },
            "gateway.keda.roleArn and gateway.keda.identityOwner=workload exclude each other",
        ),
    ],
    ids=["hpa-range", "keda-range", "keda-identity"],
)
def test_relations_the_schema_cannot_express(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    assert expected in rejection(chart, values)


@pytest.mark.parametrize(
    "exposure",
    [
        {"gateway": {"service": {"type": "LoadBalancer"}}},
        {"gateway": {"ingress": {"enabled": True, "hosts": [{"host": "speech.example.com"}]}}},
    ],
    ids=["load-balancer", "ingress"],
)
def test_an_exposed_gateway_needs_its_callers_listed(chart: ChartRenderer, exposure: dict[str, Any]) -> None:
    message = rejection(chart, exposure)
    assert "networkPolicy.gatewayFrom" in message
    assert "ipBlock" in message
    listed = merged(exposure, {"networkPolicy": {"gatewayFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}})
    chart.render(listed)
    chart.render(merged(exposure, {"networkPolicy": {"enabled": False}}))


def test_read_uris_are_s3_locations(chart: ChartRenderer) -> None:
    assert "readUris" in rejection(chart, {"readUris": ["https://example.com/x"]})
    chart.render({"readUris": ["s3://standard-audio-file/", "s3://acme-*-input/calls/"]})


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a key twice in one mapping: YAML lets the last one win silently, so a duplicated
    key in values.yaml hides the documented default behind another."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            assert key not in seen, f"{key!r} twice in one mapping (line {key_node.start_mark.line + 1})"
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("path", [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))], ids=str)
def test_no_key_is_given_twice(path: Path) -> None:
    yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
