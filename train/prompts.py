"""Prompts written from an operation's meaning, in varied phrasings, as users and agents write them.

Built from the operation's summary, operationId or path words (never copied verbatim every time: verbs are
swapped for synonyms, words dropped, names and ids mixed in), so the ranker cannot learn that the prompt is
always the summary.
"""

from __future__ import annotations

import random
import re

from pipeline.catalogue import Operation, words
from pipeline.profile import Kind, OpProfile, is_version_segment
from pipeline.text import head, singular

_TAG = re.compile(r"<[^>]+>")
_VERB_SYNONYMS: dict[Kind, list[str]] = {
    Kind.LIST: ["list", "show all", "give me all", "browse", "show me the", "what are the"],
    Kind.GET: ["get", "fetch", "show me", "look up", "retrieve", "what is", "give me the details of", "find"],
    Kind.CREATE: ["create", "add", "make a new", "set up", "register", "open a new"],
    Kind.UPDATE: ["update", "change", "modify", "edit", "set"],
    Kind.DELETE: ["delete", "remove", "get rid of", "destroy"],
    Kind.SEARCH: ["search for", "find", "look for", "search"],
    Kind.ACTION: ["", "please", "go ahead and", "I need to"],
    Kind.OTHER: ["check", "get"],
}
_LEADS = ["", "", "", "I want to ", "can you ", "please ", "help me ", "how do I ", "I'd like to ", "next, "]
NAMES = ["Acme Corp", "John Smith", "Titanic", "Sofia Coppola", "the Berlin office", "Project Apollo", "Maria Garcia",
          "the blue team", "Star Wars", "ACME-42", "order 1001", "the March report", "Globex", "Jane Doe"]
_LEADING_VERBS = {"get", "list", "retrieve", "create", "update", "delete", "fetch", "returns", "return", "search",
                  "find", "add", "remove", "gets", "lists", "creates", "updates", "deletes", "retrieves", "show"}


def object_phrase(op: Operation, rng: random.Random) -> str:
    """The object of the action: from the summary without its verb, or from operationId/path words."""
    summary_words = op.summary.rstrip(".").split()
    if summary_words and rng.random() < 0.6:
        rest = summary_words[1:] if summary_words[0].lower() in _LEADING_VERBS else summary_words
        if rest:
            return " ".join(rest).lower()
    literals = [s for s in op.path.split("/") if s and "{" not in s and not is_version_segment(s)]
    nouns = [w for s in literals[-2:] for w in words(s)]
    if op.path.rstrip("/").endswith("}") and nouns:
        nouns[-1] = singular(nouns[-1])
    return " ".join(nouns) or (" ".join(words(op.operation_id or "")) or op.path)


def phrase(op: Operation, profile: OpProfile, rng: random.Random, implicit: frozenset[str] = frozenset()) -> str:
    """One natural-language request for `op`.

    `implicit` are entity nouns the user leaves out because the name they give implies them: someone asking for
    "movies directed by Sofia Coppola" never says "person", though the call is `/person/{id}/movie_credits`."""
    if profile.kind == Kind.ACTION:
        action = " ".join(w for s in op.path.split("/")[-1:] for w in words(s))
        obj = " ".join(words(op.path.split("/")[-3])) if op.path.count("/") >= 3 else ""
        core = f"{rng.choice(_VERB_SYNONYMS[Kind.ACTION])} {action} the {singular(obj) if obj else 'item'}".strip()
    elif op.description and rng.random() < 0.15:
        core = _TAG.sub("", op.description).split(". ")[0].split("\n")[0][:120].rstrip(".").lower()
    else:
        core = f"{rng.choice(_VERB_SYNONYMS[profile.kind])} {object_phrase(op, rng)}"
    tokens = [t for t in core.split() if head(t) not in implicit] if implicit else core.split()
    if len(tokens) > 4 and rng.random() < 0.3:
        del tokens[rng.randrange(1, len(tokens))]  # users drop words
    text = rng.choice(_LEADS) + " ".join(tokens)
    if rng.random() < 0.2:
        text += rng.choice(["?", " please", " asap", " now"])
    return text.strip()


_OPENERS = ["quick question: ", "for a report, ", "I'm curious, ", "my manager asks: ", "", "hey, "]
_DISTRACTORS = ["and later maybe the {}", "before I look at the {}", "then compare with the {}", "not the {}"]


def with_context(prompt: str, other: Operation, rng: random.Random) -> str:
    """Wrap a goal prompt the way real questions come: an opener, and a clause about something else."""
    text = rng.choice(_OPENERS) + prompt
    if rng.random() < 0.5:
        text = f"{text}, {rng.choice(_DISTRACTORS).format(object_phrase(other, rng))}"
    return text
