"""`loyalty-bridge proxy|worker|migrate|run`. Apps are imported lazily inside each subcommand."""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.logging import configure_logging
from shared.settings import Settings


def _proxy(settings: Settings) -> None:
    # Checked first so a missing variable is a clear exit 2, not a failed application start-up.
    settings.require_admin_api_key()
    settings.require_database_url()
    settings.require_redis_url()
    import uvicorn

    from proxy.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


def _worker(settings: Settings) -> None:
    from worker.main import run_worker

    settings.require_redis_url()
    settings.require_database_url()
    asyncio.run(run_worker(settings))


def _migrate(settings: Settings) -> None:
    from shared.migrate import upgrade_to_head

    upgrade_to_head(settings.require_database_url())
    print("database is at the latest migration")


def _run(settings: Settings) -> None:
    from shared.dev.local_run import run_everything

    run_everything(settings)


COMMANDS = {
    "proxy": (_proxy, "serve the HTTP APIs (Firehose, outbound, admin, health)"),
    "worker": (_worker, "run the arq worker (inbound processing, outbound delivery, resends, retention)"),
    "migrate": (_migrate, "upgrade the database to the latest migration (idempotent)"),
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
    configure_logging(settings.log_level)
    try:
        COMMANDS[args.command][0](settings)
    except RuntimeError as exc:
        print(f"loyalty-bridge {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
