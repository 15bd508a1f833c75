"""One Settings object, read from the contract's environment names and passed explicitly."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.outbound.hosts import AllowedHosts
from shared.secret_box import SecretBox, SecretKeyError, secret_box_for

DEFAULT_QUEUE_NAME = "loyalty-bridge:queue"


class Settings(BaseSettings):
    """Process configuration. Field names map to the environment variables of CONTRACT §1."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    admin_api_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    mparticle_caller_token: SecretStr | None = None
    max_request_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    outbound_retry_base_seconds: float = Field(default=10.0, ge=0)
    outbound_max_resends: int = Field(default=5, ge=0)
    outbound_timeout_seconds: float = Field(default=10.0, gt=0)
    error_log_retention_days: int = Field(default=90, gt=0)
    config_cache_seconds: float = Field(default=1.0, gt=0)
    # Comma-separated, newest first; each at least 32 characters (shared/secret_box.py).
    secret_key: SecretStr | None = None
    # Host patterns api_url may name besides https://*.mparticle.com (shared/outbound/hosts.py).
    outbound_allowed_hosts: str = ""
    # Per tenant and per proxy process: a token bucket refilled at this rate, holding `burst` calls.
    outbound_rate_limit_per_second: float = Field(default=1000.0, gt=0)
    outbound_rate_limit_burst: int = Field(default=2000, gt=0)
    # Not in the contract: lets several deployments (or test runs) share one Redis.
    queue_name: str = DEFAULT_QUEUE_NAME
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Benchmark suite only: exposes POST /bench/parse-only, the proxy's ceiling route.
    enable_bench_routes: bool = False

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else value

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the missing variable."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is required (postgresql://user@host:5432/dbname)")
        return self.database_url

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error naming the missing variable."""
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is required (redis://host:6379/0)")
        return self.redis_url

    def require_admin_api_key(self) -> str:
        """The admin key, or a clear error naming the missing variable."""
        if self.admin_api_key is None or not self.admin_api_key.get_secret_value():
            raise RuntimeError("ADMIN_API_KEY is required for the proxy")
        return self.admin_api_key.get_secret_value()

    def require_secret_key(self) -> None:
        """Check SECRET_KEY now, so a missing or short key is a clear start-up error."""
        self.secret_box()

    def secret_box(self) -> SecretBox:
        """The SecretBox of SECRET_KEY (built once per process); RuntimeError when missing or short."""
        value = self.secret_key.get_secret_value() if self.secret_key is not None else None
        try:
            return secret_box_for(value or "")
        except SecretKeyError as exc:
            raise RuntimeError(str(exc)) from None

    def allowed_outbound_hosts(self) -> AllowedHosts:
        """OUTBOUND_ALLOWED_HOSTS parsed; RuntimeError names a malformed pattern."""
        try:
            return _parse_allowed_hosts(self.outbound_allowed_hosts)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None


@functools.lru_cache(maxsize=8)
def _parse_allowed_hosts(value: str) -> AllowedHosts:
    return AllowedHosts.parse(value)


def normalize_database_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` URLs and select the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql:// or postgresql+asyncpg://")


def plain_database_url(url: str) -> str:
    """The same URL in the libpq form that asyncpg.connect() accepts."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
