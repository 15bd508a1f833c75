"""Work is dequeued by priority (lower first), then arrival order: a backlog built while no worker
runs is applied in that order (the ledger's recorded order shows it)."""

from __future__ import annotations

from tests.factories import make_tenant
from tests.inbound_helpers import AdminReader, custom_event, event_request, post_firehose, refresh_configs

PRIORITIES = {"urgent": 1, "normal": 50, "later": 900}
# Interleaved arrivals: names repeat so every priority has ties to keep in arrival order.
ARRIVALS = ["later", "normal", "urgent", "later", "urgent", "normal", "normal", "later", "urgent", "later", "normal"]


async def test_backlog_is_applied_by_priority_then_arrival(
    app, client, sessionmaker, admin_headers, drain_queue
) -> None:
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[
            {"loyalty_event": name, "event_type": "custom_event", "event_name": name, "priority": priority}
            | {"attributes": {"arrival": "{arrival}"}}
            for name, priority in PRIORITIES.items()
        ],
    )
    await refresh_configs(app)
    for arrival, name in enumerate(ARRIVALS):
        payload = event_request(tenant, custom_event(name, {"arrival": arrival}), customer="C-prio")
        assert (await post_firehose(client, payload)).status_code == 200

    await drain_queue()

    ledger = await AdminReader(client, admin_headers, tenant.id).ledger("C-prio")
    applied = [(entry["action"], entry["data"]["arrival"]) for entry in ledger]
    expected = sorted(enumerate(ARRIVALS), key=lambda item: (PRIORITIES[item[1]], item[0]))
    assert applied == [(name, arrival) for arrival, name in expected]
    assert [name for name, _ in applied] == ["urgent"] * 3 + ["normal"] * 4 + ["later"] * 4
