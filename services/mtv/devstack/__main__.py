"""`mtv-stack up|down|status` (what `make up` / `make down` run)."""

from __future__ import annotations

import argparse
import sys

from mtv.devstack import stack
from mtv.devstack.process import StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtv-stack", description="Start or stop the local MTV stack.")
    parser.add_argument("command", choices=["deps", "up", "down", "status", "demo"])
    args = parser.parse_args(argv)
    layout = stack.default_layout()
    try:
        if args.command == "deps":
            # Resolve and build once, so tests and `make up` start without downloads.
            from mtv.devstack import kafka_broker, vsphere_sim

            print(f"kafka jars: {kafka_broker.ensure_jars()}")
            print(f"vsphere simulator: {vsphere_sim.ensure_binary()}")
        elif args.command == "up":
            env = stack.up(layout)
            print(f"MTV stack is up. Endpoints (also in {layout.env_file}; `. .run/env` in any shell):")
            for key, value in env.items():
                print(f"  {key}={value}")
            print(f"Logs: {layout.logs}   Stop: make down")
        elif args.command == "down":
            stopped = stack.down(layout)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "demo":
            from mtv.devstack import demo

            return demo.run(layout)
        else:
            names = stack.running(layout)
            print(f"running: {', '.join(names)}" if names else "not running")
            return 0 if names else 3
    except StackError as exc:
        print(f"mtv-stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
