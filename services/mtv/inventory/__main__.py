"""`mtv-inventory` / `python -m mtv.inventory`."""

from __future__ import annotations

import sys

from mtv import topics
from mtv.runtime.event_service import run_event_service
from mtv.runtime.settings import ServiceSettings, load

SERVICE = "inventory"


class InventorySettings(ServiceSettings):
    pass


def main() -> int:
    settings = load(InventorySettings, SERVICE)
    # Source power requests from the planner: handled once discovery lands (issue: inventory).
    return run_event_service(SERVICE, settings, "mtv-inventory", [topics.PROVIDER_COMMANDS], handlers={})


if __name__ == "__main__":
    sys.exit(main())
