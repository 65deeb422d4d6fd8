"""What importing an API's traffic is worth: the first part of a set's sessions written as a HAR export, imported
through the importer (HAR reader, sessions, matching, labels through the feedback path), the rest predicted.

Beside the warm service, on the same later cases: the cold model (nothing imported), the warm one still learning
from each later case's label (`online`), and the classic session-based peers learned from the same imported
sessions, `markov` and `sknn`, each also learning online (`markov_online`, `sknn_online`).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.learning.imports import ImportReport, SessionLearner, TrafficImport
from pipeline.ranking.predict import Predictor
from pipeline.ranking.stats import InMemoryPatterns, InMemoryTransitions
from pipeline.settings import FetchSettings, ImportSettings, LearningSettings
from pipeline.traffic.formats import Tally, read_traffic
from pipeline.traffic.observed import Identity
from train.evaluate import Case
from train.metrics import VERDICT_METRICS, summary
from train.online import expected_rank, learn_case, pick, replay_sink, spec_loader, with_counts
from train.peers import Cosine
from train.session_peers import CaseSession, OnlinePeers, case_history, case_sessions

MODES = ("cold", "warm", "online", "markov", "sknn", "markov_online", "sknn_online")
_HOST = "https://api.example.test"


def _path(endpoint: str) -> tuple[str, str]:
    method, _, path = endpoint.partition(" ")
    return method, path if path.startswith("/") else f"/{path}"


def write_har(sessions: list[CaseSession], cases: list[Case], target: Path) -> int:
    """The sessions' calls as a browser export would hold them: one token per session, a second between calls,
    an hour between sessions; each call's response body when the set has it. The number of entries."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = []
    for number, session in enumerate(sessions):
        last = cases[session.cases[-1]]
        calls = [(e.endpoint, e.response) for e in last.events] + [(last.expected, None)]
        for step, (endpoint, response) in enumerate(calls):
            method, path = _path(endpoint)
            content: dict[str, Any] = {"size": 0, "mimeType": "application/json"}
            if response is not None:
                content["text"] = json.dumps(response)
            entries.append({
                "startedDateTime": (start + timedelta(hours=number, seconds=step)).isoformat(),
                "request": {"method": method, "url": _HOST + path,
                            "headers": [{"name": "Authorization", "value": f"Bearer session-{number}"}]},
                "response": {"status": 200, "content": content},
            })
    target.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "opensesame eval --warm"},
                                          "entries": entries}}))
    return len(entries)


def warm_eval(
    predictor: Predictor, cases: list[Case], cases_dir: Path, fetch: FetchSettings, learning: LearningSettings,
    imports: ImportSettings, fallback: Cosine, share: float = 0.5,
) -> dict[str, Any]:
    """hit@1, hit@3 and MRR of every mode on the cases of the sessions after the first `share` of them."""
    prepared = spec_loader(predictor, cases_dir, fetch)
    sessions = case_sessions(cases, lambda case: case_history(prepared(case), case))
    cut = round(len(sessions) * share)
    earlier, later = sessions[:cut], sessions[cut:]
    counts, patterns = InMemoryTransitions(learning.recall, learning.borrow), InMemoryPatterns(learning.pattern_prior)
    warm, cold = with_counts(predictor, counts, patterns), with_counts(predictor, InMemoryTransitions(), None)
    peers, learned = OnlinePeers(fallback), OnlinePeers(fallback)  # learned: from the import alone
    imported: dict[str, Any] = {"sessions": len(earlier), "requests": 0, "matched": 0, "labels": 0}
    with tempfile.TemporaryDirectory(prefix="opensesame-warm-") as work:
        sink = replay_sink(Path(work), counts, patterns)
        for location in dict.fromkeys(s.spec for s in earlier):
            mine = [s for s in earlier if s.spec == location]
            har = Path(work) / "traffic.har"
            write_har(mine, cases, har)
            spec = prepared(cases[mine[0].cases[0]])
            tally = Tally()
            learner = SessionLearner(warm, spec, sink, imports.history)
            report: ImportReport = TrafficImport(spec.catalogue, imports, learner).run(
                read_traffic(har, Identity(b"warm"), tally), "har", tally)
            for key in ("requests", "matched", "labels"):
                imported[key] += getattr(report, key)
            for session in mine:
                last = cases[session.cases[-1]]
                calls = [*case_history(spec, last), last.expected]
                for peer in (peers, learned):
                    peer.markov.learn(spec.content_hash, calls)
                    peer.learn_session(spec, calls)
        ranks: dict[str, list[int | None]] = {mode: [] for mode in MODES}
        later_cases = [cases[number] for session in later for number in session.cases]
        # What the import alone taught first; then the same cases again, each learned after it is answered.
        for case in later_cases:
            spec = prepared(case)
            for mode, model in (("cold", cold), ("warm", warm)):
                ranks[mode].append(expected_rank(model.predict(spec, case.events, case.prompt, k=10), case))
        for case in later_cases:
            spec = prepared(case)
            outcome = warm.predict(spec, case.events, case.prompt, k=10)
            ranks["online"].append(expected_rank(outcome, case))
            learn_case(sink, spec, case, outcome)
        for session in later:
            for number in session.cases:
                case = cases[number]
                spec = prepared(case)
                history = case_history(spec, case)
                for prefix, peer in (("", learned), ("_online", peers)):
                    for name, rank in peer.ranks(spec, history, case.prompt, case.expected).items():
                        ranks[f"{name}{prefix}"].append(rank)
                peers.learn_call(spec, history, case.expected)
            last = cases[session.cases[-1]]
            spec = prepared(last)
            peers.learn_session(spec, [*case_history(spec, last), last.expected])
    return {"sessions": len(sessions), "cases": sum(len(s.cases) for s in later), "imported": imported,
            "later": {mode: pick(summary(r)) for mode, r in ranks.items()}}


def warm_macro(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over sets of every mode and metric."""
    return {"cases": sum(r["cases"] for r in rows.values()),
            "later": {mode: {m: round(sum(r["later"][mode][m] for r in rows.values()) / len(rows), 4)
                             for m in VERDICT_METRICS} for mode in MODES}}


def format_warm(rows: dict[str, dict[str, Any]]) -> str:
    """One line per set: hit@1 / hit@3 / MRR of every mode on the later sessions' cases."""
    lines = [f"{'set':<18}{'cases':>6}  " + "  ".join(f"{mode:>20}" for mode in MODES)]
    for name, row in rows.items():
        cells = "  ".join(f"{'{hit@1:.3f}/{hit@3:.3f}/{mrr:.3f}'.format(**row['later'][mode]):>20}" for mode in MODES)
        lines.append(f"{name:<18}{row['cases']:>6}  {cells}")
    return "\n".join(lines)
