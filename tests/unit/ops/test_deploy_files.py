"""The deploy files (deploy/compose.yaml, deploy/Dockerfile), checked as files (the built wheel
itself: tests/integration/ops/test_packaging.py)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class TestDeployFiles:
    """Docker is not available to the tests: check what can be checked without it."""

    def test_compose_runs_migrate_first_and_passes_only_known_settings(self) -> None:
        import yaml

        from shared.settings import Settings

        compose = yaml.safe_load((PROJECT_ROOT / "deploy/compose.yaml").read_text())
        services = compose["services"]
        assert set(services) == {"postgres", "redis", "migrate", "proxy", "worker"}
        for name in ("proxy", "worker"):
            assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services["migrate"]["command"] == ["migrate"]
        assert "--appendonly" in services["redis"]["command"]
        bridge_environment = services["proxy"]["environment"]
        assert set(bridge_environment) <= {name.upper() for name in Settings.model_fields}
        assert bridge_environment["ADMIN_API_KEY"].startswith("${ADMIN_API_KEY:?")

    def test_image_copies_every_package_the_distribution_ships(self) -> None:
        import tomllib

        dockerfile = (PROJECT_ROOT / "deploy/Dockerfile").read_text()
        packages = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
        for pattern in packages["find"]["include"]:
            package = pattern.rstrip("*")
            assert f"COPY {package} ./{package}" in dockerfile
        assert 'ENTRYPOINT ["loyalty-bridge"]' in dockerfile
        assert "USER 10001" in dockerfile
        assert "/healthz" in dockerfile
