"""`mtv-planner` / `python -m mtv.planner`."""

from __future__ import annotations

import logging
import sys

from confluent_kafka import KafkaException

from mtv.bus import admin
from mtv.planner.app import PlannerApp
from mtv.planner.settings import ApproverKeys, PlannerSettings
from mtv.planner.state import SERVICE
from mtv.runtime.lifecycle import serve
from mtv.runtime.settings import SettingsError, load

log = logging.getLogger(__name__)


def main() -> int:
    settings = load(PlannerSettings, SERVICE)
    try:
        keys = ApproverKeys(settings.approver_keys_file)
    except ValueError as exc:
        raise SettingsError(f"mtv-{SERVICE}: refusing to start: MTV_APPROVER_KEYS_FILE: {exc}") from None
    try:
        # The planner publishes to topics nobody may have created yet (requests, statuses).
        admin.ensure_topics(settings.kafka_bootstrap, timeout=30.0, quiet=True)
    except KafkaException as exc:
        raise SettingsError(f"mtv-{SERVICE}: cannot reach Kafka at {settings.kafka_bootstrap}: "
                            f"{exc.args[0].str()}") from None
    app = PlannerApp(settings, keys)

    def run(stop: object, mark_ready: object) -> None:
        if not keys.approvers:
            log.warning("no approver keys (MTV_APPROVER_KEYS_FILE): every approval will be rejected")
        app.run(stop, mark_ready)  # type: ignore[arg-type]

    # serve(): JSON logs, /healthz /readyz /metrics, SIGTERM -> stop -> commit after a producer flush.
    return serve(SERVICE, settings, run)


if __name__ == "__main__":
    sys.exit(main())
