"""One entry point per service process: settings, logging, health, and SIGTERM -> graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from mtv.runtime import logging as mtv_logging
from mtv.runtime.metrics import HealthServer
from mtv.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT; the service finishes its current message and exits."""
    stop = threading.Event()

    def _handle(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current message", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    return stop


def serve(
    service: str,
    settings: ServiceSettings,
    run: Callable[[threading.Event, Callable[[], None]], None],
) -> int:
    """Run `run(stop, mark_ready)` with logging and a health endpoint; return the exit code."""
    mtv_logging.setup(service, settings.log_level)
    ready = threading.Event()
    health = HealthServer(settings.http_host, settings.http_port, ready.is_set)
    health.start()
    # Printed (and logged) so `make up` and tests can find the endpoint of a port-0 service.
    log.info("health endpoint on http://%s:%d", settings.http_host, health.port,
             extra={"event_type": "health_endpoint"})
    stop = stop_on_signals()
    try:
        run(stop, ready.set)
    except Exception:
        log.exception("%s stopped on an error", service)
        return 1
    finally:
        health.stop()
    log.info("%s stopped cleanly", service)
    return 0
