"""`mtv-converter` / `python -m mtv.converter`."""

from __future__ import annotations

import sys

from mtv import topics
from mtv.runtime.event_service import run_event_service
from mtv.runtime.settings import ServiceSettings, load

SERVICE = "converter"


class ConverterSettings(ServiceSettings):
    pass


def main() -> int:
    settings = load(ConverterSettings, SERVICE)
    return run_event_service(SERVICE, settings, "mtv-converter", [topics.TARGET_REQUESTS], handlers={})


if __name__ == "__main__":
    sys.exit(main())
