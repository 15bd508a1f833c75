"""The Prometheus alert rules against their promtool unit tests (deploy/prometheus/alerts_test.yaml),
and those tests against deliberately broken rules, so that they are known to catch a broken rule."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    # `make test` has installed it already; the script is idempotent and prints its directory.
    out = subprocess.run(
        [str(ROOT / "scripts" / "ensure-tools.sh"), "promtool"], check=True, capture_output=True, text=True
    ).stdout
    return str(Path(out.strip().splitlines()[-1]) / "promtool")


def promtool_test(promtool: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"], cwd=directory, capture_output=True, text=True, timeout=120
    )


def test_rules_are_valid_and_pass_their_unit_tests(promtool):
    check = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=RULES, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    result = promtool_test(promtool, RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("max by (priority) (loyalty_bridge_queue_oldest_age_seconds)", "max(loyalty_bridge_queue_oldest_age_seconds)"),
        ("[10m])) > 0.2", "[10m])) > 0.5"),
        ('up{job=~".*loyalty-bridge-worker.*"} == 0', 'up{job=~".*loyalty-bridge.*"} == 0'),
        ("loyalty_bridge_spool_size > 0", "loyalty_bridge_spool_size > 20"),
        ('{status=~"5.."}', '{status="500"}'),
    ],
)
def test_a_broken_rule_fails_the_unit_tests(promtool, tmp_path, original, broken):
    rules = (RULES / "alerts.yaml").read_text()
    assert rules.count(original) == 1
    (tmp_path / "alerts.yaml").write_text(rules.replace(original, broken))
    shutil.copy(RULES / "alerts_test.yaml", tmp_path)
    result = promtool_test(promtool, tmp_path)
    assert result.returncode != 0, f"the unit tests still pass with {broken!r}"
    assert "FAILED" in result.stdout + result.stderr
