"""Health endpoints and the migration itself, against the real servers."""

from __future__ import annotations

import asyncio
import os
import sys

from shared.migrate import upgrade_to_head


async def test_healthz_answers_without_dependencies(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_both_dependencies_ok(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_is_503_when_redis_is_unreachable(settings) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    from proxy.app import create_app

    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    app = create_app(broken)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["redis"].startswith("unavailable")


async def test_migrate_command_is_idempotent_and_safe_concurrently(database_url, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}

    async def migrate() -> tuple[int, bytes]:
        # From an unrelated directory: the migration scripts ship inside the package.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shared.cli",
            "migrate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return process.returncode or 0, output

    results = await asyncio.gather(migrate(), migrate(), migrate())
    assert [code for code, _ in results] == [0, 0, 0], results
    await asyncio.to_thread(upgrade_to_head, database_url)
