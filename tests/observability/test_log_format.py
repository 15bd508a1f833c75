"""Log lines: JSON objects (or console text) with the bound context, for our records and the
standard library's alike, and fields named like a secret never written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.logging import bind_log_context, bound_log_context, clear_log_context, configure_logging, get_logger


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put pytest's handlers and structlog back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    yield
    clear_log_context()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**structlog_config)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_the_event_name_fields_and_bound_context(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logger = get_logger("worker.inbound.consumer")
    bind_log_context(batch_id="b-1")
    with bound_log_context(tenant_id="acme", request_id="r-9"):
        logger.info("firehose_batch_applied", requests=3, ledger_events=5)
    logger.debug("not_at_this_level")
    [line] = _json_lines(capsys.readouterr().err)
    assert line["event"] == "firehose_batch_applied"
    assert line["level"] == "info"
    assert line["logger"] == "worker.inbound.consumer"
    assert (line["tenant_id"], line["request_id"], line["batch_id"]) == ("acme", "r-9", "b-1")
    assert (line["requests"], line["ledger_events"]) == (3, 5)
    assert line["timestamp"].endswith("Z")


def test_standard_library_and_uvicorn_records_are_json_too(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    with bound_log_context(tenant_id="acme"):
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("arq.worker").warning("job %s took %.1fs", "deliver_outbound", 2.5)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("shared.x").exception("failed")
    uvicorn_line, arq_line, failure = _json_lines(capsys.readouterr().err)
    assert uvicorn_line["event"] == "Application startup complete."
    assert uvicorn_line["logger"] == "uvicorn.error"
    assert uvicorn_line["tenant_id"] == "acme"
    assert arq_line["event"] == "job deliver_outbound took 2.5s"
    assert arq_line["level"] == "warning"
    assert failure["exception"][0]["exc_type"] == "ValueError"


@pytest.mark.parametrize(
    "field",
    ["token", "authentication_token", "api_secret", "api_key", "authorization", "payload", "body", "password"],
)
def test_fields_named_like_secrets_are_redacted(
    restore_logging: None, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    configure_logging("INFO", "json")
    get_logger("proxy").warning("suspicious_call", **{field: "s3cr3t-value"}, tenant_id="acme")
    output = capsys.readouterr().err
    assert "s3cr3t-value" not in output
    [line] = _json_lines(output)
    assert line[field] == "[redacted]"
    assert line["tenant_id"] == "acme"


def test_console_format_is_for_people(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console")
    get_logger("proxy").info("tenant_created", tenant_id="acme")
    output = capsys.readouterr().err.strip()
    assert "tenant_created" in output and "tenant_id=acme" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_without_configuration_records_reach_the_standard_library(caplog: pytest.LogCaptureFixture) -> None:
    """Tests and embedding code see our event lines through ordinary logging handlers (caplog)."""
    caplog.set_level(logging.INFO)
    with bound_log_context(tenant_id="acme"):
        get_logger("worker.outbound.jobs").info("outbound_run_finished", delivered=3, api_secret="zzz")
    [record] = caplog.records
    assert record.name == "worker.outbound.jobs"
    assert record.getMessage() == "outbound_run_finished"
    fields = vars(record)
    assert (fields["delivered"], fields["tenant_id"], fields["api_secret"]) == (3, "acme", "[redacted]")
