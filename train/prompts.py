"""Prompts written from an operation's meaning, in varied phrasings, as users and agents write them.

Built from the operation's summary, operationId or path words (never copied verbatim every time: verbs are
swapped for synonyms, words dropped, names and ids mixed in), so the ranker cannot learn that the prompt is
always the summary.
"""

from __future__ import annotations

import random
import re

from pipeline.ranking.profile import Kind, OpProfile, is_version_segment, property_names
from pipeline.ranking.text import GENERIC_NAMES, STOP_WORDS, head, singular
from pipeline.spec.catalogue import Operation, words

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
# Names a prompt gives for the thing to look up. None of them occurs in the TMDB dev cases; people have their
# own list, so a person search is asked with a person's name.
PERSON_NAMES = ["John Smith", "Maria Garcia", "Jane Doe", "Priya Patel", "Lars Olsen", "Amara Okafor", "Chen Wei"]
THING_NAMES = ["Acme Corp", "the Berlin office", "Project Apollo", "ACME-42", "order 1001", "the March report",
               "Globex", "Blue Horizon", "Northwind", "Silver Lake"]
_LEADING_VERBS = {"get", "list", "retrieve", "create", "update", "delete", "fetch", "returns", "return", "search",
                  "find", "add", "remove", "gets", "lists", "creates", "updates", "deletes", "retrieves", "show"}


def _literals(op: Operation) -> list[str]:
    """The path's literal segments, versions left out: `/v1/invoices/{id}/void` -> invoices, void."""
    return [s for s in op.path.split("/") if s and "{" not in s and not is_version_segment(s)]


def object_phrase(op: Operation, rng: random.Random) -> str:
    """The object of the action: from the summary without its verb, or from operationId/path words."""
    summary_words = op.summary.rstrip(".").split()
    if summary_words and rng.random() < 0.6:
        rest = summary_words[1:] if summary_words[0].lower() in _LEADING_VERBS else summary_words
        if rest:
            return " ".join(rest).lower()
    literals = _literals(op)
    nouns = [w for s in literals[-2:] for w in words(s)]
    if op.path.rstrip("/").endswith("}") and nouns:
        nouns[-1] = singular(nouns[-1])
    return " ".join(nouns) or (" ".join(words(op.operation_id or "")) or op.path)


_ASK_FIELD = ["what is the", "what's the", "give me the", "tell me the", "show me the", "when is the", "find the"]
# Trailing words that make a field a reference rather than the thing a user asks for: `logo_path` -> logo.
_REFERENCE_WORDS = {"path", "url", "uri", "href", "id", "ids", "link", "links"}


def asked_fields(op: Operation, limit: int = 20) -> list[str]:
    """Response fields a user could ask for, as words: `place_of_birth` -> "place of birth", `logo_path` ->
    "logo". Skips ids and generic names (the first `limit` properties are the top level's)."""
    found = []
    for field in property_names(op)[:limit]:
        parts = words(field)
        while parts and parts[-1] in _REFERENCE_WORDS:
            parts.pop()
        if field.lower() in GENERIC_NAMES or not [w for w in parts if w not in STOP_WORDS]:
            continue
        found.append(" ".join(parts))
    return found


def asking_for_field(op: Operation, profile: OpProfile, rng: random.Random, implicit: frozenset[str]) -> str | None:
    """A question for one piece of `op`'s answer, about the entity it takes: "when is the birthday of the
    person", "what's the headquarters of the company"; the entity is left out when the name given implies it."""
    fields = asked_fields(op)
    if not fields or not profile.required_entities:
        return None
    entity = profile.required_entities[-1]
    fields = [f for f in fields if f != entity.replace("_", " ")] or fields
    about = "" if entity in implicit else f" of the {entity.replace('_', ' ')}"
    return f"{rng.choice(_ASK_FIELD)} {rng.choice(fields)}{about}"


def phrase(op: Operation, profile: OpProfile, rng: random.Random, implicit: frozenset[str] = frozenset()) -> str:
    """One natural-language request for `op`.

    `implicit` are entity nouns the user leaves out because the name they give implies them: someone asking for
    "movies directed by Sofia Coppola" never says "person", though the call is `/person/{id}/movie_credits`."""
    # Questions often ask for a piece of the answer ("when is the birthday of ...") instead of naming the call.
    asks_field = profile.kind in (Kind.GET, Kind.LIST) and rng.random() < 0.35
    if asks_field and (asked := asking_for_field(op, profile, rng, implicit)):
        return rng.choice(_LEADS) + asked
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


_REFS = ["this {e}", "the {e}", "it", "this one", "that {e}"]
# Verbs users write for an action whose path word is a noun or a compound: `/comments` -> "comment on",
# `/poweron` -> "power on". Keys are the action's words, values what a user may say instead.
_ACTION_SAYINGS = {"send": ["email", "send", "mail"], "pay": ["pay", "get paid", "settle"],
                   "poweron": ["power on", "start", "turn on"], "poweroff": ["power off", "turn off"],
                   "rerun": ["rerun", "re-run", "run again", "retry"], "merge": ["merge"], "void": ["void", "cancel"],
                   "finalize": ["finalize", "finalise"], "capture": ["capture", "collect"]}


def reference(entity: str, rng: random.Random, value: str | None = None) -> str:
    """How a request points at the thing it acts on: "this invoice", "it", or by its id ("invoice in_3kf9",
    "order #4821") when the user quotes it."""
    noun = entity.replace("_", " ")
    if value is not None:
        return rng.choice([f"{noun} {value}", f"{noun} #{value}" if value.isdigit() else f"{noun} {value}",
                           f"the {noun} {value}", f"{value}"])
    return rng.choice(_REFS).format(e=noun)


def references(entity: str, values: list[str], rng: random.Random) -> str:
    """How a request names several things of one kind: "invoices in_1, in_2 and in_3", "orders #9001 and #9002"."""
    noun = entity.replace("_", " ")
    listed = ", ".join(values[:-1]) + f" and {values[-1]}"
    return rng.choice([f"{noun}s {listed}", f"the {noun}s {listed}", f"each of the {noun}s {listed}",
                       f"{noun} {listed}"])


def act_phrase(op: Operation, profile: OpProfile, rng: random.Random, ref: str) -> str:
    """A request for `op` about one thing (`ref`): "comment on this issue", "reboot server 4711", "email the
    invoice to the customer", "cancel it" — the action asked for, rarely in the summary's words."""
    literals = _literals(op)
    last = " ".join(words(literals[-1])) if literals else "item"
    if profile.kind == Kind.ACTION:
        verb = rng.choice(_ACTION_SAYINGS.get(last.replace(" ", ""), [last]))
        core = f"{verb} {ref}"
    elif profile.kind == Kind.CREATE and profile.required:
        noun = singular(last.split()[-1])
        core = rng.choice([f"add a {noun} to {ref}", f"{noun} on {ref}", f"create a {noun} for {ref}",
                           f"post a {noun} on {ref}", f"new {noun} for {ref}"])
    elif profile.kind == Kind.UPDATE:
        field = rng.choice(asked_fields(op) or [""])
        core = f"{rng.choice(_VERB_SYNONYMS[Kind.UPDATE])} the {field} of {ref}" if field else \
            f"{rng.choice(_VERB_SYNONYMS[Kind.UPDATE])} {ref}"
    elif profile.kind == Kind.DELETE:
        core = f"{rng.choice(_VERB_SYNONYMS[Kind.DELETE])} {ref}"
    else:
        core = f"{phrase(op, profile, rng)} {rng.choice(['of', 'for', 'on'])} {ref}"
    if rng.random() < 0.25:
        core = f"{core} {rng.choice(_REASONS)}"
    return (rng.choice(_LEADS) + core).strip()


_PAST = {"pay": "paid", "send": "sent", "set": "set", "put": "put", "make": "made", "write": "written", "undo": "undone"}
_DONE = {Kind.DELETE: ["deleted", "removed"], Kind.UPDATE: ["changed", "updated", "edited"]}


def past(verb: str) -> str:
    """The form a question about what was done uses: voided, cancelled, paid, applied."""
    if verb in _PAST:
        return _PAST[verb]
    if verb.endswith("e"):
        return f"{verb}d"
    if len(verb) > 2 and verb.endswith("y") and verb[-2] not in "aeiou":
        return f"{verb[:-1]}ied"
    return f"{verb}ed"


def question_about(op: Operation, profile: OpProfile, rng: random.Random, ref: str) -> str:
    """A question about what was done to a thing (`ref`): "was this invoice voided?", "who moved it", "did
    invoice in_3kf9 get paid" — the act's verb in a past form, asking for a read, not the act."""
    literals = _literals(op)
    action = words(literals[-1]) if literals else []
    if profile.kind == Kind.ACTION and action:
        done = " ".join([past(action[0]), *action[1:]])
    else:
        done = rng.choice(_DONE.get(profile.kind, ["changed"]))
    return rng.choice([f"was {ref} {done}?", f"has {ref} been {done}", f"who {done} {ref}", f"when was {ref} {done}?",
                       f"did {ref} get {done}", f"why was {ref} {done}", f"was {ref} {done} already"])


_REASONS = ["please", "now", "asap", "the customer asked", "it is stuck", "before the release", "as discussed",
            "we are done with it", "for the audit", "today"]


def summary_request(op: Operation, rng: random.Random) -> str | None:
    """The spec's own words as a request, lightly rephrased: the summary or the description's first sentence
    with its verb swapped ("Retrieves a list of invoices" -> "can you get a list of invoices")."""
    text = op.summary or _TAG.sub("", op.description or "").split(". ")[0].split("\n")[0]
    parts = text.strip().rstrip(".").split()
    if len(parts) < 2:
        return None
    if parts[0].lower() in _LEADING_VERBS or parts[0].lower().endswith("s") and parts[0].lower()[:-1] in _LEADING_VERBS:
        parts = parts[1:]
        parts.insert(0, rng.choice(["get", "give me", "I want", "find", "show", "I need"]))
    return (rng.choice(_LEADS) + " ".join(parts)[:140]).strip().lower()


def multi_intent(first: str, then: str, rng: random.Random) -> str:
    """Two requests in one prompt; the first is what comes next."""
    return f"{first}{rng.choice([' and then ', ', then ', '. After that ', ' and afterwards '])}{then}"


_OPENERS = ["quick question: ", "for a report, ", "I'm curious, ", "my manager asks: ", "", "hey, "]
_DISTRACTORS = ["and later maybe the {}", "before I look at the {}", "then compare with the {}", "not the {}"]


def with_context(prompt: str, other: Operation, rng: random.Random) -> str:
    """Wrap a goal prompt the way real questions come: an opener, and a clause about something else."""
    text = rng.choice(_OPENERS) + prompt
    if rng.random() < 0.5:
        text = f"{text}, {rng.choice(_DISTRACTORS).format(object_phrase(other, rng))}"
    return text
