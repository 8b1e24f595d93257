"""Model-free parts: language detection, Korean sentence splitting, TextRank, shaping, chunking."""

from __future__ import annotations

import threading

import pytest

from soriflow.summarizer.chunking import split_into_chunks
from soriflow.summarizer.engines.base import Task
from soriflow.summarizer.engines.extractive import ExtractiveEngine, textrank
from soriflow.summarizer.messages import transcript_text
from soriflow.summarizer.styles import OutputShaper, Style, parse_bullets, shape, user_prompt
from soriflow.summarizer.text import detect_language, split_sentences
from soriflow.v1 import audio_pb2

KO_CALL = (
    "안녕하세요. 네 저 어제 저녁에 퇴근하다가 자동차 사고가 났는데요, "
    "제가 가입한 자동차 보험으로 사고 처리가 되는지 확인하고 싶어서 전화드렸습니다. "
    "신호 대기 중에 뒤에서 오던 차가 제 차를 박았어요. "
    "상대방 보험사에서는 연락이 왔는데 제 보험으로도 자차 수리 보험 처리가 가능한지 궁금합니다. "
    "그리고 렌트카 비용도 보험에서 나오는지 알고 싶어요. 감사합니다."
)


def test_language_from_script() -> None:
    assert detect_language(KO_CALL) == "ko"
    assert detect_language("제 SMS OTP 인증번호가 안 와요") == "ko"  # Latin terms inside Korean
    assert detect_language("My car was hit at a red light.") == "en"
    assert detect_language("こんにちは、注文について") == "ja"
    assert detect_language("请帮我查一下订单") == "zh"
    assert detect_language("Здравствуйте, у меня вопрос") == "ru"
    assert detect_language("12345 !!!") == "en"


def test_sentences_with_and_without_punctuation() -> None:
    assert split_sentences("I paid 3.5 dollars, e.g. the fee. Is that OK?\nYes") == [
        "I paid 3.5 dollars, e.g. the fee.",
        "Is that OK?",
        "Yes",
    ]
    # STT output without punctuation: long Hangul runs split after spoken sentence endings.
    spoken = (
        "제가 어제 자동차 사고가 났는데요 보험 처리가 되는지 확인하고 싶어서 전화했습니다 "
        "상대방이 뒤에서 박았어요"
    )
    assert split_sentences(spoken) == [
        "제가 어제 자동차 사고가 났는데요",
        "보험 처리가 되는지 확인하고 싶어서 전화했습니다",
        "상대방이 뒤에서 박았어요",
    ]


def test_textrank_ranks_central_sentences_and_skips_greetings() -> None:
    engine = ExtractiveEngine()
    inquiry = engine.summarize(Task(KO_CALL, Style.INQUIRY, "ko", 128))
    assert "보험" in inquiry
    assert "안녕하세요" not in inquiry
    assert "감사합니다" not in inquiry
    assert "\n" not in inquiry
    assert not inquiry.endswith(".")
    assert not inquiry.startswith("네 ")  # leading filler trimmed
    bullets = engine.summarize(Task(KO_CALL, Style.BULLETS, "ko", 128))
    items = parse_bullets(bullets)
    assert 3 <= len(items) <= 5
    assert all(line.startswith("- ") for line in bullets.splitlines())
    abstract = engine.summarize(Task(KO_CALL, Style.ABSTRACT, "ko", 128))
    assert abstract
    assert "안녕하세요" not in abstract
    # Length bound in words.
    assert len(engine.summarize(Task(KO_CALL, Style.ABSTRACT, "ko", 5)).split()) <= 5
    scores = textrank(split_sentences(KO_CALL))
    assert abs(sum(scores) - 1) < 1e-6


def test_extractive_focus_speaker_in_transcript() -> None:
    text = (
        "agent: 안녕하세요 소리보험입니다 무엇을 도와드릴까요\n"
        "customer: 어제 자동차 사고가 났는데 보험 처리가 되는지 확인하고 싶어요\n"
        "agent: 네 고객님 보험 처리 관련해서 사고 경위를 말씀해 주시겠어요\n"
        "customer: 신호 대기 중에 뒤차가 제 차를 받았어요"
    )
    engine = ExtractiveEngine()
    summary = engine.summarize(Task(text, Style.INQUIRY, "ko", 64, focus_speaker="customer", transcript=True))
    assert summary == "어제 자동차 사고가 났는데 보험 처리가 되는지 확인하고 싶어요"
    pieces: list[str] = []
    task = Task(text, Style.BULLETS, "ko", 64, transcript=True)
    result = engine.stream(task, threading.Event(), lambda piece: pieces.append(piece) is None)
    assert "".join(pieces) == result.text
    assert "agent:" not in result.text


def test_shaper_keeps_stream_and_whole_output_equal() -> None:
    raw = "\n  The customer wants a refund.  \nSecond line\n"
    for style in Style:
        shaper = OutputShaper(style)
        streamed = "".join(shaper.feed(piece) for piece in [raw[i : i + 3] for i in range(0, len(raw), 3)])
        shaper.finish()
        assert streamed == shaper.text == shape(style, raw)
    assert shape(Style.INQUIRY, raw) == "The customer wants a refund."
    assert shape(Style.ABSTRACT, raw) == "The customer wants a refund.  \nSecond line"


def test_prompts_name_language_focus_and_custom_text() -> None:
    prompt = user_prompt(Style.INQUIRY, "ko", "사고 문의", focus_speaker="customer", transcript=True)
    assert "Korean" in prompt
    assert "customer" in prompt
    assert prompt.endswith("Conversation: \n사고 문의")
    assert user_prompt(Style.CUSTOM, "en", "TEXT", custom="Give a title.") == "Give a title.\n\nTEXT"
    assert user_prompt(Style.CUSTOM, "en", "TEXT", custom="Title of <{text}>:") == "Title of <TEXT>:"
    assert "Korean" not in user_prompt(Style.ABSTRACT, "en", "x")


@pytest.mark.parametrize("transcript", [False, True])
def test_chunks_fit_the_budget_and_lose_nothing(transcript: bool) -> None:
    def count(text: str) -> int:
        return len(text.split())

    turns = [f"speaker{i % 2}: " + " ".join(f"w{i}_{j}" for j in range(7 + i % 5)) + "." for i in range(40)]
    text = "\n".join(turns) if transcript else " ".join(t.split(": ", 1)[1] for t in turns)
    text += " " + "x" * 500 + " " + " ".join(f"long{k}" for k in range(120))  # a huge "word" and sentence
    chunks = split_into_chunks(text, 30, count, transcript=transcript)
    assert len(chunks) > 5
    assert all(count(c) <= 31 for c in chunks)

    def content(s: str) -> str:
        return "".join(w for w in s.split() if not w.startswith("speaker"))

    assert content(" ".join(chunks)) == content(text)
    if transcript:
        assert all(line.startswith("speaker") for c in chunks for line in c.splitlines() if "w" in line)


def test_transcript_message_to_text() -> None:
    transcript = audio_pb2.Transcript(language_code="ko")
    transcript.segments.add(text=" 안녕하세요 ", speaker="agent")
    transcript.segments.add(text="사고가 났어요", speaker="customer")
    transcript.segments.add(text="보험 되나요", speaker="customer")
    assert transcript_text(transcript) == ("agent: 안녕하세요\ncustomer: 사고가 났어요 보험 되나요", True)
    plain = audio_pb2.Transcript(text="customer: hello\nagent: hi")
    assert transcript_text(plain) == ("customer: hello\nagent: hi", True)
    words = audio_pb2.Transcript()
    words.words.add(word="just")
    words.words.add(word="words")
    assert transcript_text(words) == ("just words", False)
