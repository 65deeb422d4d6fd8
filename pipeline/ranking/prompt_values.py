"""Ids, codes and names quoted in a prompt, and which path parameters they fill.

"cancel order #W8855135", "reservation EUJUY6", "ICAO code EDDF", "power on server 4712", "issues of
torvalds/linux", "trigger the deploy.yml workflow", "attach pm_1NzR8s to this customer": a value is taken when it
looks like an identifier (a digit, a `#`, a `prefix_` form, a file name, all capitals next to a noun, or a
hyphenated handle after its noun: "project acme-prod") and the noun written right next to it ("order", "server",
"workflow") names the parameter. Without such a noun a value that is unmistakably an id (`#61`, `in_1Nv8aB`,
`W8855135`) still fills an operation's single free parameter, unless its noun names another kind of parameter of the
spec: "order #W8855135" fills an order's parameter, never `{user_id}`. Words between the noun and the value break
the link: "resize the volume to 100 GB" names no volume. A proper name ("holidays in Japan") fills a single free
parameter that takes a name, not an id (`{country}`, never `{animeId}`); of several names, the one written next to a
word of the operation ("holidays in Japan ... descriptions in English" -> Japan for `/holidays/{country}`). Values
the history already gives win over these unlinked guesses, never over a linked value. The items of an enumeration
share the noun of the first ("products 10001, 10002 and 10005"), so each can fill the parameter in turn; a year-like
number names a year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.ranking.intent import named_mentions
from pipeline.ranking.profile import OpProfile
from pipeline.ranking.text import STOP_WORDS, stem
from pipeline.spec.catalogue import words

_TOKEN = re.compile(r"#?[\w][\w.\-:/]*[\w]|#?\w")
# Words allowed between a noun and its value: "order #W88", "ICAO code EDDF", "pull request number 61".
_LINKERS = frozenset({"no", "number", "id", "code", "key", "named", "called", "#", "num", "ref"})
# ... and around a linker: "my user ID is g-user123", "a role with the ID role123".
_FILLERS = frozenset({"is", "was", "the", "with", "of"})
_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself"})
_FILE = re.compile(r"^[\w\-]+\.[A-Za-z]{1,5}$")  # deploy.yml, README.md
_PREFIXED = re.compile(r"^([a-z]{1,6})_[A-Za-z0-9_]{4,}$")  # in_1Nv8aB..., cus_P9kL..., pm_1NzR...
_OWNER_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_VERSION = re.compile(r"^v?\d+(\.\d+)+$")  # v2.1, 1.0.3: a release's name, not an id to fill
_ADDRESSES = re.compile(r"\S+@\S+|\w+://\S+")  # e-mails and URLs are data for a body, not path ids
# ... and so are amounts of money ("charge this customer 25 euros": no customer 25)
MONEY = re.compile(r"([$€£])\s?(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(euros?|eur|dollars?|usd|pounds?|gbp|yen|jpy)\b",
                   re.IGNORECASE)
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")  # acme-prod, tshirt-unique: a handle, when a noun says of what
_YEAR = re.compile(r"^(19|20)\d\d$")  # "holidays in 2023": a year, whatever noun stands beside it
_LIST_JOINERS = frozenset({"and", "or", "&", "then"})  # "orders 9001, 9002 and 9003": one noun for all three
# All that stands between two names of one enumeration, a conjunction among it: "San Francisco and Rivermist",
# "from Boston to Austin", "Canada and then of Mexico", "Lyon, Nice".
_NAME_JOINER = re.compile(r"(?:[\s&/]|\b(?:of|in|for|from|at|the|then)\b)*(?:,|&|\b(?:and|or|to|vs|versus)\b)"
                          r"(?:[\s,&/]|\b(?:and|or|to|vs|versus|of|in|for|from|at|the|then)\b\.?)*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PromptValue:
    value: str
    nouns: frozenset[str]  # stemmed nouns written right before or after it
    prefix: str  # `in` of `in_1Nv8aB` (Stripe-style typed ids), else ""
    strong: bool  # unmistakably an identifier, even with no noun next to it
    typed: bool = False  # a noun next to it names a kind of parameter of the spec: it fills only that kind
    is_name: bool = False  # a proper name ("Japan", "Sofia Coppola"): fills a name-like parameter only
    about: frozenset[str] = frozenset()  # of a name: the stemmed word it is said of ("holidays in Japan" -> holiday)


def _looks_like_id(token: str) -> tuple[bool, bool]:
    """(an identifier at all, unmistakably one)."""
    if token.startswith("#") and len(token) > 1:
        return True, True
    if _VERSION.match(token) or "@" in token or "://" in token:
        return False, False
    if _PREFIXED.match(token):
        return True, True
    if _FILE.match(token) and not token[0].isdigit():
        return True, False
    has_digit = any(ch.isdigit() for ch in token)
    has_alpha = any(ch.isalpha() for ch in token)
    if has_digit and has_alpha and len(token) >= 5:
        return True, True  # W8855135, EUJUY6, 6f1a2b3c
    if has_digit:
        return True, False  # 4712: an id only when a noun says of what
    if (token.isupper() and len(token) >= 3) or _SLUG.match(token):
        return True, False  # EDDF, EUJUY, acme-prod: only next to a noun
    return False, False


def _noun(word: str) -> str | None:
    lowered = word.lower()
    return None if lowered in STOP_WORDS or not lowered.isalpha() else stem(lowered)


def prompt_values(prompt: str, kinds: frozenset[str] = frozenset()) -> tuple[PromptValue, ...]:
    """The values `prompt` quotes; `kinds`: the nouns that name the spec's parameters (`SpecProfile.param_nouns`)."""
    raw = [t.rstrip(".:/-") for t in _TOKEN.findall(MONEY.sub(" ", _ADDRESSES.sub(" ", prompt)))]
    found: list[PromptValue] = []
    previous_at = -2  # the token index of the last value found: an enumeration continues right after it
    for i, token in enumerate(raw):
        if _OWNER_REPO.match(token) and not any(ch == ":" for ch in token):
            owner, repo = token.split("/", 1)
            found.append(PromptValue(owner, frozenset({"owner"}), "", False))
            found.append(PromptValue(repo, frozenset({"repo", "repository"}), "", False))
            continue
        is_id, strong = _looks_like_id(token)
        if not is_id or (i + 1 < len(raw) and raw[i + 1].lower() in _LINKERS):
            continue  # "ICAO code EDDF": a word before "code" names the kind of value, it is not one
        nouns: set[str] = set()
        j = i - 1
        while j >= 0 and raw[j].lower() in _FILLERS and j - 1 >= 0 and raw[j - 1].lower() in _LINKERS:
            j -= 1  # "ID is 123": the filler sits between the linker and the value
        while j >= 0 and raw[j].lower() in _LINKERS:
            j -= 1
            strong = True  # "ID 123456", "number 7", "#61": said to be an identifier
            while j >= 0 and raw[j].lower() in _FILLERS:
                j -= 1  # "role with the ID role123"
        # Up to two words before ("pull request #61" -> request, pull), one after ("deploy.yml workflow").
        for k in (j, j - 1):
            if k >= 0 and (noun := _noun(raw[k])):
                nouns.add(noun)
            else:
                break
        # A handle follows its noun ("project acme-prod"); a hyphenated word before a noun is said of it
        # ("top-rated restaurants").
        if i + 1 < len(raw) and not _SLUG.match(token) and (noun := _noun(raw[i + 1])):
            nouns.add(noun)
        if _YEAR.match(token):
            nouns.add("year")
        if found and (previous_at == i - 1 or (previous_at == i - 2 and raw[i - 1].lower() in _LIST_JOINERS)):
            # The items of a list are of the kind its first names: "products 10001, 10002 and 10005".
            nouns |= found[-1].nouns
            strong = strong or found[-1].strong
        previous_at = i
        match = _PREFIXED.match(token)
        value = token.lstrip("#")
        prefix = match.group(1) if match else ""
        found.append(PromptValue(value, frozenset(nouns), prefix, strong, typed=bool(nouns & kinds)))
    taken = {v.value for v in found}
    names = [n.strip(" .,;:!?'’").removesuffix("'s").removesuffix("’s") for n in named_mentions(prompt)]
    # A name the prompt repeats ("holidays in Germany ... in Germany") is one value, not two to choose between.
    names = list(dict.fromkeys(n for n in names if n and n not in taken))
    found += [PromptValue(n, frozenset(), "", False, is_name=True, about=_said_of(prompt, n)) for n in names]
    return tuple(found)


def enumerations(prompt: str, values: tuple[PromptValue, ...]) -> tuple[frozenset[str], ...]:
    """The names `prompt` enumerates together, each run of two or more as one set: "the distance between San
    Francisco and Rivermist", "flights from New York to London". Names apart ("flights from Boston ... on
    Monday") are not one enumeration."""
    placed = sorted((prompt.find(v.value), v.value) for v in values if v.is_name and v.value in prompt)
    runs: list[list[str]] = []
    end = -1
    for at, name in placed:
        if runs and at >= end and _NAME_JOINER.fullmatch(prompt[end:at]):
            runs[-1].append(name)
        else:
            runs.append([name])
        end = max(end, at + len(name))
    return tuple(frozenset(run) for run in runs if len(run) > 1)


def _said_of(prompt: str, name: str) -> frozenset[str]:
    """The content word before each place `name` stands, over the small words between: "holidays in Japan"."""
    found: set[str] = set()
    for at in re.finditer(re.escape(name), prompt):
        for word in reversed(_TOKEN.findall(prompt[: at.start()])[-3:]):
            if word.lower() not in STOP_WORDS:
                if noun := _noun(word):
                    found.add(noun)
                break
    return frozenset(found)


def speaks_for_self(prompt: str) -> bool:
    """"generate an avatar for me", "update my profile": the caller's own user id is the caller's to give."""
    return bool({w.lower() for w in _TOKEN.findall(prompt)} & _FIRST_PERSON)


def prefix_names(prefix: str, words_: frozenset[str]) -> bool:
    """`in` -> invoice, `cus` -> customer, `pm` -> payment_method (initials), `sub` -> subscription."""
    return any(w.startswith(prefix) for w in words_ if len(prefix) >= 2) or (
        len(prefix) >= 2 and "".join(sorted(w[0] for w in words_)) == "".join(sorted(prefix))
    )


def _takes_name(name: str) -> bool:
    """`{country}`, `{city}`, `{username}` take a name; `{animeId}`, `{issue_number}` take an id."""
    return not set(words(name)) & _ID_PARTS


_ID_PARTS = frozenset({"id", "ids", "number", "uuid", "guid", "key", "sid", "no", "num"})


def fill_from_prompt(
    op: OpProfile, values: tuple[PromptValue, ...], known: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Path parameters of `op` that the prompt's values fill: by the noun next to a value or a typed id's
    prefix; then, for the one free parameter left that the history (`known`) does not fill either, a value that
    is unmistakably an id and not said to be of another kind, or else a single proper name when the parameter
    takes a name."""
    free = [(name, words_) for name, words_ in zip(op.required, op.param_words) if name not in op.enum_params]
    filled: dict[str, str] = {}
    used: set[int] = set()
    for n, v in enumerate(values):
        for name, words_ in free:
            if name not in filled and (v.nouns & words_ or (v.prefix and prefix_names(v.prefix, words_))):
                filled[name] = v.value
                used.add(n)
                break
    left = [name for name, _ in free if name not in filled and name not in known]
    if len(left) != 1:
        return filled
    unused = [v for n, v in enumerate(values) if n not in used]
    strong = [v for v in unused if v.strong and not v.typed]
    names = [v for v in unused if v.is_name]
    if len(names) > 1:  # "holidays in Japan ... descriptions in English": the name said of this operation's thing
        names = [v for v in names if v.about & op.tokens]
    if len(strong) == 1:
        filled[left[0]] = strong[0].value
    elif not strong and len(names) == 1 and _takes_name(left[0]):
        filled[left[0]] = names[0].value
    return filled
