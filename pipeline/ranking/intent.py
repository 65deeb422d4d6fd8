"""What the prompt asks for, in the same vocabulary as operation kinds, plus explicit destructive intent.

Explicit means a destructive verb that names *this* operation's action ("cancel the subscription" for
`.../cancel`, "delete the webhook" for `DELETE /webhooks/{id}`). "Clean up my invoices list" is not
explicit: it must never put a DELETE first.
"""

from __future__ import annotations

import re

from pipeline.ranking.profile import Kind, OpProfile
from pipeline.ranking.text import head, singular, stem
from pipeline.spec.catalogue import DESTRUCTIVE_WORDS, words

_VERBS: dict[Kind, frozenset[str]] = {
    Kind.CREATE: frozenset("create add new make register open post submit generate start issue invite upload write "
                           "file attach comment".split()),
    Kind.UPDATE: frozenset("update change edit modify set rename patch replace upgrade adjust move assign enable "
                           "close reopen mark resize".split()),
    Kind.DELETE: frozenset("delete remove destroy erase drop purge wipe".split()),
    Kind.LIST: frozenset("list all browse every enumerate page recent latest popular top".split()),
    Kind.SEARCH: frozenset("search find lookup look query filter".split()),
    Kind.GET: frozenset("get fetch retrieve show view read detail details what who which check see inspect".split()),
}
_STEMMED = {kind: frozenset(stem(w) for w in verbs) for kind, verbs in _VERBS.items()}
_DESTRUCTIVE_STEMS = frozenset(stem(w) for w in DESTRUCTIVE_WORDS | _VERBS[Kind.DELETE])
_ENDING = frozenset(stem(w) for w in ("cancel", "revoke", "terminate", "destroy", "unsubscribe"))
# Nouns of destructive verbs that also signal the action: "cancellation", "deletion", "removal".
_DESTRUCTIVE_NOUNS = {"cancellation": "cancel", "deletion": "delete", "removal": "remove", "revocation": "revoke",
                      "termination": "terminate"}


def prompt_intents(prompt_tokens: frozenset[str]) -> frozenset[Kind]:
    return frozenset(kind for kind, verbs in _STEMMED.items() if prompt_tokens & verbs)


def destructive_words(prompt_tokens: frozenset[str]) -> frozenset[str]:
    found = {t for t in prompt_tokens if t in _DESTRUCTIVE_STEMS}
    found |= {stem(_DESTRUCTIVE_NOUNS[t]) for t in prompt_tokens if t in _DESTRUCTIVE_NOUNS}
    return frozenset(found)


_POSSESSOR = re.compile(r"\b\w+['’]s\b")


def named_things(prompt: str) -> frozenset[str]:
    """Head nouns of the prompt's words, without its possessors: "cancel this customer's subscription" is about
    the subscription; the customer only owns it."""
    return frozenset(head(w) for w in words(_POSSESSOR.sub(" ", prompt)))


def asks_for(prompt_destructive: frozenset[str], op: OpProfile, method: str, named: frozenset[str]) -> bool:
    """Does the prompt explicitly ask for this destructive operation's action? `named`: the things of this API
    (`SpecProfile.nouns`) the prompt names."""
    if not prompt_destructive:
        return False
    if prompt_destructive & op.action:
        return True
    # A DELETE is asked for by any verb that ends a thing (Stripe cancels a subscription with DELETE): a thing its
    # path is about, when the prompt names any ("cancel it" names none).
    generic_delete = prompt_destructive & (_STEMMED[Kind.DELETE] | _ENDING)
    return method == "DELETE" and bool(generic_delete) and (not named or bool(named & op.nouns))


_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,80})[\"“”«»]")
_WORD = re.compile(r"[\w'’.-]+")
_SENTENCE_END = (".", "?", "!", ":")


def named_mentions(prompt: str) -> list[str]:
    """Proper names and quoted titles in a prompt: "Sofia Coppola", "The Dark Knight", "ACME-42".

    A run of capitalised words is a name, except a lone capitalised word that starts a sentence ("Who",
    "Give") and short all-caps acronyms ("TV", "API"). Users who name a thing usually have to look it up first.
    """
    found = [m.strip() for m in _QUOTED.findall(prompt)]
    text = _QUOTED.sub(" ", prompt)
    matches = list(_WORD.finditer(text))
    tokens_ = [m.group() for m in matches]
    capital = [t[0].isupper() and not (t.isupper() and len(t) <= 3) for t in tokens_]
    run: list[str] = []
    for i, token in enumerate(tokens_):
        # The previous token and what stands between them: "?", "!" and ":" are never part of a token.
        sentence_start = i == 0 or text[matches[i - 1].start() : matches[i].start()].rstrip().endswith(_SENTENCE_END)
        lone_opener = sentence_start and not (i + 1 < len(tokens_) and capital[i + 1])
        if capital[i] and not (lone_opener and not run):
            run.append(token)
            continue
        if run:
            found.append(" ".join(run))
        run = []
    if run:
        found.append(" ".join(run))
    return found


_ARTICLES = frozenset({"the", "a", "an", "this", "that", "my", "our", "its"})


def name_types(prompt: str) -> frozenset[str]:
    """Entity nouns written next to a named mention: "the collection Harry Potter" -> collection, "Star Wars
    collection" -> collection, "the movie 'Twilight'" -> movie. A name after "by" or with a possessive
    ("directed by Sofia Coppola", "Clint Eastwood's film") is an agent: person."""
    found: set[str] = set()
    lowered = prompt
    for name in named_mentions(prompt):
        at = lowered.find(name)
        if at < 0:
            continue
        before = [w.lower() for w in _WORD.findall(lowered[:at])]
        while before and before[-1] in _ARTICLES:
            before.pop()
        after = [w.lower() for w in _WORD.findall(lowered[at + len(name) :])][:1]
        if before and before[-1] == "by" or name.endswith(("'s", "’s")):
            found.add("person")
        found.update(singular(w) for w in [*before[-1:], *after] if w.isalpha() and len(w) > 2)
    return frozenset(found)
