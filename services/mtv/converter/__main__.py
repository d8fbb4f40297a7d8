"""`mtv-converter` / `python -m mtv.converter`."""

from __future__ import annotations

import sys

from mtv import topics
from mtv.bus import Publisher
from mtv.converter.service import SERVICE, Converter, ConverterSettings
from mtv.runtime.event_service import run_event_service
from mtv.runtime.settings import load


def main() -> int:
    settings = load(ConverterSettings, SERVICE)
    # Results go out through our own publisher (the event service's one is for the DLQ).
    publisher = Publisher(settings.kafka_bootstrap, client_id=f"mtv-{SERVICE}-results")
    converter = Converter(settings, publisher)
    try:
        return run_event_service(SERVICE, settings, "mtv-converter", [topics.TARGET_REQUESTS],
                                 handlers=converter.handlers())
    finally:
        publisher.close()


if __name__ == "__main__":
    sys.exit(main())
