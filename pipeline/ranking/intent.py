"""What the prompt asks for, in the same vocabulary as operation kinds, plus explicit destructive intent.

Explicit means a destructive verb that names *this* operation's action ("cancel the subscription" for
`.../cancel`, "delete the webhook" for `DELETE /webhooks/{id}`). "Clean up my invoices list" is not
explicit: it must never put a DELETE first.
"""

from __future__ import annotations

import re

from pipeline.ranking.profile import Kind, OpProfile
from pipeline.ranking.text import head, is_past_form, singular, stem
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
_ENDS_A_THING = _STEMMED[Kind.DELETE] | _ENDING
# Nouns of destructive verbs that also signal the action: "cancellation", "deletion", "removal".
_DESTRUCTIVE_NOUNS = {"cancellation": "cancel", "deletion": "delete", "removal": "remove", "revocation": "revoke",
                      "termination": "terminate"}


# A question about what was done ("was this invoice voided?", "who moved this card", "what did we refund") names
# the past action, not the request, which is a read. "How do I void it" and "can you void it?" ask for the act.
# Not "do": "do not list hidden files" is a request.
_ASKING = frozenset({"was", "were", "has", "have", "had", "did", "does", "is", "are", "who", "when", "which", "why",
                     "what", "whether"})
_DID = frozenset({"did", "does"})
_LEAD_IN = frozenset({"and", "so", "now", "also", "ok", "okay"})
_SENTENCE = re.compile(r"[^.?!]+[.?!]?")


def requested_words(prompt: str) -> list[str]:
    """The prompt's words without those that name an action it asks *about*: in a sentence that asks what was
    done, its verbs in a past form ("voided", "paid"), or every word after "did" ("what did we refund")."""
    kept: list[str] = []
    for sentence in _SENTENCE.findall(prompt):
        ws = words(sentence)
        opener = next((w for w in ws if w not in _LEAD_IN), None)
        if opener not in _ASKING:
            kept += ws
        elif (did := next((i for i, w in enumerate(ws) if w in _DID), None)) is not None:
            kept += ws[:did]
        else:
            kept += [w for w in ws if not is_past_form(w)]
    return kept


def prompt_intents(prompt_tokens: frozenset[str]) -> frozenset[Kind]:
    return frozenset(kind for kind, verbs in _STEMMED.items() if prompt_tokens & verbs)


def destructive_words(prompt_tokens: frozenset[str]) -> frozenset[str]:
    found = {t for t in prompt_tokens if t in _DESTRUCTIVE_STEMS}
    found |= {stem(_DESTRUCTIVE_NOUNS[t]) for t in prompt_tokens if t in _DESTRUCTIVE_NOUNS}
    return frozenset(found)


_POSSESSOR = re.compile(r"\b(\w+)['’]s\b|\b(?:of|for|on|from)\s+(?:this|that|the|her|his|their|its)\s+(\w+)")


def named_things(prompt: str) -> frozenset[str]:
    """Head nouns of the prompt's words, without its possessors: "cancel this customer's subscription" and "delete
    the document uploaded for this patient" are about the subscription and the document."""
    return frozenset(head(w) for w in words(_POSSESSOR.sub(" ", prompt)))


def owners(prompt: str) -> frozenset[str]:
    """Head nouns of the prompt's possessors: the customer and the patient above, who only own the things."""
    return frozenset(head(w) for m in _POSSESSOR.finditer(prompt) for w in words(m.group(1) or m.group(2)))


def asks_for(
    prompt_destructive: frozenset[str], op: OpProfile, method: str, named: frozenset[str], owned: frozenset[str]
) -> bool:
    """Does the prompt explicitly ask for this destructive operation's action? `named` and `owned`: the things of
    this API (`SpecProfile.nouns`) the prompt names, and those it names as their owners."""
    if not prompt_destructive:
        return False
    # The owner named is not the thing ended, whatever the verb: "delete this invoice's line items" asks for no
    # DeleteInvoice, though its operationId says "delete".
    if op.thing in owned and not named & op.nouns - owned:
        return False
    if prompt_destructive & op.action:
        return True
    # A DELETE is asked for by any verb that ends a thing (Stripe cancels a subscription with DELETE): a thing its
    # path is about; or a thing of an owner the prompt names, which the API may call otherwise ("remove the card
    # from this customer": `DELETE /customers/{customer}/sources/{id}`; the owner itself was refused above); or
    # any, when the prompt names no thing ("cancel it").
    if method != "DELETE" or not prompt_destructive & _ENDS_A_THING:
        return False
    return bool(named & op.nouns) or bool(owned & op.nouns) or not (named or owned)


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
        between = text[matches[i - 1].start() : matches[i].start()].rstrip() if i else ""
        sentence_start = i == 0 or between.endswith(_SENTENCE_END)
        if run and (sentence_start or "," in between or ";" in between):  # "Acme Corp, Globex": two names
            found.append(" ".join(run))
            run = []
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
