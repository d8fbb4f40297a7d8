"""Typed settings read once from the environment (prefix MTV_) at start-up.

A missing or invalid setting stops the service before it connects anywhere, with a message
naming the environment variable.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service has. Services subclass it for their own."""

    model_config = SettingsConfigDict(env_prefix="MTV_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    http_host: str = Field("127.0.0.1", description="address of the metrics/health endpoint")
    http_port: int = Field(0, description="port of the metrics/health endpoint (0 = any free port)")
    log_level: str = "INFO"
    max_message_bytes: int = 1024 * 1024
    instance_id: str = ""


class SettingsError(SystemExit):
    """Refuse to start: raised as SystemExit so the message is printed without a traceback."""


S = TypeVar("S", bound=ServiceSettings)


def load(cls: type[S], service: str) -> S:
    try:
        return cls()  # type: ignore[call-arg]
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = []
        for err in exc.errors():
            name = f"{prefix}{'_'.join(str(p) for p in err['loc'])}".upper()
            problems.append(f"{name}: {'not set' if err['type'] == 'missing' else err['msg']}")
        raise SettingsError(f"mtv-{service}: refusing to start: " + "; ".join(problems)) from None
