"""What a prompt says that a request's query and body fields take, read once per request
(`pipeline.ranking.request_values` gives each to its field).

- a name given to the thing: "a repository called demo", "named Ada Lovelace" (a run of capitalised words),
  "titled 'Crash on start'", "rename cache-1 to redis-1";
- quoted texts, each with the word it is said of: "description 'my tools'", "description to 'Production DNS'";
- values said after a noun, typed or not: "image ubuntu-22.04", "color d73a4a", "ip range 10.0.0.0/16", "tag
  v1.4.0", and after "noun is": "my username is JaneSmith", "password is hunter2";
- e-mail addresses, URLs, domain names, an amount with its currency ("25 euros", "$19.99"), numbers with the words around them,
  a size with its unit ("50 GB");
- its words' roots, numbers included, and the roots said right after a negation ("not private").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from pipeline.ranking.prompt_values import MONEY, PromptValue
from pipeline.ranking.text import STOP_WORDS, stem
from pipeline.spec.catalogue import words

_QUOTE = r"\"([^\"]+)\"|“([^”]+)”|(?<!\w)'([^']+)'(?!\w)"
# A name given: quoted, a run of capitalised words ("Ada Lovelace"), or one token ("web-1").
_NAMED = re.compile(r"\b(?:called|named|titled|entitled|re(?:name|title)\b[^\"'“]*?\bto)\s+"
                    rf"(?:{_QUOTE}|([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)|([^\s,;]+))")
_QUOTED = re.compile(_QUOTE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]*\w")
_URL = re.compile(r"https?://[^\s\"'<>]+[^\s\"'<>.,;:!?)]")
_WORD = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)?")
_TOKEN = re.compile(r"[^\s,;!?()\"“”']+")
_CURRENCIES = {"$": "usd", "€": "eur", "£": "gbp", "euro": "eur", "euros": "eur", "eur": "eur", "dollar": "usd",
               "dollars": "usd", "usd": "usd", "pound": "gbp", "pounds": "gbp", "gbp": "gbp", "yen": "jpy", "jpy": "jpy"}
_DOMAIN = re.compile(r"(?<![\w@/.])(?:[a-z0-9-]+\.)+[a-z]{2,}\.?(?![\w/])", re.IGNORECASE)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:gb|gib|mb|mib|tb|tib)\b", re.IGNORECASE)
_NEGATIONS = frozenset({"not", "no", "non", "without", "never"})
# Words that may stand between a noun and the value said of it: "type to cx21", "username is JaneSmith".
_ID_NOUNS = frozenset({"id", "number", "no", "code"})
_LINKERS = frozenset({"to", "is", "as", "of", "=", ":"})
# A value said after a noun without a linker looks like one: a digit, or a dot, hyphen, slash or underscore inside.
_VALUE_LIKE = re.compile(r"^(?=.*[\d.\-/_])[\w.\-/:+]+$")


def root(word: str) -> str:
    """"update", "updated", "updates" -> one root (the stemmer keeps a final e that its -ed rule drops)."""
    return stem(word.lower()).removesuffix("e")


def roots(name: str) -> frozenset[str]:
    """The roots of an identifier's or a phrase's content words (`per_page` -> per, page; "ipv6" -> ipv, 6)."""
    return frozenset(root(w) for w in words(name) if w not in STOP_WORDS)


def _bare(token: str, last: bool) -> str:
    """A token without the sentence's full stop (a mid-sentence `example.com.` keeps its dot) or a possessive."""
    token = token.removesuffix("'s").removesuffix("’s")
    return token[:-1] if last and token.endswith(".") else token.rstrip(":")


@dataclass(frozen=True, slots=True)
class SaidValues:
    words: tuple[str, ...]  # its words and numbers, lower case, in order
    roots: frozenset[str]  # of its words and numbers
    negated: frozenset[str]  # roots right after a negation
    named: str | None  # the name given to the thing
    quoted: tuple[tuple[str, str], ...]  # (root of the word it is said of, the text); "" when none
    after: tuple[tuple[str, str, str], ...]  # (root of the noun, root of the word before it, the value)
    emails: tuple[str, ...]
    urls: tuple[str, ...]
    domains: tuple[str, ...]  # "example.com.", "www.example.com" (not an e-mail's or a URL's)
    money: tuple[float, str] | None  # (amount, ISO currency, lower case)
    size: float | None  # a size with its unit ("50 GB")
    values: tuple[PromptValue, ...]  # the ids and names `prompt_values` read

    @classmethod
    def of(cls, prompt: str, values: tuple[PromptValue, ...]) -> SaidValues:
        plain = _URL.sub(" ", _EMAIL.sub(" ", prompt))  # prose: addresses are read apart
        found = [w.lower() for w in _WORD.findall(plain)]
        last = prompt.split()[-1] if prompt.strip() else ""  # where a full stop ends the sentence, not a name
        named = next((next(g for g in m.groups() if g) for m in _NAMED.finditer(prompt)), None)
        money = MONEY.search(prompt)
        amount = None
        if money:
            symbol, before, number, word = money.groups()
            amount = (float(before or number), _CURRENCIES[(symbol or word).lower()])
        size = _SIZE.search(prompt)
        return cls(
            words=tuple(found), roots=frozenset(root(w) for w in found),
            negated=frozenset(root(b) for a, b in pairwise(found) if a in _NEGATIONS),
            named=_bare(named, named == last) if named else None,
            quoted=tuple((_said_of(prompt[: m.start()]), next(g for g in m.groups() if g))
                         for m in _QUOTED.finditer(prompt)),
            after=_said_after(prompt), emails=tuple(_EMAIL.findall(prompt)), urls=tuple(_URL.findall(prompt)),
            domains=tuple(_bare(d, d == last) for d in _DOMAIN.findall(plain)),
            money=amount, size=float(size.group(1)) if size else None, values=values,
        )


def _said_of(before: str) -> str:
    """The root of the noun a quoted text is said of: the word before it, over one linker ("description to")."""
    said = [w for w in _WORD.findall(before)][-2:]
    if said and said[-1].lower() in _LINKERS:
        said = said[:-1]
    return root(said[-1]) if said and said[-1].lower() not in STOP_WORDS else ""


def _said_after(prompt: str) -> tuple[tuple[str, str, str], ...]:
    """(noun, the word before it, value) for each value said right after a noun, or after "noun is"."""
    tokens = _TOKEN.findall(_QUOTED.sub(" ", prompt))
    found: list[tuple[str, str, str]] = []
    for i, token in enumerate(tokens[1:], start=1):
        noun_at = i - 1
        linked = tokens[noun_at].lower() in _LINKERS and noun_at > 0
        if linked:
            noun_at -= 1
        noun = tokens[noun_at].lower()
        if noun in _ID_NOUNS and noun_at > 0 and tokens[noun_at - 1].isalpha():
            noun_at -= 1  # "user ID is 12345": the user's
            noun = tokens[noun_at].lower()
        value = _bare(token, i == len(tokens) - 1)
        if not noun.isalpha() or noun in STOP_WORDS or not value or value.lower() in STOP_WORDS:
            continue
        if linked or _VALUE_LIKE.match(value):
            before = tokens[noun_at - 1].lower() if noun_at > 0 else ""
            found.append((root(noun), root(before) if before.isalpha() else "", value))
    return tuple(found)
