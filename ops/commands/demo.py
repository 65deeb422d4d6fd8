"""`opensesame demo`: demonstrations over a private cluster."""

from __future__ import annotations

import argparse
import json

from ops.commands.common import Commands, print_json, progress
from pipeline.settings import get_settings


def register(commands: Commands) -> None:
    demo = commands.add_parser("demo", help="demonstrations").add_subparsers(dest="demo_cmd", required=True)
    learning = demo.add_parser("learning", help="users with a new habit: hit@1 before and after retraining")
    learning.add_argument("--spec", help="default: specs/stripe.json of training.data_dir")
    learning.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="a real Redis (keys are prefixed)")
    learning.add_argument("--labels", type=int, default=1000, help="simulated user sessions, one label each")
    learning.add_argument("--per-habit", type=int, default=20, help="fresh users per habit in each hit@1 measure")
    learning.add_argument("--json", action="store_true")
    learning.set_defaults(handler=demo_learning)


def demo_learning(args: argparse.Namespace) -> int:
    from ops.cluster import interrupt_on_term
    from ops.demo import demo_learning as demo

    interrupt_on_term()  # `kill` stops the demo's private cluster as cleanly as Ctrl-C
    settings = get_settings()
    spec = args.spec or str(settings.training.data_dir / "specs" / "stripe.json")
    report = demo(settings, spec, args.redis_url, args.labels, args.per_habit, log=progress)
    if args.json:
        print_json(report)
    else:
        print(json.dumps(report, indent=1))
    failed = report["swap_load"]["failed"]
    rose = report["hit@1_after_retrain"] > report["hit@1_before"]
    return 0 if failed == 0 and rose else 1
