"""Schemathesis over the proxy's own OpenAPI document, in process against the ASGI app, with every
check it has: no 5xx, every status documented, responses (errors too) match their schemas, valid
input accepted and invalid refused, undeclared methods answered 405 with `Allow`, auth not
ignored, and one tenant's engine key never reaching another tenant's data.

Each operation is fuzzed with generated tenant ids and with the ids of two real tenants (`a`,
whose engine key every outbound call carries, and `b`). Bounded and derandomized: MAX_EXAMPLES
per operation, mode and target, so a run is stable and short. (schemathesis' pytest plugin is not
used: its lazy fixture schema does not work with pytest 9.)
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.openapi import from_asgi
from schemathesis.schemas import APIOperation

from tests.conftest import ADMIN_KEY
from tests.fuzz.conftest import FuzzTenants

MAX_EXAMPLES = 6
ENGINE_ROUTES = ("/customer-updates", "/events", "/marketing-communications")

load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())
# Statuses that do not mean "valid input refused" (as schemathesis' positive_data_acceptance).
NOT_A_REJECTION = {401, 403, 404, 409, 429}
# Schema-valid yet refused for reasons JSON Schema cannot state: validity that depends on stored
# state, on the deployment's settings, or on several items at once. Each is a 422 whose message
# holds one of these; any other refusal of schema-valid input fails the run.
UNSTATABLE_REJECTIONS = (
    "invalid cursor",  # an opaque pagination token
    "api_url: ",  # the SSRF policy: OUTBOUND_ALLOWED_HOSTS of the deployment
    "duplicate ",  # unique across the items of a list
    "must not be after",  # a `from` after its `to`
    "NO_IDENTITY",  # the identity fields depend on the tenant's outbound settings
    "go together",  # query parameters that need each other (`attribute` and `value`)
)


def _check_acceptance(response) -> None:
    """positive_data_acceptance, minus UNSTATABLE_REJECTIONS."""
    if response.status_code < 400 or response.status_code >= 500 or response.status_code in NOT_A_REJECTION:
        return
    assert response.status_code == 422 and any(reason in response.text for reason in UNSTATABLE_REJECTIONS), (
        f"schema-valid request refused: {response.status_code} {response.text[:500]}"
    )


def _operations(app: FastAPI) -> list[APIOperation]:
    schema = from_asgi("/openapi.json", app)
    # The operator console is HTML for browsers (tests/browser), not part of the REST contract.
    operations = [result.ok() for result in schema.get_all_operations()]
    return [operation for operation in operations if not operation.path.startswith("/console")]


def _is_engine_call(operation: APIOperation) -> bool:
    return (
        operation.method.upper() == "POST" and "/outbound/" in operation.path and operation.path.endswith(ENGINE_ROUTES)
    )


def _headers(operation: APIOperation, tenants: FuzzTenants) -> dict[str, str]:
    if _is_engine_call(operation):
        return {"Authorization": f"Bearer {tenants.a.engine_api_key}"}
    if operation.path.startswith("/api/v1"):
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    return {}


def _fuzz(operation: APIOperation, mode: GenerationMode, tenant_id: str | None, tenants: FuzzTenants) -> None:
    path_parameters = {"tenant_id": tenant_id} if tenant_id is not None else None
    headers = _headers(operation, tenants)
    checks = [check for check in ALL_CHECKS if check.__name__ != "positive_data_acceptance"]

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call_and_validate(headers=headers, checks=checks)
        if mode is GenerationMode.POSITIVE:
            _check_acceptance(response)
        if _is_engine_call(operation) and tenant_id == tenants.b.id:
            # a's key on b's path: never accepted (403; 401 once the fuzzer rotated a's key).
            assert response.status_code in (401, 403), response.text

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation that takes no input at all (/healthz): nothing to get wrong.
        assert mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters())
        return


def _targets(operation: APIOperation, tenants: FuzzTenants) -> list[str | None]:
    if "{tenant_id}" not in operation.path:
        return [None]
    return [None, tenants.a.id, tenants.b.id]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_every_operation_keeps_its_openapi_promises(fuzz_app: FastAPI, fuzz_tenants: FuzzTenants, mode) -> None:
    failures: list[str] = []
    operations = _operations(fuzz_app)
    assert len(operations) >= 30  # the whole REST surface, not an empty document
    for operation in operations:
        for tenant_id in _targets(operation, fuzz_tenants):
            try:
                _fuzz(operation, mode, tenant_id, fuzz_tenants)
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures, report all
                target = "generated" if tenant_id is None else ("a" if tenant_id == fuzz_tenants.a.id else "b")
                failures.append(f"{operation.method.upper()} {operation.path} [{target}]: {exc}")
    assert not failures, "\n\n".join(failures)
