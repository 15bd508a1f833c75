"""`loyalty-bridge proxy|worker|migrate|run`. Apps are imported lazily inside each subcommand."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from shared.logging import configure_logging
from shared.settings import Settings

# How uvicorn serves the proxy; the bench starts its ceiling app (bench/ceiling_app.py) with the same.
PROXY_SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "proxy_headers": True,
    "timeout_graceful_shutdown": 10,
}


def _proxy(settings: Settings) -> None:
    # Checked first so a missing variable is a clear exit 2, not a failed application start-up.
    settings.require_admin_api_key()
    settings.require_database_url()
    settings.require_redis_url()
    settings.require_secret_key()
    settings.allowed_outbound_hosts()
    import uvicorn

    from proxy.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through configure_logging's handler (LOG_FORMAT)
        **PROXY_SERVER_OPTIONS,
    )


def _worker(settings: Settings) -> None:
    import uvloop

    from worker.main import run_worker

    settings.require_redis_url()
    settings.require_database_url()
    settings.require_secret_key()
    settings.allowed_outbound_hosts()
    # The proxy's event loop too (PROXY_SERVER_OPTIONS; uvloop comes with uvicorn[standard]): about
    # a tenth of the worker's CPU was the standard loop's selector and callback machinery (py-spy).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_worker(settings))


def _migrate(settings: Settings) -> None:
    from shared.migrate import upgrade_to_head, wait_for_database

    database_url = settings.require_database_url()
    settings.require_secret_key()  # the data migrations encrypt stored secrets with it
    wait_for_database(database_url)  # a database still starting (deploys, compose) is waited for
    upgrade_to_head(database_url, settings.secret_key)
    print("database is at the latest migration")


def _rotate_secrets(settings: Settings) -> None:
    from shared.db import create_engine, create_sessionmaker
    from shared.secret_box import SecretUnreadable
    from shared.tenants.secrets_rotation import rotate_secrets

    settings.require_database_url()
    box = settings.secret_box()

    async def rotate() -> None:
        engine = create_engine(settings, application_name="loyalty-bridge-rotate-secrets")
        try:
            report = await rotate_secrets(create_sessionmaker(engine), box)
        except SecretUnreadable as exc:
            raise RuntimeError(exc.message) from None
        finally:
            await engine.dispose()
        print(
            f"checked {report.tenants_checked} tenants: re-encrypted {report.tokens_rotated} inbound tokens and"
            f" {report.api_secrets_rotated} S2S secrets with the newest SECRET_KEY"
            + ("; older keys may now be removed from SECRET_KEY" if box.key_count > 1 else "")
        )

    asyncio.run(rotate())


def _run(settings: Settings) -> None:
    from shared.dev.local_run import run_everything

    run_everything(settings)


COMMANDS = {
    "proxy": (_proxy, "serve the HTTP APIs (Firehose, outbound, admin, health)"),
    "worker": (_worker, "run the arq worker (inbound processing, outbound delivery, resends, retention)"),
    "migrate": (_migrate, "upgrade the database to the latest migration (idempotent)"),
    "rotate-secrets": (_rotate_secrets, "re-encrypt every stored secret with the newest SECRET_KEY (idempotent)"),
    "run": (_run, "embedded PostgreSQL/Redis when the URLs are unset, migrate, proxy + worker"),
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `loyalty-bridge` console script."""
    parser = argparse.ArgumentParser(prog="loyalty-bridge", description="mParticle <-> loyalty bridge")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    settings = Settings()
    # `run` talks to a terminal: console lines unless LOG_FORMAT was given (its children likewise).
    console = args.command == "run" and "log_format" not in settings.model_fields_set
    configure_logging(settings.log_level, "console" if console else settings.log_format)
    try:
        COMMANDS[args.command][0](settings)
    except RuntimeError as exc:
        print(f"loyalty-bridge {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
