"""Without the otel extra (the SDK and the OTLP exporter), tracing stays off even with an OTLP
endpoint set, and the worker imports nothing of OpenTelemetry: a real interpreter in which those
imports fail. (FastAPI itself imports opentelemetry-api, so the proxy has that one anyway.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import importlib.abc, sys

class WithoutTheExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, WithoutTheExtra())

from shared.observability import tracing
import worker.main  # noqa: F401
assert not any(name.startswith("opentelemetry") for name in sys.modules), "the worker imported OpenTelemetry"
assert tracing.configure_tracing_from_environment("loyalty-bridge-worker") is False
assert tracing.current_traceparent() is None

from shared.settings import Settings
from proxy.app import create_app
create_app(Settings(admin_api_key="k" * 30, secret_key="s" * 40, database_url="postgresql://u@h/d", redis_url="redis://h"))
assert not tracing.tracing_enabled()
print("tracing off")
"""


def test_without_the_extra_tracing_is_off_and_not_imported() -> None:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tracing off"
