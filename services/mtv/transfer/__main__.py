"""`mtv-transfer` / `python -m mtv.transfer`. Start more processes to add workers (one group)."""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Callable

from mtv.runtime.lifecycle import serve
from mtv.runtime.settings import load
from mtv.transfer.settings import TransferSettings
from mtv.transfer.worker import SERVICE, TransferWorker


def main() -> int:
    settings = load(TransferSettings, SERVICE)
    # `kill -USR1 <pid>` prints every thread's stack to the log: where a stuck copy is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def run(stop: threading.Event, mark_ready: Callable[[], None]) -> None:
        TransferWorker(settings).run(stop, mark_ready)

    return serve(SERVICE, settings, run)


if __name__ == "__main__":
    sys.exit(main())
