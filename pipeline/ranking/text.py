"""Light text normalisation shared by profiles, intents and features: stems, entities, stop words.

Deliberately crude (suffix stripping, not a lemmatiser): it only has to make `invoices`, `invoice` and
`invoice_id` meet, cheaply, on any spec.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import pairwise

from pipeline.spec.catalogue import words

STOP_WORDS = frozenset(
    "a an the of for to in on at by with and or from into about as is are be been was were it its this that "
    "these those my our your their me us i we you he she they them please can could would should will do does "
    "did how what which who whom whose when where why all any some each every one more most other such only "
    "own same so than too very just also then there here get gets given using via v1 v2 v3 api id ids".split()
)
# Suffix words that turn an entity into its identifier: `movie_id`, `issue_number`, `petId`, `repo_name`.
_ID_WORDS = frozenset({"id", "ids", "number", "key", "uuid", "slug", "code", "name", "sid", "guid", "token"})
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def singular(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


# Irregular past forms users write ("get this invoice paid") mapped to the verb an API path uses (/pay).
_IRREGULAR = {"paid": "pay", "sent": "send", "made": "make", "built": "build", "bought": "buy", "sold": "sell",
              "gave": "give", "given": "give", "took": "take", "taken": "take", "wrote": "write", "written": "write",
              "shown": "show", "ran": "run", "began": "begin", "begun": "begin", "chose": "choose", "chosen": "choose",
              "froze": "freeze", "frozen": "freeze", "found": "find", "held": "hold", "kept": "keep", "told": "tell",
              "spent": "spend", "lost": "lose", "left": "leave", "won": "win", "undone": "undo", "split": "split"}


def is_past_form(word: str) -> bool:
    """"voided", "cancelled", "paid": a verb's past form (by the stemmer's own rules), not "need" or "feed"."""
    w = word.lower()
    return w in _IRREGULAR or (len(w) > 4 and w.endswith("ed") and not w.endswith("eed"))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    if word.lower() in _IRREGULAR:
        return _IRREGULAR[word.lower()]
    w = singular(word)
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 4 and w.endswith("ed") and not w.endswith("eed"):
        return w[:-3] + "y" if w.endswith("ied") else w[:-2]
    return w


_COLLECTIVE = frozenset({"people", "children", "data", "media", "series", "news", "staff", "feedback"})
# Parameter and field names that say nothing about *which* entity: `/credit_notes/{id}` is a credit note.
GENERIC_NAMES = frozenset({"id", "ids", "uuid", "guid", "key", "name", "slug", "code", "number", "identifier", "sid",
                           "type", "status", "created", "updated", "object", "url", "value", "data", "items",
                           "results", "page", "count", "total"})


def is_plural(word: str) -> bool:
    return word.lower() in _COLLECTIVE or singular(word) != word.lower()


@lru_cache(maxsize=65536)
def entity(name: str) -> str:
    """`invoices`, `invoice`, `invoice_id`, `invoiceId` -> `invoice`; `payment_intents` -> `payment_intent`."""
    parts = words(name)
    while len(parts) > 1 and parts[-1] in _ID_WORDS:
        parts = parts[:-1]
    if not parts:
        return name.lower()
    return "_".join([*parts[:-1], singular(parts[-1])])


def token_sequence(text: str) -> list[str]:
    """Stemmed content words of a text in their order (`tokens` as a sequence)."""
    return [stem(w) for raw in _TOKEN.findall(text) for w in words(raw) if len(w) > 1 and w not in STOP_WORDS]


def tokens(text: str) -> frozenset[str]:
    """Stemmed content words of prose or identifiers."""
    return frozenset(token_sequence(text))


# Role words that all point at people: a credit's `cast`, an issue's `assignee`, a repo's `owner`.
_PERSON_ROLES = frozenset(
    "person people user member owner author creator cast crew actor director assignee reviewer collaborator "
    "employee staff contact follower maintainer".split()
)


_ROLE_STEMS = frozenset(stem(w) for w in _PERSON_ROLES)


def with_roles(stems: frozenset[str]) -> frozenset[str]:
    """Add "person" to stemmed words that name a role: a prompt's "lead actor" then meets a response's `cast`
    and a path's /person, as `head` makes entity names meet."""
    return stems | {"person"} if stems & _ROLE_STEMS else stems


# Words users say for an API's verb: "email the invoice" is `/send`, "restart" is `/reboot`.
_SAYINGS = {"email": "send", "mail": "send", "resend": "send", "restart": "reboot", "reimburse": "refund",
            "settle": "pay", "abort": "cancel", "stop": "cancel", "remove": "delete", "delete": "remove",
            "erase": "delete", "retry": "rerun", "approve": "review", "reply": "comment", "unassign": "remove"}


def request_words(text: str) -> frozenset[str]:
    """Stemmed content words of a request, with role words, adjacent pairs joined ("power on" -> `poweron`,
    "re run" -> `rerun`, "check out" -> `checkout`) and the API verb for a user's word ("email" -> send)."""
    found = with_roles(tokens(text))
    raw = [w.lower() for w in _TOKEN.findall(text)]
    joined = {stem(a + b) for a, b in pairwise(raw) if len(a) > 1 and len(b) > 1}
    said = {stem(_SAYINGS[w]) for w in raw if w in _SAYINGS}
    return found | joined | said


@lru_cache(maxsize=65536)
def head(name: str) -> str:
    """The entity's head noun, canonical: `payment_intent` and `{intent}` meet; `cast`, `owner` -> `person`."""
    word = entity(name).rsplit("_", 1)[-1]
    return "person" if word in _PERSON_ROLES else word
