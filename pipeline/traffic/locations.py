"""The files an import names: a file, a pattern (`s3://logs/api/2026-11-*.jsonl.gz`), or a folder or prefix
(`s3://logs/api/`, `logs/`) standing for every file under it; a path or a URI of any filesystem pyarrow reads.

A shell expands a local pattern before the CLI sees it, but nothing expands a URI, and a Ray job has no shell:
the same rules hold for every location. A location's files come sorted by path (rotated logs named by date or
number are read oldest first). A URI's query (`?endpoint_override=...&region=...`, pyarrow's options for the
filesystem) is kept on every file it expands to.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

from pyarrow import fs

from pipeline.errors import ImportInputError
from pipeline.traffic.formats import Location

_PATTERN = frozenset("*?[")


def expand(locations: Sequence[Location]) -> list[Location]:
    """Every file the locations name, in order; an ImportInputError names a location that holds none."""
    return [file for location in locations for file in _files(location)]


def _files(location: Location) -> list[Location]:
    """The location itself when it names a file; else the files of its folder or pattern."""
    text = str(location)
    uri = "://" in text
    address, _, query = text.partition("?") if uri else (text, "", "")
    options = f"?{query}" if query else ""
    segments = address.split("/")
    fixed = next((i for i, s in enumerate(segments) if _PATTERN & set(s)), len(segments))
    if uri and fixed <= 2:  # the pattern is in the scheme, the bucket or the host
        raise ImportInputError(f"{address}: a pattern names files within a bucket or folder, not the bucket")
    root = "/".join(segments[:fixed])
    filesystem, base = (fs.FileSystem.from_uri(root + options) if uri
                        else (fs.LocalFileSystem(), str(Path(root or ".").resolve())))
    try:
        found = filesystem.get_file_info(base)
        if fixed == len(segments) and found.type == fs.FileType.File:
            return [location]
        listed = [] if found.type == fs.FileType.NotFound else filesystem.get_file_info(
            fs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise ImportInputError(f"{address}: cannot be read ({exc})") from exc
    # A `*` stands for one segment, as in a shell: `logs/*.jsonl` does not reach `logs/old/a.jsonl`.
    pattern = [s for s in segments[fixed:] if s]
    files = sorted(i.path for i in listed if i.type == fs.FileType.File and (not pattern or _matches(
        i.path[len(base):].strip("/").split("/"), pattern)))
    if not files:
        raise ImportInputError(f"{address}: no file there: give files, a folder, or a pattern such as "
                               "s3://bucket/logs/*.jsonl.gz")
    if not uri:
        return list(files)
    return [root.rstrip("/") + path[len(base):] + options for path in files]


def _matches(parts: list[str], pattern: list[str]) -> bool:
    return len(parts) == len(pattern) and all(map(fnmatch.fnmatchcase, parts, pattern))
