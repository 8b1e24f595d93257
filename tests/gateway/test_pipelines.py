"""Pipeline definitions: the built-ins, validation, routing, key patterns and parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from soriflow.errors import InvalidArgument
from soriflow.gateway.pipelines import PipelineRegistry, RetryPolicy, builtin_pipelines, parse_pipeline


def test_builtin_pipelines_are_valid_and_ordered() -> None:
    pipelines = {p.name: p for p in builtin_pipelines()}
    assert set(pipelines) == {
        "call-summary",
        "pronunciation",
        "transcribe",
        "subtitle-picture",
        "nightly-story",
    }
    assert [s.name for s in pipelines["call-summary"].topological_order()] == ["stt", "summarize", "reply"]
    pron = pipelines["pronunciation"].topological_order()
    assert pron[-1].name == "score"
    assert {s.name for s in pron[:2]} == {"stt-learner", "stt-reference"}  # no dependency: run in parallel
    assert pipelines["call-summary"].stages[2].optional
    story = pipelines["nightly-story"]
    assert [s.name for s in story.topological_order()] == ["story", "narration", "picture"]
    assert story.stages[1].needs == story.stages[2].needs == ["story"]  # audio and picture in parallel
    assert [s.optional for s in story.stages] == [False, False, True]
    assert story.presign_expiry_s == 2 * 24 * 3600
    assert [(s.name, s.cron, s.enabled) for s in story.schedules] == [("nightly-story", "0 21 * * *", False)]
    picture = pipelines["subtitle-picture"]
    assert [s.uses for s in picture.topological_order()] == [
        "stt.recognize",
        "summarizer.generate",
        "image.generate",
    ]


def test_routing_by_longest_prefix_and_unknown_names() -> None:
    registry = PipelineRegistry.load()
    assert registry.route("connect/2026/call.wav").name == "call-summary"  # type: ignore[union-attr]
    assert registry.route("users/kim/book/level_1/t/audio_line_1.wav").name == "pronunciation"  # type: ignore[union-attr]
    assert registry.route("elsewhere/x.wav") is None
    with pytest.raises(InvalidArgument, match="unknown pipeline 'nope'; this gateway runs: call-summary"):
        registry.get("nope")


def test_reference_is_derived_from_the_learner_key() -> None:
    pipeline = PipelineRegistry.load().get("pronunciation")
    key = "users/kim min/story book/level_2/toy store/audio_line_3.wav"
    assert pipeline.key_variables(key) == {
        "user": "kim min",
        "content_type": "story book",
        "level": "2",
        "title": "toy store",
        "line": "3",
    }
    params = pipeline.resolve_parameters({}, bucket="in", key=key)
    assert params["reference_uri"] == "s3://in/reference/story book/level_2/toy store/audio_line_3.wav"
    assert pipeline.resolve_parameters({}, bucket="in", key="users/odd.wav")["reference_uri"] == ""
    given = pipeline.resolve_parameters({"reference_text": "hi"}, bucket="in", key="users/odd.wav")
    assert given["reference_text"] == "hi"
    with pytest.raises(InvalidArgument, match=r"does not take parameters \['colour'\]"):
        pipeline.resolve_parameters({"colour": "red"}, bucket="in", key=key)


BASE = """
name: demo
stages:
  - name: a
    uses: stt.recognize
"""


def test_the_seed_apps_layout_derives_its_reference_in_another_bucket() -> None:
    """examples/django/pipelines.yaml: `standard-audio-file/<type>/level_<n>/<Title With Spaces>/...`."""
    registry = PipelineRegistry.load(Path(__file__).parents[2] / "examples" / "django" / "pipelines.yaml")
    pipeline = registry.route("users/42/book/level_3/The_Little_Prince/audio_line_7.wav")
    assert pipeline is not None
    assert pipeline.name == "pronunciation"
    params = pipeline.resolve_parameters(
        {}, bucket="learner-uploads", key="users/42/book/level_3/The_Little_Prince/audio_line_7.wav"
    )
    reference = "s3://standard-audio-file/book/level_3/The Little Prince/audio_line_7.wav"
    assert params["reference_uri"] == reference


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nstages: []\n", "at least one stage"),
        (BASE + "  - name: a\n    uses: stt.recognize\n", "duplicate stage names"),
        (BASE + "  - name: b\n    uses: stt.recognize\n    needs: [zz]\n", "needs unknown stages"),
        (BASE.replace("stt.recognize", "ocr.read"), "uses"),
        (
            "name: x\nstages:\n  - {name: a, uses: stt.recognize, needs: [b]}\n"
            "  - {name: b, uses: stt.recognize, needs: [a]}\n",
            "cycle",
        ),
        (BASE + "    retry: {max_attempts: 0}\n", "max_attempts"),
        (BASE + "    when: ghost\n", "not a declared parameter"),
        ("[not, a, mapping]", "must be a YAML mapping"),
        ("name: x\n  bad: indentation: here", "not valid YAML"),
        (BASE + "    colour: red\n", "colour"),
        (BASE + "    retry: {retry_on: [UNAVAILBLE]}\n", r"unknown gRPC status codes \['UNAVAILBLE'\]"),
        (BASE + "on_failure:\n  - {name: a, uses: tts.synthesize}\n", "duplicate stage names"),
        (BASE + "on_failure:\n  - {name: sorry, uses: tts.synthesize, needs: [zz]}\n", "needs unknown"),
        (BASE + "    with: {language_code: '{lang|lowr}'}\n", "stage a with: .*unknown filter 'lowr'"),
        ("parameters:\n  r: {default: 's3://{b}/{k'}\n" + BASE, "parameters.r.default: .*unmatched"),
        ("key_pattern: 'u/{user|lower}.wav'\n" + BASE, "key_pattern: .*cannot filter"),
    ],
)
def test_invalid_definitions_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_pipeline(text, "test.yaml")


def test_retry_codes_are_normalized_and_failure_stages_may_need_main_stages() -> None:
    pipeline = parse_pipeline(
        BASE + "    retry: {retry_on: [unavailable, ' INTERNAL']}\n"
        "on_failure:\n  - {name: sorry, uses: tts.synthesize, needs: [a]}\n"
        "  - {name: later, uses: tts.synthesize, needs: [sorry]}\n",
        "test.yaml",
    )
    assert pipeline.stages[0].retry.retry_on == ["UNAVAILABLE", "INTERNAL"]
    assert [s.name for s in pipeline.topological_order()] == ["a"]
    assert [s.name for s in pipeline.topological_order(pipeline.on_failure)] == ["sorry", "later"]


def test_visibility_timeout_must_outlast_the_lease() -> None:
    from pydantic import ValidationError

    from soriflow.gateway.settings import Settings

    with pytest.raises(ValidationError, match="must be greater than SORIFLOW_GATEWAY_LEASE_S"):
        Settings(gateway_visibility_timeout_s=60, gateway_lease_s=60)
    assert Settings(gateway_visibility_timeout_s=61, gateway_lease_s=60).gateway_lease_s == 60


def test_pipelines_file_adds_and_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "pipelines.yaml"
    extra.write_text(
        BASE + "key_prefixes: [demo/]\n---\nname: transcribe\nkey_prefixes: [t/]\nstages:\n"
        "  - {name: stt, uses: stt.recognize}\n"
    )
    registry = PipelineRegistry.load(extra)
    assert registry.route("demo/x.wav").name == "demo"  # type: ignore[union-attr]
    assert registry.get("transcribe").key_prefixes == ["t/"]
    with pytest.raises(InvalidArgument, match="cannot read pipelines file"):
        PipelineRegistry.load(tmp_path / "missing.yaml")


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=5, jitter=0.5)
    assert policy.delay_s(1, 0.5) == pytest.approx(1)
    assert policy.delay_s(2, 0.5) == pytest.approx(2)
    assert policy.delay_s(10, 0.5) == pytest.approx(5)
    assert policy.delay_s(2, 0.0) == pytest.approx(1)
    assert policy.delay_s(2, 0.999) == pytest.approx(3, abs=0.01)
    assert RetryPolicy().retry_on == ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]
