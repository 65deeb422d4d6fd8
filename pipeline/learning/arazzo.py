"""The workflows traffic shows, as an OpenAPI Arazzo 1.0 document: each a sequence of the spec's operations.

Every step names its operation by the spec's own `operationId` where it has a unique one, else by an
`operationPath` (a JSON Pointer into the source description: `{$sourceDescriptions.api.url}#/paths/~1invoices/get`),
so a workflow tool can run or render it against the same spec.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import yaml

from pipeline.learning.imports import ImportReport
from pipeline.spec.catalogue import Catalogue, Operation

ARAZZO_VERSION = "1.0.1"
SOURCE = "api"


def _pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", text).strip("-").lower() or "step"


def _step(operation: Operation, number: int, unique_ids: set[str]) -> dict[str, Any]:
    name = operation.operation_id if operation.operation_id in unique_ids else None
    step: dict[str, Any] = {"stepId": f"s{number}-{_slug(operation.operation_id or operation.id)}",
                            "description": operation.summary or operation.id}
    if name:
        step["operationId"] = name
    else:
        step["operationPath"] = (f"{{$sourceDescriptions.{SOURCE}.url}}#/paths/{_pointer(operation.path)}/"
                                 f"{operation.method.lower()}")
    return step


def arazzo_document(report: ImportReport, catalogue: Catalogue, source_url: str, title: str) -> dict[str, Any]:
    """The report's workflows over `catalogue` (found at `source_url`); empty `workflows` when there were none
    (Arazzo requires at least one: the caller decides whether to write such a document)."""
    by_id = {op.id: op for op in catalogue.operations}
    ids = Counter(op.operation_id for op in catalogue.operations if op.operation_id)
    unique_ids = {name for name, n in ids.items() if n == 1}
    workflows = []
    for number, workflow in enumerate(report.workflows, start=1):
        operations = [by_id[step] for step in workflow.steps]
        workflows.append({
            "workflowId": f"observed-{number}",
            "summary": " -> ".join(op.id for op in operations),
            "description": f"Seen in {workflow.sessions} sessions of the imported traffic.",
            "steps": [_step(op, i, unique_ids) for i, op in enumerate(operations, start=1)],
        })
    return {
        "arazzo": ARAZZO_VERSION,
        "info": {"title": title, "version": "1.0.0",
                 "description": f"The most frequent call sequences in {report.sessions} sessions of imported traffic."},
        "sourceDescriptions": [{"name": SOURCE, "url": source_url, "type": "openapi"}],
        "workflows": workflows,
    }


def report_files(report: ImportReport, catalogue: Catalogue, source_url: str) -> dict[str, str]:
    """An import's report as files: report.json, report.md and, when the traffic shows workflows, arazzo.yaml."""
    files = {"report.json": report.model_dump_json(indent=2) + "\n", "report.md": report.markdown()}
    if report.workflows:
        document = arazzo_document(report, catalogue, source_url, "Workflows seen in imported traffic")
        files["arazzo.yaml"] = yaml.safe_dump(document, sort_keys=False)
    return files
