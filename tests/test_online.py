"""`opensesame eval --online`: a set replayed in order through the feedback path learns without a retrain."""

from __future__ import annotations

import json

import pytest

from ops.cli import main
from tests.conftest import FIXTURES, PACKAGED

pytestmark = pytest.mark.usefixtures("packaged_cli")  # `--embedder packaged` finds its export


@pytest.fixture()
def habit_cases(tmp_path):
    """One user habit on the billing API: after opening an invoice they list its lines, whatever they ask."""
    (tmp_path / "billing_oas30.yaml").symlink_to(FIXTURES / "billing_oas30.yaml")
    lines = []
    for n in range(40):
        case = {"id": f"habit-{n}", "spec": "billing_oas30.yaml", "prompt": "",
                "events": [{"endpoint": "GET /v1/invoices"}, {"endpoint": f"GET /v1/invoices/in_{n}"}],
                "expected": "GET /invoices/{invoice}/lines"}
        lines.append(json.dumps(case) + "\n")
    path = tmp_path / "habit.jsonl"
    path.write_text("".join(lines))
    return path


def test_the_second_half_learns_the_habit_the_first_half_showed(capsys, habit_cases, tiny_settings, tiny_model):
    model = str(tiny_settings.paths.model_dir)
    code = main(["eval", "--online", "--cases", str(habit_cases), "--json", "--model", model, *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and list(out["sets"]) == ["habit"]
    first, second = out["sets"]["habit"]["first_half"], out["sets"]["habit"]["second_half"]
    assert first["offline"] == second["offline"]  # the same problem twenty times over, no feedback
    assert second["offline"]["hit@1"] < 1.0 and second["online"]["hit@1"] == 1.0
    assert out["macro"]["second_half"]["online"]["mrr"] == second["online"]["mrr"]
    main(["eval", "--online", "--cases", str(habit_cases), "--model", model, *PACKAGED])
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["habit", "40"] and table[2].startswith("MACRO")
