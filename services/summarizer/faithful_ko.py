"""Korean inquiry lines from the caller's own morphemes: "자차 수리 보험 처리 여부 문의".

The caller's sentences are analysed with Kiwi. Each sentence is classed by
its morphemes: a **request** (…해 주세요, …해 줘, …고 싶어요, 부탁), a
**question** (a question mark or a question ending …나요 / …까요 / …ㄴ가요 /
…니, an embedded …는지 with 궁금 / 알고 싶), a **complaint** (도대체, 말이
됩니까, 뭘로 보는, 아무도 …, sarcastic praise such as "참 친절하시네요"), or
context. The request and question sentences (at most two, in order; failing
those the complaint) are compressed to the content of their last clauses:

- each word (eojeol) keeps its noun part as the caller wrote it (보험료를 ->
  보험료, 자차로도 -> 자차, 3주째인데 -> 3주째), so compounds Kiwi splits
  (자/IC 차) are not broken;
- the question shape becomes a fixed template word: …는지 / yes-no -> 여부,
  어떻게 -> 방법, 언제 -> 시기, 얼마 -> 금액, 왜 -> 사유, …ㄹ 수 있 -> 가능;
- a predicate that is a native verb (오르다, 바꾸다, 돌려받다) keeps its
  stem, conjugated by Kiwi for the line: 오르는지, 바꾸기, 돌려받는 (금액);
  negation (안 / 못 / …지 않) is kept with it: 못 받음, 안 줌;
- the line ends with the intent: 문의 (question), 요청 (request), 항의
  (complaint); two key sentences join with 및.

Every content morpheme of the line comes from the caller's words; the only
additions are the template words and endings (checked by `grounding`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import grounding, nlp
from .nlp import Morph

_HEAD_NOUN_TAGS = nlp.HEAD_NOUN_TAGS
#: Nouns that carry no content of their own (것, 거, 수, 때, ...), and pronoun-like nouns.
_EMPTY_NOUNS = frozenset(
    {
        "것",
        "거",
        "수",
        "때",
        "데",
        "지",
        "건",
        "게",
        "줄",
        "듯",
        "뿐",
        "적",
        "바",
        "중",
        "번",
        "안녕",
        "말",
        "정도",
        "혹시",
        "좀",
        "지금",
        "당장",
        "그동안",
        "동안",
        "정말",
        "진짜",
        "여보세요",
        "제",
        "저",
        "뭐",
        "무엇",
        "이거",
        "그거",
        "저거",
        "여기",
        "거기",
        "고객",
        "근데",
        "요즘",
        "그냥",
        # Question words: the template word (금액, 시기, 장소) stands for them.
        "얼마",
        "언제",
        "어디",
    }
)
#: Verbs that are grammar, not content: light verbs, auxiliaries, "want", "know"...
_LIGHT_VERBS = frozenset(
    {
        "하",
        "되",
        "있",
        "없",
        "주",
        "싶",
        "보",
        "가",
        "오",
        "이",
        "아니",
        "않",
        "알",
        "궁금하",
        "같",
        "맞",
        "드리",
        "모르",
        "말",
        "그렇",
        "어떻",
        "어떠하",
        "이러",
        "그러",
        "나",
        "들",
        "놓",
        "두",
        "버리",
        "계시",
        "여쭈",
        "묻",
        "물어보",
        "알아보",
        "필요하",
        "원하",
        "바라",
    }
)
_QUESTION_ENDINGS = re.compile(
    r"(나요|까요|ᆫ가요|가요|ᆯ까|니|냐|나|는지요|ᆫ지요|죠|어|아|지|래|ᆫ데요|는데요|ᆫ가)$"
)
_WH = {
    "어떻게": "방법",
    "어떡하": "방법",
    "어떻": "방법",
    "언제": "시기",
    "얼마": "금액",
    "얼마나": "금액",
    "왜": "사유",
    "어디": "장소",
    "어디서": "장소",
}
_EMBEDDED = frozenset({"는지", "ᆫ지", "은지", "ᆯ지", "을지"})
_TIME_UNITS = frozenset({"주", "개월", "달", "일", "년", "시", "살", "시간", "분"})
_INFO_VERBS = frozenset({"알리", "알려주", "가르치", "안내"})
_COMPLAINT = re.compile(
    r"도대체|대체|말이 됩니까|말이 돼|말이 되|어이[가 ]?없|황당|짜증|화가|화나|장난|뭘로 보|우습게|"
    r"아무도|한 통이 없|몇 번을|벌써 [0-9일이삼사오육칠팔구십]+|참 친절|대단하시|감사하네요|쉽네요|"
    r"고맙네요|불완전판매|사기|책임져|이게 뭐|너무하|실망|다고요\?|라고요\?|왜 이렇게|왜 이래|"
    r"계속 (?:에러|오류|안 )|몇 번째|이제 와서|어떡해요|어쩌라는"
)
_URGING = frozenset({"빨리", "당장", "얼른", "어서", "좀", "제발"})
_RHETORICAL = re.compile(r"아닌가요\?|아니에요\?|맞죠\?|잖아요|거 아니|건 아니")
_SARCASM = re.compile(r"참 친절|대단하시|감사하네요|쉽네요|고맙네요|잘 빼가")
_GREETING = re.compile(
    r"^(?:네|예|아|음|어|저|저기|야|와|아니)?\s*(?:안녕하세요|안녕하십니까|여보세요|감사합니다|고맙습니다)"
)


@dataclass
class Clause:
    words: list[list[Morph]]
    text: str


@dataclass
class Reading:
    """A sentence as the engine sees it."""

    text: str
    morphs: list[Morph]
    request: bool = False
    info_request: bool = False
    question: bool = False
    complaint: bool = False
    sarcasm: bool = False
    wh: str = ""
    possible: bool = False
    embedded: bool = False
    #: A "which X" question (어떤 서류): the nouns are the answer's topic, no template word.
    which: bool = False
    rhetorical: bool = False
    clauses: list[Clause] = field(default_factory=list)

    @property
    def ask(self) -> bool:
        return self.request or self.question


#: Sentence endings that state or exclaim even with a question mark after them.
_EXCLAIMING = frozenset({"네요", "네", "군요", "구나", "구먼", "거든요", "거든", "잖아요", "잖아"})

_CLAUSE_ENDINGS = frozenset(
    {"는데", "ᆫ데", "은데", "는데요", "니까", "으니까", "어서", "아서", "지만", "다가", "면서"}
)


def _clauses(text: str, words: list[list[Morph]]) -> list[Clause]:
    clauses: list[Clause] = []
    current: list[list[Morph]] = []
    for word in words:
        current.append(word)
        last = [m for m in word if m.tag not in ("SF", "SP", "SE", "SS", "SO", "SW", "JX")]
        if last and ((last[-1].tag == "EC" and last[-1].form in _CLAUSE_ENDINGS) or last[-1].tag == "EF"):
            clauses.append(Clause(current, ""))
            current = []
    if current:
        clauses.append(Clause(current, ""))
    for clause in clauses:
        start, end = clause.words[0][0].start, clause.words[-1][-1].end
        clause.text = text[start:end]
    return clauses


def read_sentence(text: str) -> Reading:
    morphs = nlp.morphemes(text)
    reading = Reading(text, morphs)
    forms = [(m.form, m.tag) for m in morphs]
    endings = [m.form for m in morphs if m.tag == "EF"]
    final = endings[-1] if endings else ""
    # "또 빠져나갔네요?", "다 보냈거든요?": an exclamation or a statement said rising, not a question.
    asked = text.rstrip().endswith("?") and final not in _EXCLAIMING
    for i, (form, tag) in enumerate(forms):
        nxt = forms[i + 1][0] if i + 1 < len(forms) else ""
        if (tag == "VX" and form == "주") or (
            (tag == "VV" and form in ("주", "줘")) and i > 0 and forms[i - 1][1] == "EC"
        ):
            reading.request = True
            if i >= 2 and forms[i - 2][0] in _INFO_VERBS:
                reading.info_request = True
        if tag == "VX" and form == "싶":
            knowing = any(f in ("알", "궁금하", "여쭈") for f, _ in forms[max(0, i - 3) : i])
            if knowing:  # "알고 싶어요": wants to know, a question
                reading.question = True
            else:
                reading.request = True
        if form in ("부탁", "요청") and tag == "NNG":
            reading.request = True
        if form in ("궁금하", "궁금") or (form == "문의" and tag == "NNG"):
            reading.question = True
        if (form == "알" and nxt in ("고", "고자")) or form in ("여쭈", "물어보", "알아보"):
            reading.question = True
        if form in ("어떻", "어떻게") and any(f == "되" for f, _ in forms[i + 1 : i + 4]):
            reading.wh = reading.wh or "현황"
        elif form in _WH and not reading.wh:
            reading.wh = _WH[form]
        if form == "몇" and nxt in _TIME_UNITS:
            reading.wh = reading.wh or "시기"
        if form in ("어떤", "무슨", "어느", "뭐", "무엇", "뭔", "몇") and tag in ("MM", "NP"):
            reading.which = True
        if form == "수" and tag == "NNB" and nxt == "있":
            reading.possible = True
        if form == "가능" and tag == "NNG":
            reading.possible = True
        if tag == "EC" and form in ("는지", "ᆫ지", "은지", "ᆯ지", "을지", "는가", "ᆫ가"):
            reading.embedded = True
        if form in _INFO_VERBS and tag in ("VV", "NNG"):
            reading.info_request = reading.info_request or nxt in ("어", "아", "하")
    if asked or (_QUESTION_ENDINGS.search(final) and final not in ("어", "아", "지", "ᆫ데요", "는데요")):
        reading.question = True
    if reading.embedded and (reading.question or reading.request):
        reading.question = True
    reading.complaint = bool(_COMPLAINT.search(text))
    reading.sarcasm = bool(_SARCASM.search(text))
    # 반말 imperative ("빨리 고쳐", "당장 해지해"): a plain ending after an urging adverb.
    urged = any(m.tag == "MAG" and m.form in _URGING for m in morphs)
    if final in ("어", "아", "라", "어라", "아라") and urged and not asked:
        reading.request = True
    # The expert's rhetorical check ("…하는 거 아닌가요?", "…맞죠?", "…잖아요"): context for the real ask.
    reading.rhetorical = bool(_RHETORICAL.search(text))
    if reading.request and final in ("세요", "어요", "아요") and not asked:
        reading.question = reading.question and reading.embedded
    reading.clauses = _clauses(text, nlp.korean_words(text, morphs))
    return reading


def _noun_part(word: list[Morph], text: str) -> str:
    """The noun part of a word as the caller wrote it ("보험료를" -> "보험료"), minus empty nouns."""
    if word and word[0].tag == "NP":
        return ""
    surface = nlp.noun_part(word, text)
    return "" if surface in _EMPTY_NOUNS else surface


def _predicate(clause: Clause) -> tuple[str, str, bool] | None:
    """(stem, tag, negated) of the clause's content verb when it is a native verb, else None.

    Scans from the end past endings and auxiliaries; a noun predicate (처리가 되다, 확인하다,
    가능하다) ends the search: the noun already carries the meaning.
    """
    morphs = [m for w in clause.words for m in w]
    negated = False
    for index in range(len(morphs) - 1, -1, -1):
        morph = morphs[index]
        before = morphs[index - 1] if index else None
        if (morph.tag == "VX" and morph.form in ("않", "못하")) or (
            morph.tag == "MAG" and morph.form in ("안", "못")
        ):
            negated = True
        elif morph.tag == "VCP" and before is not None and before.tag == "NNB":
            continue  # "…는 거예요": the verb before 거 is the predicate
        elif morph.tag in ("XSV", "XSA", "VCP"):
            return None
        elif morph.tag in ("VV", "VA"):
            if before is not None and before.tag == "MAG" and before.form in ("안", "못"):
                negated = True
            if morph.form not in _LIGHT_VERBS:
                return morph.form, morph.tag, negated
            if before is not None and before.tag in ("NNG", "NNP", "JKS", "JKC", "JKO", "MAG"):
                return None
        elif morph.tag in _HEAD_NOUN_TAGS:
            return None
    return None


def _nouns(reading: Reading, words: list[list[Morph]]) -> list[str]:
    return [n for w in words if (n := _noun_part(w, reading.text))]


def _content(reading: Reading, max_words: int) -> list[str]:
    """The noun parts of the sentence's last clause (and of the clauses before it while short)."""
    clauses = reading.clauses
    if not clauses:
        return []
    pieces = _nouns(reading, clauses[-1].words)
    index = len(clauses) - 2
    while index >= 0 and len(pieces) < 2:
        earlier = _nouns(reading, clauses[index].words)
        pieces = earlier[:3] + pieces if earlier else pieces  # topic nouns come first
        index -= 1
    if reading.possible:
        pieces = [p for p in pieces if p != "가능"]
    return _unique(pieces)[-max_words:]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _embedded_split(reading: Reading) -> tuple[list[str], list[str]] | None:
    """Nouns before and after an embedded question ending (…는지) in the last clauses."""
    for clause in reversed(reading.clauses):
        words = clause.words
        for index, word in enumerate(words):
            if any(m.tag == "EC" and m.form in _EMBEDDED for m in word):
                before = _nouns(reading, words[: index + 1])
                after = _nouns(reading, words[index + 1 :])
                return before, after
    return None


def _verb_phrase(reading: Reading, kind: str) -> str:
    """The native verb of the last clause, conjugated for the line ("오르는지", "바꾸기", "못 받음")."""
    if not reading.clauses:
        return ""
    found = _predicate(reading.clauses[-1])
    if found is None:
        return ""
    stem, tag, negated = found
    if stem in _INFO_VERBS:
        return ""  # "얼마나 되는지 알려주세요": telling is the request, not its content
    if kind == "complaint" and not negated:
        return ""
    parts: list[tuple[str, str]] = []
    if negated:
        parts.append(("못" if "못" in reading.text else "안", "MAG"))
    parts.append((stem, tag))
    if kind == "wh":
        parts.append(("는" if tag == "VV" else "ᆫ", "ETM"))
    elif kind == "yesno":
        parts.append(("는지" if tag == "VV" else "ᆫ지", "EC"))
    elif kind == "request":
        parts.append(("기", "ETN"))
    else:
        parts.append(("ᆷ", "ETN"))
    return nlp.join_korean(parts)


def _phrase(reading: Reading, intent: str, max_words: int) -> list[str]:
    """The content words of one key sentence, with its template word (여부, 방법, ...)."""
    words = _content(reading, max_words)
    if intent == "항의":
        if reading.wh in ("시기", "사유", "현황"):  # "보험금 들어오는 시기 항의"
            verb = _verb_phrase(reading, "wh")
            return [*words, *([verb] if verb else []), reading.wh]
        verb = _verb_phrase(reading, "complaint")
        return [*words, verb] if verb else words
    if reading.info_request and not reading.embedded and not reading.wh:
        return words  # "접수 번호 다시 알려주실 수 있나요?": the nouns are what to tell
    if reading.which:
        if reading.wh:
            words.append(reading.wh)
        return words
    if reading.wh and reading.question:
        verb = _verb_phrase(reading, "wh") if reading.wh == "금액" else ""
        if verb:
            words.append(verb)
        if reading.wh not in words:
            words.append(reading.wh)
        return words
    split = _embedded_split(reading) if reading.embedded else None
    if split is not None and split[0]:
        before, after = split
        verb = _verb_phrase(reading, "yesno") if not after else ""
        tail = [verb] if verb else (["가능", "여부"] if reading.possible else ["여부"])
        return _unique(before[-max_words:] + tail + after)
    if intent == "요청":
        verb = _verb_phrase(reading, "request")
        if verb:
            words.append(verb)
        return words
    verb = _verb_phrase(reading, "yesno")
    if verb:
        words.append(verb)
    else:
        if reading.possible:
            words.append("가능")
        words.append("여부")
    return words


def _topic(readings: list[Reading], asks: list[Reading], max_words: int) -> list[str]:
    """Nouns of the context before the first ask, up to SHORT_PHRASE from one sentence: the first
    sentence before it that is neither an ask nor a complaint put as a question ("도대체 몇 번을
    전화해야 돼요?" says nothing of the matter), else the ask's own earlier clauses."""
    ask = asks[0]
    named = {
        id(r): len({n for c in r.clauses for n in _nouns(r, c.words) if not _numeric(n)})
        for r in readings[: readings.index(ask)]
        if r not in asks and not r.sarcasm
    }
    earlier = [r for r in readings if named.get(id(r))]
    # Callers open with the topic: the first sentence naming two things ("이번 달 보험료가 두 번
    # 빠져나갔어요"), else the one naming most ("보험금 청구한 지 한 달이 넘었는데 입금이 안 됐어요"
    # over "도대체 몇 번을 전화해야 돼요?").
    earlier.sort(key=lambda r: (0, 0) if named[id(r)] >= 2 else (1, -named[id(r)]))
    for reading in [*earlier, ask]:
        clauses = reading.clauses if reading is not ask else reading.clauses[:-1]
        nouns: list[str] = []
        for clause in clauses:
            nouns = _unique(nouns + _nouns(reading, clause.words))
            if len(nouns) >= SHORT_PHRASE:
                break
        if nouns:
            return nouns[:max_words]
    return []


def _numeric(noun: str) -> bool:
    """A count or amount ("삼십", "3주째", "40분"): content, but not what a sentence is about."""
    return bool(re.match(r"[0-9]|[일이삼사오육칠팔구]?[십백천만]", noun))


def _only_template(words: list[str]) -> bool:
    """Nothing but template words (여부, 문의, ...): no content of the caller's."""
    return all(w in grounding.KO_TEMPLATE_WORDS for w in words)


def _intent(reading: Reading, call_sarcastic: bool) -> str:
    if reading.request and not reading.info_request:
        return "요청"
    if reading.complaint or call_sarcastic:
        return "항의"
    return "문의"


def _strip_greeting(sentence: str) -> str:
    match = _GREETING.match(sentence)
    return sentence[match.end() :].lstrip(" ,.!?~") if match else sentence


#: Key phrases shorter than this (words) take the topic nouns of the first context sentence.
SHORT_PHRASE = 3


def inquiry_line(sentences: list[str], max_words: int = 8) -> str:
    """The one-line Korean inquiry summary of the caller's `sentences`."""
    texts = [t for s in sentences if (t := _strip_greeting(s.strip()))]
    readings = [read_sentence(t) for t in texts]
    if not readings:
        return ""
    call_sarcastic = any(r.sarcasm for r in readings)
    asks = [r for r in readings if r.ask and (_content(r, max_words) or not r.complaint)]
    # "도대체 몇 번을 전화해야 되는 거예요?": a complaint put as a question is context when the
    # caller also asks for something ("빨리 처리해 주세요").
    real = [r for r in asks if not (r.complaint and r.question and not r.request and not r.embedded)]
    if real:
        asks = real
    plain = [r for r in asks if not r.rhetorical]
    if len(plain) < len(asks) and plain and len(_content(plain[0], max_words)) >= 2:
        asks = plain  # the real ask says enough on its own
    if not asks:
        complaints = [r for r in readings if r.complaint]
        target = complaints[-1] if complaints else readings[-1]
        index = readings.index(target)
        if len(_content(target, max_words)) < 2 and index > 0:
            target = readings[index - 1]
        words = _phrase(target, "항의", max_words)
        return " ".join([*words, "항의"]) if complaints else " ".join([*words, "문의"])
    asks = asks[:2]
    parts: list[tuple[list[str], str]] = []
    used: set[str] = set()
    for reading in asks:
        intent = _intent(reading, call_sarcastic)
        phrase = _phrase(reading, intent, max_words)
        kept = [w for w in phrase if w not in used or w in ("여부", "가능")]
        if parts and _only_template(kept):
            kept = phrase  # its nouns were said before, but this ask is about them: keep them
        used.update(kept)
        if parts and _only_template(kept):
            continue  # "여보세요?" and the like: an ask with nothing in it adds nothing
        if parts and len(kept) == 1:  # "확인 좀 해 주세요": it completes the previous ask
            parts[-1] = ([*parts[-1][0], *kept], intent)
        else:
            parts.append((kept, intent))
    if not parts:
        return ""
    first = parts[0][0]
    nouns = set(_content(asks[0], max_words))
    content = [w for w in first if w in nouns]  # the ask's own nouns: a verb names no topic
    if len(content) < SHORT_PHRASE:
        topic = [w for w in _topic(readings, asks, max_words) if w not in used]
        parts[0] = (topic[:SHORT_PHRASE] + first, parts[0][1])
    if _only_template([w for words, _ in parts for w in words]):
        return ""  # nothing but template words: the engine quotes the caller instead
    if len({intent for _, intent in parts}) == 1:
        return " 및 ".join(" ".join(words) for words, _ in parts) + f" {parts[0][1]}"
    return " 및 ".join(f"{' '.join(words)} {intent}" for words, intent in parts)
