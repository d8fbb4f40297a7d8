"""`mtv-planner` / `python -m mtv.planner`."""

from __future__ import annotations

import logging
import sys

import faust

from mtv.planner.app import SERVICE, build_app
from mtv.runtime import logging as mtv_logging
from mtv.runtime.metrics import HealthServer
from mtv.runtime.settings import ServiceSettings, load

log = logging.getLogger(__name__)


class PlannerSettings(ServiceSettings):
    pass


def main() -> int:
    settings = load(PlannerSettings, SERVICE)
    mtv_logging.setup(SERVICE, settings.log_level)
    ready = {"assigned": False}
    health = HealthServer(settings.http_host, settings.http_port, lambda: ready["assigned"])
    health.start()
    log.info("health endpoint on http://%s:%d", settings.http_host, health.port)
    app = build_app(settings, handlers={}, on_assigned=lambda: ready.update(assigned=True))
    # faust's worker turns SIGTERM into a graceful stop: the agent finishes its event, offsets commit.
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        health.stop()
    log.info("%s stopped (exit %d)", SERVICE, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
