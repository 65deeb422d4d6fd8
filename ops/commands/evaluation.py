"""`opensesame eval`, `compare`, `restyle`: the ranker against its peers on eval cases, models before and after a
change, and a set rendered in the other API style."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ops.commands.common import Commands, add_model, load_peers, load_predictor, print_json, read_suite
from pipeline.ranking.sources import SOURCE_NAMES
from pipeline.settings import get_settings


def register(commands: Commands) -> None:
    evaluate = commands.add_parser("eval", help="hit@k, MRR, NDCG@5 on eval cases, beside BM25, cosine and "
                                   "repeat-the-last-call peers")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--cases", help="JSON Lines file of eval cases")
    which.add_argument("--suite", nargs="?", const="", metavar="FILE",
                       help="every set of a suite file, one row each and the macro average (default training.dev_suite)")
    evaluate.add_argument("--data", type=Path, help="${data} of the suite file (default: training.data_dir)")
    evaluate.add_argument("--specs", type=Path,
                          help="with --cases: the folder their spec paths are relative to (default: the file's folder)")
    evaluate.add_argument("--without", action="append", default=[], choices=SOURCE_NAMES, help="ablate a source")
    evaluate.add_argument("--ignore-links", action="store_true",
                          help="with --cases: read each spec as if it declared no OpenAPI links")
    add_model(evaluate)
    evaluate.add_argument("--misses", action="store_true", help="include every case not ranked first")
    evaluate.add_argument("--online", action="store_true",
                          help="replay the cases in order, each true call fed back as a label: each half online "
                               "and offline")
    evaluate.add_argument("--warm", type=float, metavar="SHARE",
                          help="import that share of each set's sessions as HAR traffic first, evaluate the rest "
                          "(cold, warm, online, Markov and V-SKNN learned from the same sessions)")
    evaluate.add_argument("--llm", action="store_true", help="add the vLLM source (llm.* settings) to every case")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=evaluate_ranker)

    compare = commands.add_parser("compare", help="models before and after a change, paired seed by seed: the dev "
                                  "suite's macro per pair, its mean, every set's mean (Markdown tables), the worst "
                                  "set's margin over its best peer and the verdict")
    compare.add_argument("--before", nargs="+", required=True,
                         help="model directories (or `eval --suite --json` outputs), one per seed")
    compare.add_argument("--after", nargs="+", required=True, help="the same seeds after the change, in that order")
    compare.add_argument("--peers", type=Path, help="`opensesame eval --suite --json` output whose peers give each "
                         "set's best peer (default: the peers the first --before report holds)")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=compare_models)

    restyle = commands.add_parser("restyle", help="an eval-case file with its specs rendered in the other API style "
                                  "(RPC <-> resource paths, no operationIds, a version prefix): what style alone costs")
    restyle.add_argument("--cases", required=True, help="JSON Lines file of eval cases")
    restyle.add_argument("--specs", type=Path, help="folder the cases' spec paths are relative to (default: theirs)")
    restyle.add_argument("--out", required=True, help="folder for the restyled specs and cases (then `eval --cases`)")
    restyle.set_defaults(handler=restyle_cases)


def evaluate_ranker(args: argparse.Namespace) -> int:
    if args.online or args.warm is not None:
        return _replayed(args)
    if args.suite is not None:
        return _suite(args)
    return _cases(args)


def _cases(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate, load_cases
    from train.suite import METRICS

    predictor = load_predictor(args)
    cases_path = Path(args.cases)
    cases, specs_dir = load_cases(cases_path), args.specs or cases_path.parent
    llm_hits, llm_info = None, None
    if args.llm:
        from train.llm_eval import llm_hits_for_cases

        llm_hits, llm_info = llm_hits_for_cases(predictor, cases, specs_dir, get_settings().fetch, get_settings().llm)
    report = evaluate(predictor, cases, specs_dir, get_settings().fetch, load_peers(args, predictor),
                      disabled=frozenset(args.without), llm_hits=llm_hits, ignore_links=args.ignore_links)
    if llm_info is not None:
        report["llm"] = llm_info
    if not args.misses:
        report.pop("misses")
    if args.json:
        print_json(report)
        return 0
    print(f"{'ranker':<15}{report['cases']} cases  " + "  ".join(f"{m}={report[m]}" for m in METRICS))
    for name, peer in report["peers"].items():
        best = " (best peer)" if name == report["best_peer"] else ""
        print(f"{name:<15}" + "  ".join(f"{m}={peer[m]}" for m in METRICS) + best)
    print("above the best peer at hit@1, hit@3 and MRR: "
          + ("yes" if report["above_best_peer"] else f"no ({', '.join(report['not_above_at'])})"))
    print(f"params_exact={report['params_exact']}  p50={report['p50_ms']} ms  p95={report['p95_ms']} ms")
    if llm_info is not None:
        print("llm        " + "  ".join(f"{k}={v}" for k, v in llm_info.items()))
    return 0


def _suite(args: argparse.Namespace) -> int:
    from train.suite import evaluate_suite, format_table

    predictor = load_predictor(args)
    report = evaluate_suite(predictor, read_suite(args), get_settings().fetch, load_peers(args, predictor),
                            misses=args.misses)
    if args.json:
        print_json(report)
    else:
        print(format_table(report))
    return 0


def _replayed(args: argparse.Namespace) -> int:
    """`--online` (the set replayed through the feedback path) or `--warm SHARE` (that share of its sessions
    imported as traffic first), each set on its own, beside the session-based peers."""
    from train.evaluate import load_cases
    from train.online import format_online, online_macro, replay_online
    from train.suite import readable_sets
    from train.warm import format_warm, warm_eval, warm_macro

    settings = get_settings()
    if args.suite is not None:
        sets, skipped = readable_sets(read_suite(args), settings.fetch)
    else:
        cases_path = Path(args.cases)
        sets, skipped = [(cases_path.stem, load_cases(cases_path), args.specs or cases_path.parent)], []
    predictor = load_predictor(args)
    peers = load_peers(args, predictor)
    fallback = peers.tuned or peers.stock
    if args.warm is not None:
        rows = {name: warm_eval(predictor, cases, specs_dir, settings.fetch, settings.learning, settings.imports,
                                fallback, args.warm) for name, cases, specs_dir in sets}
        report: dict[str, Any] = {"sets": rows, "macro": warm_macro(rows), "skipped": skipped}
        text = format_warm({**rows, "MACRO": report["macro"]})
    else:
        rows = {name: replay_online(predictor, cases, specs_dir, settings.fetch, settings.learning, fallback)
                for name, cases, specs_dir in sets}
        report = {"sets": rows, "macro": online_macro(rows), "skipped": skipped}
        text = format_online({**rows, "MACRO": report["macro"]})
    if args.json:
        print_json(report)
    else:
        print(text)
        print("\n".join(f"skipped {s}" for s in skipped))
    return 0


def compare_models(args: argparse.Namespace) -> int:
    from train.compare import best_peers, compare, format_comparison, load_suite_report

    before, after = [Path(p) for p in args.before], [Path(p) for p in args.after]
    peers = None if args.peers is None else best_peers(load_suite_report(args.peers))
    result = compare([load_suite_report(p) for p in before], [load_suite_report(p) for p in after],
                     [f"{b.name} -> {a.name}" for b, a in zip(before, after)], peers)
    if args.json:
        print_json(result)
    else:
        print(format_comparison(result))
    return 0


def restyle_cases(args: argparse.Namespace) -> int:
    from train.evaluate import load_cases
    from train.restyle import restyle_set

    cases_path, out = Path(args.cases), Path(args.out)
    cases = restyle_set(load_cases(cases_path), args.specs or cases_path.parent, out, get_settings().fetch)
    target = out / cases_path.name
    target.write_text("".join(case.model_dump_json(exclude_defaults=True) + "\n" for case in cases))
    print(f"{len(cases)} cases over {len({c.spec for c in cases})} restyled specs: {target}")
    return 0
