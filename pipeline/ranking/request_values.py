"""The rest of a predicted call: its query and body values, each with where it came from, and what is required
and still missing, so a console can ask for it.

From the prompt (`pipeline.ranking.said_values` reads it), typed by the field's schema:
- the name given to the thing fills its name-like field (`name`, `title`, `subject`, ...; a plain `name` before a
  `dnsName`); a quoted text said of a field's name fills that field ("description to 'Production DNS'"), another
  quoted text the name, else the one text field (`body`, `text`, `message`, ...): "comment 'LGTM' on it";
- a value said after a field's noun ("image ubuntu-22.04", "ip range 10.0.0.0/16", "username is JaneSmith"), to the
  field whose name it is said with most fully ("dns name example.com." is `dnsName`'s);
- an e-mail address an e-mail field, a URL a URL field, a proper name a search's term;
- a boolean field whose name the prompt says ("a private repository") is true, false when negated ("not private");
- an enum value the prompt says fills its field when it is the one value of that field said, and is not just the
  operation's own thing (`filter=repos` is not said by "the repo's issues"): "sorted by last update" ->
  `sort=updated`, "close" -> `state=closed`, "creation date" -> `created`, "oldest first" -> `asc`;
- a number beside the words of the field it belongs to ("50 per page" is `per_page`'s, not `page`'s); a count of
  the listed things or "N per page" a page size (`limit`, `per_page`, `maxResults`: "the last 5 charges"); a size
  with its unit a size field ("50 GB"); an amount with its currency an amount field, in minor units (2500) only
  where the field's description says so, and the currency a currency field;
- an id the prompt quotes beside the noun of the field's thing ("for customer cus_9"); an unmistakable id no noun
  names, the one required text field left, as a path's one free parameter takes it.
From the spec's OpenAPI links: the values a link of an earlier call gives. From the history, by the field's name or
the thing it names (`customer` after `GET /customers/cus_9`): a body's ids, a query's required ids, an optional
query filter when a prompt asks for something and does not say "all"; other required values a call sent by the
same name or a response answered with (a login's `token`). Last, a required field's default or single enum value. Objects and arrays are the client's to build:
listed as missing when required.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipeline.ranking.context import Context
from pipeline.ranking.prompt_values import prefix_names
from pipeline.ranking.said_values import SaidValues, root, roots
from pipeline.ranking.text import GENERIC_NAMES, head, stem
from pipeline.spec.catalogue import Operation, Parameter, is_id_name, words

Source = Literal["prompt", "link", "history", "default"]
JSONScalar = str | int | float | bool

_MINOR_UNITS = re.compile(r"smallest currency unit|minor unit|in cents|lowest denomination|in pence", re.IGNORECASE)
_NAME_WORDS = frozenset({"name", "title", "subject", "summary", "label", "login", "username", "nickname"})
_TEXT_WORDS = frozenset({"body", "text", "content", "message", "comment", "description", "desc", "note"})
_EMAIL_WORDS = frozenset({"email", "mail"})
_URL_WORDS = frozenset({"url", "uri", "homepage", "website", "link", "href", "endpoint"})
_DOMAIN_WORDS = frozenset({"dns", "domain", "hostname", "fqdn"})
_SEARCH_WORDS = frozenset({"q", "query", "search", "keyword", "keywords", "term"})
_AMOUNT_WORDS = frozenset({"amount", "price", "total", "cost", "fee", "sum"})
_SIZE_WORDS = frozenset({"size", "capacity"})
_PAGE_SIZE_WORDS = frozenset({"limit", "per", "size", "max", "top"})  # `limit`, `per_page`, `pageSize`, `maxResults`
_COUNTED_AFTER = frozenset({"first", "last", "top", "latest", "newest", "oldest"})  # "the last 5 charges"
# Words of a flag's name that only say it is a flag: `has_issues` is said by "issues", `is_template` by "template".
_FLAG_WORDS = frozenset(root(w) for w in ("is", "has", "allow", "enable", "enabled", "use", "should", "can",
                                          "include", "with"))
_ALL = frozenset({"all", "every", "any"})
# How an order is said: "oldest first" is ascending, "newest first" descending, whatever the enum calls them.
_ORDER_SAID = {root(v): frozenset(root(w) for w in said) for said, values in (
    (("oldest", "earliest", "ascending", "asc", "increasing"), ("asc", "ascending")),
    (("newest", "latest", "recent", "descending", "desc", "decreasing"), ("desc", "descending")),
) for v in values}
_OFFERED = re.compile(r"`([\w-]+)`|'([\w-]+)'")  # values a description offers, quoted
_CHOICE = re.compile(r"\bor\b|\bone of\b|\beither\b", re.IGNORECASE)
_MIN_PREFIX = 5  # an enum value's root said as the start of a longer word: "creat" in "creation"


@dataclass(frozen=True, slots=True)
class FilledRequest:
    query: dict[str, JSONScalar]
    body: dict[str, JSONScalar]
    filled_from: dict[str, Source]  # field name -> where its value came from
    missing: tuple[str, ...]  # required parameters and fields nothing filled, path ones included


def _typed(value: JSONScalar, field: Parameter) -> JSONScalar | None:
    """A value as the field's schema types it: `"25"` for an integer is 25; None where it cannot be of the type."""
    text = str(value)
    if field.type == "integer":
        return int(text) if re.fullmatch(r"-?\d+", text) else None
    if field.type == "number":
        return (float(text) if "." in text else int(text)) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None
    if field.type == "boolean":
        return value if isinstance(value, bool) else text.lower() == "true" if text.lower() in ("true", "false") else None
    return value


@dataclass(frozen=True, slots=True)
class _Fields:
    """The operation's fillable fields and what the prompt says of them as a whole."""

    fields: list[Parameter]
    path_roots: frozenset[str]  # the operation's own things: no enum value that only names them is said
    field_roots: frozenset[str]  # of every field's name: a text quoted after one is that field's
    assigned: dict[str, JSONScalar]  # values given to one field among several: numbers, values after nouns

    @classmethod
    def of(cls, op: Operation, said: SaidValues) -> _Fields:
        fields = [p for p in op.parameters if p.location == "query"] + list(op.body)
        path_roots = frozenset(r for segment in op.path.split("/") if "{" not in segment for r in roots(segment))
        assigned = _numbers(fields, said, path_roots) | _after_nouns(fields, said)
        return cls(fields, path_roots, frozenset(r for f in fields for r in roots(f.name)), assigned)


def _best(fields: list[Parameter], around: set[str], taken: dict[str, JSONScalar]) -> str | None:
    """The field whose name the words `around` a value say most fully (most words said, then the larger share)."""
    scored = [(len(r & around), len(r & around) / len(r), f.name) for f in fields if (r := roots(f.name))]
    best = max((s for s in scored if s[0] and s[2] not in taken), default=None)
    return best[2] if best else None


def _numbers(fields: list[Parameter], said: SaidValues, path_roots: frozenset[str]) -> dict[str, JSONScalar]:
    numeric = [f for f in fields if f.type in ("integer", "number") and not f.enum]
    found: dict[str, JSONScalar] = {}
    page_size = next((f.name for f in numeric if set(words(f.name)) & _PAGE_SIZE_WORDS
                      and set(words(f.name)) <= _PAGE_SIZE_WORDS | {"page", "results", "result", "count"}), None)
    sized = next((f.name for f in numeric if set(words(f.name)) & _SIZE_WORDS), None)
    for i, word in enumerate(said.words):
        if not word[0].isdigit():
            continue
        value = float(word) if "." in word else int(word)
        before, after = said.words[max(i - 1, 0): i], said.words[i + 1: i + 3]
        name = _best(numeric, {root(w) for w in (*before, *after)}, found)
        counted = (before and before[-1] in _COUNTED_AFTER) or (after and root(after[0]) in path_roots) \
            or after[:2] in (("per", "page"), ("at", "a"))
        if name is None and counted and page_size not in found:
            name = page_size
        if name is None and sized is not None and said.size == value and sized not in found:
            name = sized
        if name is not None:
            found[name] = value
    return found


def _after_nouns(fields: list[Parameter], said: SaidValues) -> dict[str, JSONScalar]:
    """Each value said after a noun goes to the field named by the noun (and the word before it) most fully; a
    number only to a numeric field, a text only to a text one."""
    found: dict[str, JSONScalar] = {}
    for noun, before, value in said.after:
        numeric = bool(re.fullmatch(r"-?\d+(\.\d+)?", value))
        eligible = [f for f in fields if noun in roots(f.name) and not f.enum and f.type != "boolean"
                    and (f.type in ("integer", "number")) == numeric and f.type not in ("object", "array")]
        name = _best(eligible, {noun, before}, found)
        if name is not None:
            found[name] = value
    return found


def _from_text(field: Parameter, said: SaidValues, shape: _Fields) -> JSONScalar | None:
    """A value the prompt's words give the field (not its ids: `_quoted_id`)."""
    names = words(field.name)
    own = roots(field.name)
    quoted = next((text for about, text in said.quoted if about and about in own), None)
    if quoted is not None:
        return quoted
    if field.name in shape.assigned:
        return shape.assigned[field.name]
    if names and names[-1] in _NAME_WORDS and field.type in (None, "string"):
        plain = len(names) == 1 or not any(len(words(f.name)) == 1 and words(f.name)[0] in _NAME_WORDS
                                           for f in shape.fields)
        given = said.named or next((text for about, text in said.quoted if about not in shape.field_roots), None)
        if plain and given is not None:
            return given
    if _EMAIL_WORDS & set(names) and said.emails:
        return said.emails[0]
    if _URL_WORDS & set(names) and said.urls:
        return said.urls[0]
    if _DOMAIN_WORDS & set(names) and said.domains and field.type in (None, "string"):
        return said.domains[0]
    if set(names) & _SEARCH_WORDS and field.type in (None, "string"):
        return next((v.value for v in said.values if v.is_name), None)
    if field.type == "boolean":
        flag = own - _FLAG_WORDS
        return (not flag & said.negated) if flag and flag <= said.roots else None
    if "currency" in names and said.money:
        code = said.money[1]
        if field.enum:
            return next((e for e in field.enum if e.lower() == code), None)
        return code.upper() if "uppercase" in field.description.lower() else code
    if _choices(field):
        return _enum_said(field, said, shape.path_roots)
    if field.type in ("integer", "number") and _AMOUNT_WORDS & set(names) and said.money:
        amount = said.money[0] * 100 if _MINOR_UNITS.search(field.description) else said.money[0]
        return round(amount) if field.type == "integer" or amount.is_integer() else amount
    return None


def _is_said(value_root: str, said: SaidValues) -> bool:
    synonyms = _ORDER_SAID.get(value_root, frozenset({value_root}))
    return bool(synonyms & said.roots) or (len(value_root) >= _MIN_PREFIX
                                           and any(w.startswith(value_root) for w in said.roots))


def _choices(field: Parameter) -> tuple[str, ...]:
    """The field's enum, or the values its description offers ("Sorting order direction: 'ascending' or
    'descending'.", "Can be either `open`, `closed`, or `all`.")."""
    if field.enum or field.type not in (None, "string"):
        return field.enum
    offered = _OFFERED.findall(field.description)
    return tuple(dict.fromkeys(a or b for a, b in offered)) if len(offered) > 1 and _CHOICE.search(field.description) else ()


def _enum_said(field: Parameter, said: SaidValues, path_roots: frozenset[str]) -> str | None:
    """The one value of the field the prompt says; none when two are said as fully."""
    found = [(len(r), v) for v in _choices(field) if any(c.isalpha() for c in v) and (r := roots(v))
             and all(_is_said(w, said) for w in r) and not r <= path_roots]
    found.sort(reverse=True)
    if not found or (len(found) > 1 and found[0][0] == found[1][0]):
        return None
    return found[0][1]


def _quoted_id(field: Parameter, said: SaidValues) -> str | None:
    """An id the prompt quotes beside the noun of the field's thing ("customer cus_9"), or with its typed prefix."""
    noun = stem(head(field.name))
    for value in said.values:
        if not value.is_name and (noun in value.nouns or (value.prefix and prefix_names(value.prefix, frozenset({noun})))):
            return value.value
    return None


def _is_id(field: Parameter, ctx: Context) -> bool:
    return is_id_name(field.name) or head(field.name) in ctx.spec.profile.path_entities


def _from_history(field: Parameter, ctx: Context, said: SaidValues) -> str | None:
    if not _is_id(field, ctx):
        return (ctx.values.get(field.name) or ctx.answered.get(field.name)) if field.required else None
    if field.location == "query" and not field.required and (not said.words or set(said.words) & _ALL):
        return None  # a list is narrowed to the thing at hand when something is asked, not when all is
    by_name = ctx.values.get(field.name) if field.name.lower() not in GENERIC_NAMES else None
    return by_name or ctx.entity_values.get(head(field.name))


def _found(field: Parameter, op_index: int, ctx: Context, said: SaidValues,
           shape: _Fields) -> tuple[JSONScalar | None, Source]:
    value = _from_text(field, said, shape) if said.words else None
    if value is None and _is_id(field, ctx) and said.values:
        value = _quoted_id(field, said)
    if value is not None:
        return value, "prompt"
    if (linked := ctx.linked_values.get(op_index, {}).get(field.name)) is not None:
        return linked, "link"
    if (seen := _from_history(field, ctx, said)) is not None:
        return seen, "history"
    if field.required and field.default is not None:
        return field.default, "default"
    return (field.enum[0], "default") if field.required and len(field.enum) == 1 else (None, "default")


def fill_request(op: Operation, op_index: int, ctx: Context, said: SaidValues, taken: frozenset[str],
                 unresolved: tuple[str, ...]) -> FilledRequest:
    """The query and body values of operation `op` for this request; `taken`: the values its path holds,
    `unresolved`: its path parameters left."""
    shape = _Fields.of(op, said)
    query: dict[str, JSONScalar] = {}
    body: dict[str, JSONScalar] = {}
    filled_from: dict[str, Source] = {}
    missing = list(unresolved)

    def put(field: Parameter, value: JSONScalar, source: Source) -> bool:
        typed = _typed(value, field)
        if typed is None:
            return False
        (query if field.location == "query" else body)[field.name] = typed
        filled_from[field.name] = source
        return True

    for field in shape.fields:
        if field.type in ("object", "array"):  # a structure is the client's to build; a scalar is said
            missing += [field.name] if field.required else []
            continue
        value, source = _found(field, op_index, ctx, said, shape)
        if (value is None or not put(field, value, source)) and field.required:
            missing.append(field.name)
    _leftovers(shape, said, taken, query, body, missing, put)
    return FilledRequest(query, body, filled_from, tuple(missing))


def _leftovers(shape: _Fields, said: SaidValues, taken: frozenset[str], query: dict[str, JSONScalar],
               body: dict[str, JSONScalar], missing: list[str], put: Callable[[Parameter, JSONScalar, Source], bool]) -> None:
    """What the prompt said that no field took: a quoted text goes to the one text field (a required one first),
    an unmistakable id to the one required text field left."""
    used = {str(v) for v in (*query.values(), *body.values())} | taken
    texts = [text for _, text in said.quoted if text not in used]
    open_text = sorted((f for f in shape.fields if f.name not in query and f.name not in body
                        and set(words(f.name)) & _TEXT_WORDS and f.type in (None, "string")), key=lambda f: not f.required)
    if texts and open_text and put(open_text[0], texts[0], "prompt") and open_text[0].name in missing:
        missing.remove(open_text[0].name)
    left = [f for f in shape.fields if f.name in missing and f.type in (None, "string")]
    unused = [v for v in said.values if v.strong and not v.typed and v.value not in used]
    if len(left) == 1 and len(unused) == 1 and put(left[0], unused[0].value, "prompt"):
        missing.remove(left[0].name)
