"""`mtvctl` entry point. Errors are one line on stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys

from confluent_kafka import KafkaException

from mtv import topics
from mtv.bus import admin
from mtv.inventory import cli as inventory_cli
from mtv.planner import client as plan_client

EPILOG = """examples:
  mtvctl topics list
  mtvctl topics create --bootstrap 127.0.0.1:29092
  . .run/env && mtvctl topics create
  mtvctl provider add vsphere vc1 --url https://vc.example.com/sdk --username admin --password-file pw.txt
  mtvctl inventory vms --provider vc1 -o json
  mtvctl plan create -f plan.yaml && mtvctl plan approve web-tier
  mtvctl watch web-tier
  mtvctl status
"""


def _bootstrap(args: argparse.Namespace) -> str:
    value = args.bootstrap or os.environ.get("MTV_KAFKA_BOOTSTRAP", "")
    if not value:
        raise SystemExit("mtvctl: no broker: pass --bootstrap HOST:PORT or set MTV_KAFKA_BOOTSTRAP (`. .run/env`)")
    return value


def cmd_topics_list(args: argparse.Namespace) -> int:
    print(f"{'TOPIC':32} {'PARTS':>5}  {'KEY':38} {'PUBLIC':6}  DESCRIPTION")
    for t in topics.ALL:
        kind = " (compacted)" if t.compacted else ""
        print(f"{t.name:32} {t.partitions:>5}  {t.key.value:38} {'yes' if t.public else '':6}  "
              f"{t.description}{kind}")
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap(args)
    try:
        created = admin.ensure_topics(bootstrap, timeout=args.timeout, quiet=True)
    except KafkaException as exc:
        raise SystemExit(
            f"mtvctl: cannot create topics on {bootstrap}: {exc.args[0].str()}; is the broker up?"
        ) from None
    print(f"created {len(created)} topic(s); {len(topics.ALL) - len(created)} already existed")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from mtv.cli import watch

    # With a plan, stop when it ends (exit 0 only if it succeeded); without one, follow until Ctrl-C.
    return watch.run(_bootstrap(args), args.plan, until_done=bool(args.plan), timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from mtv.cli import status

    return status.run()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mtvctl", description="Migration Toolkit for Virtualization client.",
                                  epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="group", required=True)
    t = sub.add_parser("topics", help="the Kafka topics MTV uses")
    tsub = t.add_subparsers(dest="action", required=True)
    tsub.add_parser("list", help="print the topic registry").set_defaults(func=cmd_topics_list)
    c = tsub.add_parser("create", help="create missing topics (idempotent)")
    c.add_argument("--bootstrap", help="Kafka bootstrap servers (default: $MTV_KAFKA_BOOTSTRAP)")
    c.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the broker")
    c.set_defaults(func=cmd_topics_create)
    w = sub.add_parser("watch", help="live per-disk progress of a plan, from the progress and status topics")
    w.add_argument("plan", nargs="?", default="", help="plan id (default: every plan)")
    w.add_argument("--bootstrap", help="Kafka bootstrap servers (default: $MTV_KAFKA_BOOTSTRAP)")
    w.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")
    w.set_defaults(func=cmd_watch)
    sub.add_parser("status", help="is everything up: broker, services, transfer workers, providers, plans "
                                  "(exit 1 if not)").set_defaults(func=cmd_status)
    inventory_cli.add_parsers(sub)
    plan_client.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
