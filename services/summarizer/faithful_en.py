"""English inquiry lines from the caller's own words: "Customer asks whether the repair is covered".

The caller's sentences are classed by their shape: a **question** (a
question mark, an auxiliary or wh-word first, "I was wondering if …", "I
want to know whether …"), a **request** ("I want/need/'d like to …", "I want
a refund", "Can you …", "Please …", an imperative), a **complaint**
("still", "nobody", "third time", "ridiculous", sarcasm such as "oh great",
"new record", "thanks so much for …") or context. The asks (at most two, in
order) are rewritten from the caller's point of view to the agent's:

- questions become indirect ones: "Is the repair covered?" -> "whether the
  repair is covered"; "Does my plan cover it?" -> "whether their plan covers
  it" (the verb re-inflected by lemminflect); "How do I file a claim?" ->
  "how to file a claim"; "When will my refund arrive?" -> "when their refund
  will arrive";
- requests keep their verb phrase: "Can you reset my password" -> "asks the
  agent to reset their password"; "I want a refund" -> "requests a refund";
- first person becomes third (I -> they, my -> their), "you" the company;
- a complaint without an ask is "complains that …"; with one, the ask
  follows ("complains that they were charged twice and requests a refund").

Only pronouns, auxiliaries' agreement, inflections of the caller's own verbs
and the template words ("Customer", "asks", "requests", "complains", "the
agent", "the company", "whether") are added: `grounding` checks that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import nlp

_LEADING = re.compile(
    r"^(?:(?:hi|hello|hey|so|well|oh|um|uh|okay|ok|also|and|but|yeah|look|listen|honestly|seriously|"
    r"good (?:morning|afternoon|evening)|thanks|thank you|yes|no|wow|ugh|anyway|right|alright|"
    r"oh great|just great|great|perfect|fantastic|wonderful|brilliant)\b[\s,.!]*)+",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"(?:,?\s*(?:please|right|thanks|thank you|okay|ok))+[\s?.!]*$", re.IGNORECASE)
_AUX = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "am",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
        "shall",
        "may",
        "might",
        "have",
        "has",
        "had",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "couldn't",
        "won't",
        "wouldn't",
        "shouldn't",
    ]
)
_WH = frozenset(["how", "what", "when", "where", "why", "which", "who", "whom", "whose"])
_EMBEDDED = re.compile(
    r"^(?:i|we)\s*(?:was\s+|am\s+|'m\s+|were\s+|just\s+|really\s+)*"
    r"(?:wondering|wonder|wanted to (?:ask|know)|want to (?:ask|know)|would like to know|'d like to know|"
    r"need to know|have a question about|was hoping to find out|want to find out|wanted to find out)"
    r"\s+(?:about\s+)?(?=(?:if|whether|how|what|when|why|where|which|who)\b)",
    re.IGNORECASE,
)
_TELL_ME = re.compile(
    r"^(?:(?:can|could|would|will)\s+(?:you|someone)\s+(?:please\s+)?)?(?:please\s+)?"
    r"(?:tell me|let me know|explain(?: to me)?|find out|check|confirm|look up)\s+"
    r"(?=(?:if|whether|how|what|when|why|where|which|who)\b)",
    re.IGNORECASE,
)
_WANT_TO = re.compile(
    r"^(?:i|we)\s*(?:really\s+|just\s+|'m\s+|am\s+|also\s+)*"
    r"(?:(?:want|wanted|would like|'d like|need|needed|have|calling|trying|hoping)\s+to|wanna)\s+(?=\w)",
    re.IGNORECASE,
)
_WANT_NP = re.compile(
    r"^(?:i|we)\s*(?:really\s+|just\s+|also\s+)*(?:want|need|would like|'d like)\s+(?!to\b)(?=\w)",
    re.IGNORECASE,
)
_YOU = re.compile(r"^(?:can|could|would|will)\s+(?:you|someone|somebody)\s+(?:please\s+)?", re.IGNORECASE)
_PLEASE = re.compile(r"^(?:please|kindly|just)\s+", re.IGNORECASE)
_COMPLAINT = re.compile(
    r"\b(?:still|never|nobody|no one|ridiculous|unacceptable|terrible|awful|third time|second time|"
    r"misleading|promised|supposed to|waste|furious|angry|annoyed|sick of|tired of|fed up|scam|switching|"
    r"escalat\w*|is this how|new record|oh great|thanks so much|really appreciate|just what i needed|"
    r"so now|now you(?:'re| are)? (?:saying|telling me|say|tell me)|suddenly|charged (?:me )?twice|"
    r"only paid|why did you|why was i|why is my|why am i|"
    r"explain to me why|been waiting|waiting for (?:weeks|months|days)|keeps? \w+ing|it's been)\b",
    re.IGNORECASE,
)
_SARCASM = re.compile(
    r"\b(?:oh great|great, so|just great|new record|thanks so much|thanks a lot|really appreciate|"
    r"just what i needed|how nice|so now that|wow|fantastic|wonderful|brilliant|so i get to)\b",
    re.IGNORECASE,
)
_SHIFT = {
    "i": "they",
    "me": "them",
    "my": "their",
    "mine": "theirs",
    "myself": "themselves",
    "we": "they",
    "us": "them",
    "our": "their",
    "ours": "theirs",
    "ourselves": "themselves",
    "i'm": "they're",
    "i've": "they've",
    "i'd": "they'd",
    "i'll": "they'll",
    "we're": "they're",
    "we've": "they've",
    "we'd": "they'd",
    "we'll": "they'll",
    "you": "the company",
    "your": "the company's",
    "yours": "the company's",
    "you're": "the company is",
    "you've": "the company has",
    "you'll": "the company will",
    "you'd": "the company would",
}
#: Verb agreement after a shifted subject: "I am" -> "they are", "you have" -> "the company has".
_AGREE_THEY = {"am": "are", "was": "were", "wasn't": "weren't"}
_AGREE_COMPANY = {
    "have": "has",
    "are": "is",
    "were": "was",
    "don't": "doesn't",
    "do": "does",
    "haven't": "hasn't",
    "aren't": "isn't",
    "weren't": "wasn't",
}
#: Adverbs between a do-support auxiliary and its verb ("why did you only pay").
_ADVERBS = frozenset(
    ["only", "also", "ever", "really", "even", "still", "actually", "just", "never", "already", "always"]
)
_SUBJECT_PRONOUNS = frozenset(
    ["i", "you", "we", "they", "he", "she", "it", "there", "this", "that", "someone", "anyone", "anybody"]
)
_DETERMINERS = frozenset(
    [
        "the",
        "my",
        "your",
        "our",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "their",
        "its",
        "any",
        "some",
    ]
)
#: Most words an ask keeps (the line is read back on a call).
MAX_CLAUSE_WORDS = 14
#: Most words of a complaint that an ask follows.
SHORT_COMPLAINT_WORDS = 8
#: Most words of the whole line before a second ask is left out.
MAX_LINE_WORDS = 16


@dataclass
class Ask:
    """One rewritten ask: its intent verb and the clause after it."""

    kind: str  # "question", "request", "complaint"
    clause: str  # "whether the repair is covered", "to reset their password", "a refund"
    verb: str  # "asks", "requests", "complains that"


def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?|\$?\d+(?:[.,:]\d+)*%?|[^\sA-Za-z\d]", text)


def _detok(tokens: list[str]) -> str:
    out = ""
    for token in tokens:
        if out and not re.fullmatch(r"[,.;:!?)%]", token) and not out.endswith(("(", "$")):
            out += " "
        out += token
    return out


def shift_person(tokens: list[str]) -> list[str]:
    """First person to third ("my" -> "their"), "you" to the company, with agreement fixed."""
    out: list[str] = []
    previous = before = ""
    for token in tokens:
        lower = token.lower()
        if lower in _SHIFT:
            out.extend(_SHIFT[lower].split())
            before, previous = previous, lower
            continue
        if previous in ("i",) and lower in _AGREE_THEY:
            out.append(_AGREE_THEY[lower])
        elif previous == "you" and lower in _AGREE_COMPANY:
            out.append(_AGREE_COMPANY[lower])
        elif previous == "you" and before not in _AUX and lower in nlp.english_pos(lower).get("VERB", ()):
            out.append(nlp.inflect(lower, "VBZ"))
        else:
            out.append(token)
        before, previous = previous, lower
    return out


def _lower_first(tokens: list[str]) -> list[str]:
    if tokens and tokens[0] != "I" and tokens[0][:1].isupper() and nlp.english_pos(tokens[0].lower()):
        return [tokens[0].lower(), *tokens[1:]]
    return tokens


def _can_be_verb(word: str) -> bool:
    pos = nlp.english_pos(word.lower())
    return "VERB" in pos or "AUX" in pos


def _can_be_noun(word: str) -> bool:
    pos = nlp.english_pos(word.lower())
    return not pos or "NOUN" in pos or "PROPN" in pos


def _subject_end(tokens: list[str], start: int, aux: str = "") -> int:
    """Index after the subject that starts at `start` (a pronoun, or a determiner and its nouns).

    After a form of "be" the predicate is a participle or adjective, so the subject runs while
    words can be nouns ("is the emergency room visit | covered"); after "do" or a modal the
    predicate is a verb, so it stops at the first word that can be one ("does my plan | cover").
    """
    if start >= len(tokens):
        return start
    first = tokens[start].lower()
    if first not in _DETERMINERS and (first in _SUBJECT_PRONOUNS or first in _SHIFT):
        return start + 1
    end = start + 1
    if first in _DETERMINERS and end < len(tokens):
        end += 1
    be = aux.lower().replace("n't", "") in ("is", "are", "was", "were", "am")
    while end < len(tokens) and re.fullmatch(r"[A-Za-z'-]+", tokens[end]):
        word = tokens[end].lower()
        if word in _DETERMINERS or word in ("to", "for", "of", "on", "in", "at", "by", "with", "from"):
            break
        if (be and not _can_be_noun(word)) or (not be and _can_be_verb(word)):
            break
        end += 1
    return end


def _inflect_after_do(aux: str, verb: str) -> str:
    lower = aux.lower().replace("n't", "")
    if lower == "does":
        return nlp.inflect(verb, "VBZ")
    if lower == "did":
        return nlp.inflect(verb, "VBD")
    return verb


def _indirect(tokens: list[str]) -> list[str]:
    """A direct question's tokens as an indirect question ("is X covered" -> "whether X is covered")."""
    tokens = [t for t in tokens if t not in ("?",)]
    if not tokens:
        return tokens
    first = tokens[0].lower()
    wh: list[str] = []
    index = 0
    if first in _WH:
        wh = [tokens[0].lower()]
        index = 1
        if (
            first == "how"
            and index < len(tokens)
            and tokens[index].lower() in ("much", "many", "long", "soon")
        ):
            wh.append(tokens[index].lower())
            index += 1
        elif first in ("what", "which") and index < len(tokens) and tokens[index].lower() not in _AUX:
            while index < len(tokens) and tokens[index].lower() not in _AUX:
                wh.append(tokens[index])
                index += 1
    if index < len(tokens) and tokens[index].lower() in _AUX:
        aux = tokens[index]
        subject_end = _subject_end(tokens, index + 1, aux)
        subject = tokens[index + 1 : subject_end]
        rest = tokens[subject_end:]
        negative = aux.lower().endswith("n't")
        how_to = wh == ["how"] and [t.lower() for t in subject] in (["i"], ["we"])
        if how_to and aux.lower() in ("do", "can", "should", "could", "would"):
            return ["how", "to", *rest]
        if aux.lower().replace("n't", "") in ("do", "does", "did") and rest and not negative:
            at = next((i for i, t in enumerate(rest) if t.lower() not in _ADVERBS), 0)
            rest = [*rest[:at], _inflect_after_do(aux, rest[at]), *rest[at + 1 :]]
            return [*(wh or ["whether"]), *subject, *rest]
        if not subject:
            return [*(wh or ["whether"]), aux.lower(), *rest]
        return [*(wh or ["whether"]), *subject, aux.lower(), *rest]
    if wh:
        return [*wh, *tokens[index:]]
    return ["whether", *tokens]


_FILLERS = re.compile(
    r"\s*\b(?:right now|just|actually|really|basically|honestly|a lot|at all|please|every single|anyway|"
    r"any time soon|or something|or anything)\b",
    re.IGNORECASE,
)


def _cap(tokens: list[str]) -> list[str]:
    """Fillers out ("right now", "a lot", "just"), then at most MAX_CLAUSE_WORDS, cut at a clause break."""
    kept = _tokens(_FILLERS.sub("", " ".join(tokens)))
    tokens = kept or tokens
    while tokens and tokens[-1] in (",", ";", ":", "-"):
        tokens = tokens[:-1]
    if len(tokens) <= MAX_CLAUSE_WORDS:
        return tokens
    for index in range(MAX_CLAUSE_WORDS, 5, -1):
        if tokens[index] in (",", ";") or tokens[index].lower() in ("and", "but", "because", "so", "or"):
            return tokens[:index]
    return tokens[:MAX_CLAUSE_WORDS]


_THEY = frozenset({"they", "they're", "they've", "they'd", "they'll"})
_DANGLING = frozenset(
    {
        *_DETERMINERS,
        "and",
        "but",
        "or",
        "so",
        "because",
        "to",
        "for",
        "of",
        "on",
        "in",
        "at",
        "by",
        "with",
        "from",
        "company's",
        "still",
        "even",
    }
)


#: Words a finished line does not end on. An indirect question may end on "is" or "do" ("what their
#: claim number is", "what they should do"), so of the auxiliaries only the modals are here.
_UNFINISHED = (
    _DANGLING
    | _WH
    | {"whether", "if", "than", "like", "will", "would", "can", "could", "should", "shall", "may", "might"}
) - {"that", "this", "those", "these"}


def well_formed(line: str) -> bool:
    """False for a line a rule left unfinished ("… how do they do", "… will their", "Customer asks
    why"): it ends on a word that needs one after it, or the ask is a bare question word."""
    tokens = _tokens(line.rstrip("?.! "))
    if not tokens:
        return False
    return tokens[-1].lower() not in _UNFINISHED


def _cut(tokens: list[str], limit: int) -> list[str]:
    """At most `limit` tokens, ended at a clause break when there is one ("they cancelled their policy
    three times | and ..."), and never on a word that needs one after it ("... and the")."""
    head = tokens[:limit]
    breaks = [i for i, t in enumerate(head) if i >= 3 and (t in (",", ";") or t.lower() in ("and", "but"))]
    if breaks and limit < len(tokens):
        head = head[: breaks[-1]]
    while len(head) > 1 and head[-1].lower() in _DANGLING:
        head = head[:-1]
    return head


def _clean(sentence: str) -> str:
    text = _LEADING.sub("", sentence.strip()).strip()
    return _TRAILING.sub("", text).strip(" ,") if text else ""


def _read_segment(text: str, asked: bool) -> Ask | None:
    """The ask in one segment of a sentence (question or request), or None."""
    body = _clean(text).rstrip("?.! ")
    if not body:
        return None
    if match := _EMBEDDED.match(body) or _TELL_ME.match(body):
        clause = _tokens(body[match.end() :])
        verb = re.search(r"\b(check|confirm|look up|find out)\s*$", body[: match.end()], re.IGNORECASE)
        if verb:  # "please check whether …": a request to check, not a question
            clause = ["the", "agent", "to", *verb.group(1).lower().split(), *clause]
            return Ask("request", _detok(_cap(shift_person(clause))), "asks")
        if clause and clause[0].lower() == "if":
            clause[0] = "whether"
        return Ask("question", _detok(_cap(shift_person(clause))), "asks")
    if match := _YOU.match(body):
        clause = _tokens(body[match.end() :])
        return Ask("request", _detok(_cap(["the", "agent", "to", *shift_person(clause)])), "asks")
    if match := _WANT_NP.match(body):
        rest = _tokens(body[match.end() :])
        return Ask("request", _detok(_cap(shift_person(rest))), "requests")
    if match := _WANT_TO.match(body):
        rest = _tokens(body[match.end() :])
        if rest and rest[0].lower() in ("know", "ask") and len(rest) > 1:
            inner = rest[1:]
            if inner[0].lower() == "if":
                inner[0] = "whether"
            return Ask("question", _detok(_cap(shift_person(inner))), "asks")
        if rest and _can_be_verb(rest[0]) and rest[0].lower() not in ("a", "an", "the"):
            return Ask("request", _detok(_cap(["to", *shift_person(rest)])), "asks")
    tokens = _tokens(body)
    if not tokens:
        return None
    first = tokens[0].lower()
    inverted = (
        first in _AUX
        and len(tokens) > 2
        and (tokens[1].lower() in _SUBJECT_PRONOUNS | _DETERMINERS or _can_be_noun(tokens[1]))
    )
    # Speech-to-text drops question marks: a wh-word or an auxiliary before its subject still asks.
    wh_first = first in _WH and len(tokens) > 1 and tokens[1].lower() in _AUX | {"much", "many", "long", "to"}
    if (
        (asked and first not in ("if", "when", "because", "since"))
        or inverted
        or wh_first
        or (asked and first in _WH)
    ):
        clause = _indirect(tokens) if first in _AUX or first in _WH else ["whether", *tokens]
        return Ask("question", _detok(_cap(_lower_first(shift_person(clause)))), "asks")
    if (match := _PLEASE.match(body)) and _can_be_verb(body[match.end() :].split()[0]):
        rest = _tokens(body[match.end() :])
        return Ask("request", _detok(_cap(["the", "agent", "to", *_lower_first(shift_person(rest))])), "asks")
    pos = nlp.english_pos(first)
    imperative = "VERB" in pos and first in pos["VERB"] and "PRON" not in pos and first not in _DETERMINERS
    if imperative and tokens[0][:1].isupper():
        return Ask(
            "request", _detok(_cap(["the", "agent", "to", *_lower_first(shift_person(tokens))])), "asks"
        )
    return None


_SEGMENT = re.compile(
    r",\s+(?:and\s+|but\s+|so\s+)?|\s+(?:and|but|so)\s+(?=(?:i|i'd|i'm|we|can|could|will|would|do|does|is|are|"
    r"please|my|how|what|when)\b)|\s+(?=(?:can|could|would|will)\s+you\b)",
    re.IGNORECASE,
)
#: Where unpunctuated speech starts a new question or condition ("… on my policy | how do i do
#: that", "… yesterday | if i file a claim will my rates go up").
_SPOKEN_BREAK = re.compile(
    r"\s+(?=(?:how|what|when|why|where)\s+(?:do|does|did|is|are|can|should|will|would)\s+"
    r"(?:i|we|my|you|it|the|they)\b|if\s+(?:i|we)\s+\w+)",
    re.IGNORECASE,
)


def _split_spoken(segment: str) -> list[str]:
    """A segment split where a new question or condition starts, once four words came before it."""
    pieces: list[str] = []
    start = 0
    for match in _SPOKEN_BREAK.finditer(segment):
        rest = segment[match.end() :]
        if rest[:3].lower() == "if " and len(_split_condition(rest)) < 2:
            continue  # a condition after the question ("… the deductible if I claim it"): it stays
        if len(segment[start : match.start()].split()) >= 4:
            pieces.append(segment[start : match.start()])
            start = match.end()
    return [*pieces, segment[start:]]


def _split_condition(segment: str) -> list[str]:
    """ "if I cancel now do I get money back" -> ["if I cancel now", "do I get money back"]."""
    tokens = segment.split()
    if len(tokens) < 4 or tokens[0].lower() != "if":
        return [segment]
    for index in range(2, len(tokens) - 1):
        if tokens[index].lower() in _AUX and tokens[index + 1].lower() in _SUBJECT_PRONOUNS | _DETERMINERS:
            return [" ".join(tokens[:index]), " ".join(tokens[index:])]
    return [segment]


def read_asks(sentence: str) -> list[Ask]:
    """The asks of one sentence: its segments (split at commas and "and"/"but" before a new
    clause) that are questions or requests. A leading "if …" segment stays with the question
    after it ("whether their rates will go up if they claim it")."""
    asked = sentence.rstrip().endswith("?")
    segments = [seg for seg in _SEGMENT.split(_clean(sentence)) if seg and seg.strip()]
    asks: list[Ask] = []
    condition = ""
    segments = [
        part for segment in segments for piece in _split_spoken(segment) for part in _split_condition(piece)
    ]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment.lower().startswith("if ") and not last:
            condition = _detok(shift_person(_tokens(segment.rstrip("?.! "))))
            continue
        ask = _read_segment(segment, asked and last)
        if ask is None:
            condition = ""
            continue
        if ask.clause.lower() in _WH and index:
            # "… the premium went up by two hundred dollars, can you tell me why": why that.
            before = re.split(r"\s+(?:and|but|so)\s+", _clean(segments[index - 1]).rstrip("?.! "))[-1]
            ask.clause = _detok(_cap([ask.clause.lower(), *_lower_first(shift_person(_tokens(before)))]))
        if condition and ask.kind == "question":
            ask.clause = f"{ask.clause} {'if' + condition[2:] if condition[:2] == 'If' else condition}"
        condition = ""
        asks.append(ask)
    if not asks and asked:
        ask = _read_segment(sentence, True)
        if ask is not None:
            asks.append(ask)
    return asks


def _statement(sentence: str, *, short: bool = False) -> str:
    """A complaint as "that …" (a clause with its subject) or "about …" (a bare phrase).

    In "X, but Y" the point is Y; of the pieces of a sentence, the one with the complaint cue
    ("… and I still haven't been paid") — unless the cue is sarcasm ("that's a new record"), whose
    point is the other piece ("only forty minutes on hold").
    """
    text = _clean(sentence).rstrip("?.! ")
    if match := re.search(r",?\s+but\s+", text):
        text = text[match.end() :] or text
    pieces = [p for p in re.split(r",?\s+and\s+|,\s+", text) if p.strip()]
    if len(pieces) > 1 and len(text.split()) > MAX_CLAUSE_WORDS:
        plain = [p for p in pieces if not _SARCASM.search(p)]
        if len(plain) < len(pieces) and plain:
            text = max(plain, key=len)
        else:
            text = next((p for p in pieces if _COMPLAINT.search(p)), text)
    text = re.sub(r"^(?:only|just|so)\s+", "", text.strip(), flags=re.IGNORECASE)
    tokens = _cap(_lower_first(shift_person(_tokens(text))))
    if short and len(tokens) > SHORT_COMPLAINT_WORDS:  # the ask that follows matters more
        tokens = _cut(tokens, SHORT_COMPLAINT_WORDS)
    if not tokens:
        return ""
    if short and re.match(
        r"(?:now that|if|when|because|since|although|though|once|while)\b", _detok(tokens).lower()
    ):
        return ""  # a subordinate clause alone ("now that they want to cancel") says nothing; the ask does
    lowered = {t.lower() for t in tokens}
    clause = bool(lowered & (_SUBJECT_PRONOUNS | _THEY | {"company", "nobody"})) or tokens[0].lower() == "the"
    return ("that " if clause else "about ") + _detok(tokens)


_PRONOUNS = frozenset({"it", "that", "this", "them", "one"})
_NOT_CONTENT = frozenset(
    {
        "there",
        "thing",
        "things",
        "way",
        "lot",
        "today",
        "time",
        "times",
        "something",
        "minutes",
        "hours",
        "days",
        "weeks",
        "months",
        "years",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "year",
    }
)


def _content_words(text: str) -> int:
    """Nouns and numbers in `text`: what makes an ask or a complaint say something of its own."""
    count = 0
    for token in _tokens(text):
        lower = token.lower()
        if (
            token[:1].isdigit()
            or token.startswith("$")
            or (
                lower not in _SHIFT
                and lower not in _PRONOUNS | _DETERMINERS | _SUBJECT_PRONOUNS | _NOT_CONTENT | _AUX | _WH
                and lower not in ("them", "company", "agent", "whether")
                and re.fullmatch(r"[A-Za-z'-]+", token)
                and "NOUN" in nlp.english_pos(lower)
            )
        ):
            count += 1
    return count


def _last_noun_phrase(sentence: str) -> list[str]:
    """The noun phrase that ends the sentence, when it starts with a determiner, shifted to the third
    person ("I lost my claim number." -> "their claim number"): what a following "what it is" most
    likely refers to. Anything less certain ("... autopay months ago") gives nothing."""
    tokens = shift_person(_tokens(_clean(sentence).rstrip("?.! ")))
    start = len(tokens)
    while start and re.fullmatch(r"[A-Za-z'-]+", tokens[start - 1]):
        word = tokens[start - 1].lower()
        if word in _DETERMINERS:
            phrase = tokens[start - 1 :]
            return phrase if len(phrase) > 1 and _content_words(" ".join(phrase)) else []
        if not _can_be_noun(word) or word in _SUBJECT_PRONOUNS or word == "them":
            return []
        start -= 1
    return []


def _resolve(clause: str, antecedent: list[str]) -> str:
    """ "what it is" -> "what their claim number is": the pronoun replaced by what it stands for."""
    tokens = _tokens(clause)
    for index, token in enumerate(tokens):
        if token.lower() in ("it", "that", "this"):
            return _detok([*tokens[:index], *antecedent, *tokens[index + 1 :]])
    return clause


def inquiry_line(sentences: list[str]) -> str:
    """The one-line English inquiry summary of the caller's `sentences`."""
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        return ""
    asks: list[Ask] = []
    complaints: list[str] = []
    antecedent: list[str] = []
    for sentence in sentences:
        found = [a for a in read_asks(sentence) if a.clause]
        if not asks and not found:
            antecedent = _last_noun_phrase(sentence)
        complaint = bool(_COMPLAINT.search(sentence))
        sarcastic = bool(_SARCASM.search(sentence))
        if found and not (sarcastic and all(a.kind == "question" for a in found)):
            for ask in found:
                if complaint and ask.kind == "question":
                    ask.kind = "complaint"
            asks.extend(found)
        elif complaint or sarcastic:
            complaints.append(sentence)
    asks = asks[:2]
    if asks and not _content_words(asks[0].clause) and antecedent:
        asks[0].clause = _resolve(asks[0].clause, antecedent)
    parts: list[str] = []
    if complaints:
        # The complaint that names the matter ("I filed my claim a month ago and still haven't been
        # paid") over one about the call ("This is the third time I'm calling").
        matter = max(complaints, key=lambda sentence: _content_words(_clean(sentence)))
        statement = _statement(matter, short=bool(asks))
        if statement:
            parts.append(f"complains {statement}")
        asks = [a for a in asks if a.kind != "complaint"]
    elif not asks:
        statement = _statement(sentences[-1])
        if statement.startswith("about "):
            statement = "that " + statement.removeprefix("about ")
        return f"Customer says {statement}" if statement else ""
    if parts and len(parts[0].split()) > 8:
        asks = [a for a in asks if a.kind == "request"][:1]
    previous_verb = ""
    for index, ask in enumerate(asks):
        # The first ask always comes (after a complaint too: it is what the caller wants done).
        if index and len(" ".join(parts).split()) + len(ask.clause.split()) > MAX_LINE_WORDS:
            break
        verb = ask.verb
        if ask.kind == "complaint" and not parts:
            verb = "complains, asking"
        if verb == previous_verb and ask.kind == "question":
            parts.append(ask.clause)
        else:
            parts.append(f"{verb} {ask.clause}")
        previous_verb = ask.verb
    return "Customer " + " and ".join(parts)
