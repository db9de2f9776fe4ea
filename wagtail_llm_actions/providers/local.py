"""An offline, deterministic provider for demos, tests and sites without an API key.

``local/extractive``
    The two or three most representative sentences of the last user message.
``local/keywords``
    Five to eight comma-separated keywords of the last user message.

Both keep their answer within ``CompletionRequest.max_chars`` (the target field's
``max_length``, filled in by the service) when it is set.
``local/echo``
    The last user message, verbatim.
``local/translate``
    A deterministic stand-in for a translating model (see :mod:`.local_translate`): the
    segments of a translation request, each marked with the target language and a few
    common words translated, markup placeholders kept.
``local/vision``
    The image in the last user message, described from its dimensions, dominant colours
    and a file name in the prompt (:mod:`.local_vision`): alt text offline.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from decimal import Decimal

from django.utils.translation import gettext

from .base import (
    BadResponseError,
    BaseProvider,
    CompletionRequest,
    CompletionResult,
    ConfigurationError,
)

LOCAL_MODELS = (
    "local/extractive",
    "local/keywords",
    "local/echo",
    "local/translate",
    "local/vision",
)

#: The window the offline models claim, so that map-reduce actions chunk with them too.
LOCAL_CONTEXT_WINDOW = 8192

#: Characters per token used to apply ``max_tokens``.
CHARS_PER_TOKEN = 4

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't
    do does doesn't doing don't down during each either else even ever every few for from
    further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
    herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's
    its itself just let's like made make many may me might more most much must mustn't my
    myself neither no nor not now of off often on once one only or other ought our ours
    ourselves out over own per quite rather really same say says said shan't she she'd she'll
    she's should shouldn't since so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those though
    through thus to too two under until up upon us use used using very via was wasn't we we'd
    we'll we're we've well were weren't what what's when when's where where's whether which
    while who who's whom whose why why's will with within without won't would wouldn't yet
    you you'd you'll you're you've your yours yourself yourselves
    """.split()
)

_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]", re.UNICODE)
# A candidate sentence end: closing punctuation, maybe closing quotes/brackets, then space.
# A citation marker right after the punctuation belongs to the sentence it ends ("1970.[1]").
_BOUNDARY_RE = re.compile(r"(?:[.!?]+|…)(?:\[[^\]\n]{0,40}\])*[\"'”’)\]]*(?=\s)")
# Words that end with a period without ending a sentence ("Dr. Chen", "e.g. salt").
ABBREVIATIONS = frozenset(
    """
    mr mrs ms mme mlle dr prof st mt jr sr no nos vs etc e.g i.e eg ie cf ca approx fig figs
    vol p pp ed eds inc ltd co corp dept est min max tbsp tsp oz lb lbs gr
    """.split()
)
# A first paragraph that gives the model instructions is not content to summarise.
_INSTRUCTION_RE = re.compile(
    r"^\s*(summari[sz]e|suggest|write|describe|generate|list|give|create|extract|translate)\b",
    re.IGNORECASE,
)


def message_text(message: dict) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def content_of(prompt: str) -> str:
    """The prompt without a leading instruction paragraph ("Summarize the following…")."""
    paragraphs = re.split(r"\n\s*\n", prompt.strip(), maxsplit=1)
    if len(paragraphs) == 2 and _INSTRUCTION_RE.match(paragraphs[0]):
        return paragraphs[1]
    return prompt


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def approx_tokens(text: str) -> int:
    """A rough token count: one per word."""
    return len(words(text))


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the punctuation ``text[start:end]`` (followed by whitespace) ends a sentence."""
    following = text[end:].lstrip(" \t")
    if not following or following[0] == "\n":
        return True
    head = text[:start]
    if head.rfind("[") > head.rfind("]"):
        return False  # inside a marker: "[which?]", "[citation needed]"
    if head.rfind("(") > head.rfind(")") and ")" not in text[start:end]:
        return False  # inside parentheses: "(approx. 3 kg)"
    nxt = following[0]
    if nxt.islower() or nxt.isdigit() or nxt in ",;:)]":
        return False  # "e.g. salt", "approx. 5 kg", "Wait… then"
    punct = re.sub(r"\[[^\]]*\]", "", text[start:end]).rstrip("\"'”’)]")
    if punct == ".":
        word = re.search(r"([\w.]+)$", head)
        token = word.group(1).lower() if word else ""
        if token in ABBREVIATIONS or (len(token) == 1 and head[-1:].isupper()):
            return False  # "Dr. Chen", "chef M. Dupont"
    return True


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; lines are separate. Abbreviations ("Dr.", "e.g."), initials
    ("M. Dupont"), decimals, ellipses before lower case and bracketed "[which?]" do not end one.
    """
    sentences: list[str] = []
    for line in text.split("\n"):
        start = 0
        for match in _BOUNDARY_RE.finditer(line):
            if _ends_sentence(line, match.start(), match.end()):
                sentences.append(line[start : match.end()])
                start = match.end()
        sentences.append(line[start:])
    parts = (re.sub(r"\s+", " ", part).strip() for part in sentences)
    return [part for part in parts if part and words(part)]


def _content_words(text: str) -> list[str]:
    return [
        w.lower()
        for w in words(text)
        if len(w) > 2 and w.lower().replace("’", "'") not in STOPWORDS
    ]


def _shorten(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars``, ending with an ellipsis."""
    if len(text) <= max_chars:
        return text
    head = text[: max(max_chars - 1, 0)]
    space = head.rfind(" ")
    if space > max_chars // 2:
        head = head[:space]
    return head.rstrip(" ,;:-–—") + "…" if head.strip() else text[:max_chars]


def _fit_sentences(sentences: list[str], ranked: list[int], count: int, max_chars: int) -> str:
    """The best ``count`` sentences that fit ``max_chars`` together, in text order; at least
    the best one, shortened if it is too long alone."""
    chosen: list[int] = []
    for index in ranked:
        if len(chosen) == count:
            break
        candidate = sorted([*chosen, index])
        if len(" ".join(sentences[i] for i in candidate)) <= max_chars:
            chosen = candidate
    if not chosen:
        return _shorten(sentences[ranked[0]], max_chars)
    return " ".join(sentences[i] for i in chosen)


def extractive_summary(text: str, max_chars: int | None = None) -> str:
    """The 2–3 highest-scoring sentences (by word frequency), in their original order.

    With ``max_chars``, only sentences that fit together are kept (the best one is shortened
    if even it is too long)."""
    sentences = split_sentences(text)
    # Prefer real sentences (ending in punctuation, several words) over headings and list items.
    prose = [s for s in sentences if s[-1] in ".!?…" and len(words(s)) >= 5]
    if len(prose) >= 2:
        sentences = prose
    limit = max_chars if max_chars and max_chars > 0 else None
    if not sentences:
        return ""
    if len(sentences) <= 2 and (limit is None or len(" ".join(sentences)) <= limit):
        return " ".join(sentences)
    frequencies = Counter(_content_words(text))
    if not frequencies:
        if limit is None:
            return " ".join(sentences[:2])
        return _fit_sentences(sentences, list(range(len(sentences))), 2, limit)
    top = max(frequencies.values())

    def score(index: int) -> tuple[float, int]:
        terms = _content_words(sentences[index])
        if not terms:
            return (0.0, index)
        value = sum(frequencies[t] / top for t in terms) / (len(terms) ** 0.5 + 1)
        return (-value, index)

    count = 3 if len(sentences) >= 8 else 2
    ranked = sorted(range(len(sentences)), key=score)
    if limit is not None:
        return _fit_sentences(sentences, ranked, count, limit)
    return " ".join(sentences[i] for i in sorted(ranked[:count]))


def keywords(text: str, minimum: int = 5, maximum: int = 8) -> list[str]:
    """The most frequent non-stopword terms; ties keep the order of first appearance."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    forms: dict[str, Counter[str]] = {}
    for position, word in enumerate(words(text)):
        key = word.lower()
        if len(key) <= 2 or key.replace("’", "'") in STOPWORDS:
            continue
        counts[key] += 1
        first_seen.setdefault(key, position)
        forms.setdefault(key, Counter())[word] += 1
    ranked = sorted(counts, key=lambda k: (-counts[k], first_seen[k]))
    repeated = sum(1 for k in ranked if counts[k] > 1)
    size = min(max(repeated, minimum), maximum)
    return [_surface_form(forms[k]) for k in ranked[:size]]


def _surface_form(counter: Counter[str]) -> str:
    # The most common spelling; among equals, lower case (a word capitalised only at the
    # start of sentences is not a proper noun).
    best = max(counter.values())
    candidates = sorted(w for w, n in counter.items() if n == best)
    lower = [w for w in candidates if w == w.lower()]
    return (lower or candidates)[0]


def truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut ``text`` to about ``max_tokens`` tokens (at a word boundary when possible)."""
    if not max_tokens:
        return text, False
    limit = max_tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:"), True


class LocalProvider(BaseProvider):
    """Offline models: no key, no network, the same answer for the same input."""

    remote = False

    def complete(self, request: CompletionRequest) -> CompletionResult:
        start = time.perf_counter()
        name = request.model.strip()
        if name not in LOCAL_MODELS:
            raise ConfigurationError(
                gettext("Unknown local model %(model)s. Use one of: %(models)s.")
                % {"model": name, "models": ", ".join(LOCAL_MODELS)},
                model=name,
            )
        source = last_user_text(request.messages)
        # The summarising models plan their answer within max_tokens too, as a model asked
        # for a short answer does; echo repeats its input, so max_tokens cuts it ("length").
        limits = [request.max_chars, (request.max_tokens or 0) * CHARS_PER_TOKEN]
        max_chars = min((limit for limit in limits if limit), default=None)
        if name == "local/echo":
            text = source
        elif name == "local/translate":
            from .local_translate import translate_request

            text = translate_request(source)
        elif name == "local/vision":
            from .local_vision import describe

            text = describe(request.messages, source)
            text = _shorten(text, max_chars) if max_chars else text
        elif name == "local/keywords":
            terms = keywords(content_of(source))
            if max_chars:
                while len(terms) > 1 and len(", ".join(terms)) > max_chars:
                    terms = terms[:-1]
            text = ", ".join(terms)
            if max_chars:
                text = _shorten(text, max_chars)
        else:
            text = extractive_summary(content_of(source), max_chars)
        if not text.strip():
            raise BadResponseError(
                gettext("The local model found no text to work on in the prompt."),
                model=name,
            )
        text, cut = truncate(text, request.max_tokens)
        prompt_tokens = sum(
            approx_tokens(message_text(m)) for m in request.messages if isinstance(m, dict)
        )
        completion_tokens = approx_tokens(text)
        return CompletionResult(
            text=text,
            model=name,
            finish_reason="length" if cut else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            cost=Decimal("0"),
            latency_ms=int((time.perf_counter() - start) * 1000),
            response_model=name,
        )

    def context_window(self, model: str) -> int | None:
        return LOCAL_CONTEXT_WINDOW

    def count_tokens(self, model: str, messages: list[dict]) -> int | None:
        return sum(approx_tokens(message_text(m)) for m in messages if isinstance(m, dict))

    def estimate_cost(
        self, model: str, prompt_tokens: int, completion_tokens: int
    ) -> Decimal | None:
        return Decimal("0")
