"""`mtv-transfer` / `python -m mtv.transfer`. Start more processes to add workers (one group)."""

from __future__ import annotations

import sys

from mtv import topics
from mtv.bus import COMMIT_AFTER_EACH
from mtv.runtime.event_service import run_event_service
from mtv.runtime.settings import ServiceSettings, load

SERVICE = "transfer"


class TransferSettings(ServiceSettings):
    pass


def main() -> int:
    settings = load(TransferSettings, SERVICE)
    # A disk copy is committed only when done, so commit after each request.
    return run_event_service(
        SERVICE, settings, "mtv-transfer", [topics.TRANSFER_REQUESTS], handlers={},
        commit=COMMIT_AFTER_EACH,
    )


if __name__ == "__main__":
    sys.exit(main())
