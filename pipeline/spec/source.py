"""Reading a spec document from wherever it comes from into a plain dict.

Sources: a file path, an http(s) URL (through the safe fetcher), an inline JSON/YAML string, or an already
parsed object. YAML is read strictly first; only if that fails is the text repaired for the quirks real
specs carry (tabs in blank block-scalar lines, the `=` value tag, Unicode line separators, control
characters) and read again, so a clean document never pays for the repair.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import NotASpecError, SpecNotFoundError, SpecSyntaxError, SpecTooLargeError, yaml_problem
from pipeline.settings import FetchSettings
from pipeline.spec.fetch import fetch_url

try:  # libyaml is ~10x faster on multi-MB specs; fall back to the pure-Python loader where it is missing.
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader


class _SpecLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that also reads `=` (YAML 1.1 `tag:yaml.org,2002:value`) as the string "="."""


_SpecLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
# Timestamps stay strings: a spec's `version: 2023-08-16` is a label, not a date, and must JSON-serialise.
_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))

_TAB_ONLY_LINE = re.compile(r"^[ \t]*\t[ \t]*$", re.MULTILINE)
_LINE_SEPARATORS = re.compile("[\u2028\u2029\x85]")
# C0 controls except tab/newline/CR, DEL, and C1 controls: YAML forbids them in a stream.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


@dataclass(frozen=True, slots=True)
class SpecDocument:
    """A parsed spec with where it came from and a hash of its content (the cache key downstream)."""

    source: str
    data: dict[str, Any]
    content_hash: str


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:32]


def repair_yaml(text: str) -> str:
    text = _TAB_ONLY_LINE.sub("", text)
    text = _LINE_SEPARATORS.sub(" ", text)
    return _CONTROL.sub(" ", text)


def parse_text(text: str) -> Any:
    """Parse JSON or YAML text, repairing known YAML quirks if the strict parse fails."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass  # JSON-looking YAML (flow mappings) is still YAML
    try:
        return yaml.load(stripped, Loader=_SpecLoader)
    except yaml.YAMLError:
        pass
    try:
        return yaml.load(repair_yaml(stripped), Loader=_SpecLoader)
    except yaml.YAMLError as exc:
        raise SpecSyntaxError(*yaml_problem(exc)) from exc


def parse_bytes(raw: bytes, source: str, max_bytes: int) -> SpecDocument:
    if len(raw) > max_bytes:
        raise SpecTooLargeError(len(raw), max_bytes)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # old specs saved in Windows encodings: keep going, text is descriptive only
    data = parse_text(text)
    if not isinstance(data, dict):
        raise NotASpecError(
            f"{source}: expected an OpenAPI/Swagger object at the top level, got {type(data).__name__}"
        )
    return SpecDocument(source=source, data=data, content_hash=content_hash(raw))


def looks_like_url(source: str) -> bool:
    return source.startswith(("http://", "https://")) or "://" in source[:16]


def looks_inline(source: str) -> bool:
    head = source.lstrip()[:200]
    return "\n" in source or head.startswith(("{", "openapi:", "swagger:", "'openapi'", '"openapi"'))


def read_spec(source: str | dict[str, Any] | Path, settings: FetchSettings) -> SpecDocument:
    """Read a spec from a path, URL, inline text or parsed object."""
    if isinstance(source, dict):
        raw = json.dumps(source, sort_keys=True, separators=(",", ":")).encode()
        return SpecDocument(source="inline", data=source, content_hash=content_hash(raw))
    if isinstance(source, Path):
        return _read_file(source, settings)
    if looks_like_url(source):
        fetched = fetch_url(source, settings)
        assert fetched.body is not None  # unconditional request: never 304
        return parse_bytes(fetched.body, source, settings.max_bytes)
    if looks_inline(source):
        return parse_bytes(source.encode(), "inline", settings.max_bytes)
    return _read_file(Path(source), settings)


def _read_file(path: Path, settings: FetchSettings) -> SpecDocument:
    if not path.is_file():
        raise SpecNotFoundError(f"no spec file at {path}; give an existing path, a URL or inline JSON/YAML")
    size = path.stat().st_size
    if size > settings.max_bytes:
        raise SpecTooLargeError(size, settings.max_bytes)
    return parse_bytes(path.read_bytes(), str(path), settings.max_bytes)
