"""`make bench`: run every benchmark (benchmarks/<name>/run.py) and print its `name=value` lines.

A Kafka broker is taken from MTV_KAFKA_BOOTSTRAP, or a local jar broker is started for the run.
Record results in BENCHMARKS.md with the machine and date.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mtv.devstack.kafka_broker import start_broker, stop_broker

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = sys.argv[1:]
    scripts = sorted(p for p in HERE.glob("*/run.py") if not only or p.parent.name in only)
    with tempfile.TemporaryDirectory(prefix="mtv-bench-") as tmp:
        env = dict(os.environ)
        started = False
        if not env.get("MTV_KAFKA_BOOTSTRAP"):
            broker = start_broker(Path(tmp) / "kafka", Path(tmp) / "kafka.log", Path(tmp))
            env["MTV_KAFKA_BOOTSTRAP"] = broker.bootstrap
            started = True
        failed = 0
        try:
            for script in scripts:
                print(f"# {script.parent.name}", flush=True)
                failed += subprocess.run([sys.executable, str(script)], env=env).returncode != 0
        finally:
            if started:
                stop_broker(Path(tmp))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
