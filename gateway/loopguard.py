"""Refusing configurations that make outputs trigger the pipeline again (the S3 infinite loop).

Two checks before the gateway starts: the configured ingest prefixes must not
contain the output prefix (or the other way round), and the output bucket's
actual event notifications must not send ObjectCreated events for keys the
gateway writes. At run time the consumer also skips objects carrying
Soriflow's output metadata.
"""

from __future__ import annotations

import logging
from typing import Any

from soriflow.errors import FailedPrecondition
from soriflow.storage import S3Uri

log = logging.getLogger("soriflow.gateway.loopguard")

OUTPUT_SUFFIXES = (".json", ".txt", ".srt", ".vtt", ".wav", ".mp3", ".ogg", ".png")


def prefixes_overlap(a: S3Uri, b: S3Uri) -> bool:
    return a.bucket == b.bucket and (a.key.startswith(b.key) or b.key.startswith(a.key))


def check_static(output_uri: str, input_uris: list[str]) -> None:
    output = S3Uri.parse(output_uri)
    for raw in input_uris:
        trigger = S3Uri.parse(raw)
        if prefixes_overlap(output, trigger):
            raise FailedPrecondition(
                f"refusing to start: outputs go to {output} which overlaps the ingest trigger {trigger}; "
                "every output would start a new job (an S3 event loop). Move SORIFLOW_GATEWAY_OUTPUT_URI to "
                "another "
                "bucket or a prefix the trigger does not cover"
            )


def _rule_prefix_suffix(rule: dict[str, Any]) -> tuple[str, str]:
    prefix = suffix = ""
    for item in rule.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        name = str(item.get("Name", "")).lower()
        if name == "prefix":
            prefix = str(item.get("Value", ""))
        elif name == "suffix":
            suffix = str(item.get("Value", ""))
    return prefix, suffix


def check_bucket_notifications(s3: Any, output_uri: str) -> None:
    """Reads the output bucket's notification configuration and refuses overlapping triggers."""
    output = S3Uri.parse(output_uri)
    try:
        config = s3.get_bucket_notification_configuration(Bucket=output.bucket)
    except Exception as exc:  # no permission to read it: the static check and run-time guard still hold
        log.warning(
            "cannot read notifications of bucket %s (%s); relying on the configured prefixes",
            output.bucket,
            exc,
        )
        return
    rules = [
        *config.get("QueueConfigurations", []),
        *config.get("TopicConfigurations", []),
        *config.get("LambdaFunctionConfigurations", []),
    ]
    for rule in rules:
        if not any(str(e).startswith("s3:ObjectCreated") for e in rule.get("Events", [])):
            continue
        prefix, suffix = _rule_prefix_suffix(rule)
        if not prefixes_overlap(output, S3Uri(output.bucket, prefix)):
            continue
        if suffix and not any(s.endswith(suffix) or suffix.endswith(s) for s in OUTPUT_SUFFIXES):
            continue
        target = rule.get("QueueArn") or rule.get("TopicArn") or rule.get("LambdaFunctionArn") or "?"
        raise FailedPrecondition(
            f"refusing to start: bucket {output.bucket} sends ObjectCreated events for prefix {prefix!r}"
            f"{f' suffix {suffix!r}' if suffix else ''} to {target}, which covers the outputs under "
            f"{output}; "
            "outputs would trigger new jobs. Narrow the notification's prefix or move the outputs"
        )


def check(output_uri: str, input_uris: list[str], s3: Any | None) -> None:
    check_static(output_uri, input_uris)
    if s3 is not None:
        check_bucket_notifications(s3, output_uri)
