"""Process logging: structlog, one line per record on stderr, ours and the libraries' alike.

LOG_FORMAT=json (default) writes one JSON object a line: `timestamp`, `level`, `logger`, `event`
(an event name such as `firehose_batch_applied`) and the record's fields, plus whatever is bound
in the context (`tenant_id`, `request_id`, `message_id`, `batch_id`: bind_log_context).
LOG_FORMAT=console renders the same records for a terminal (`loyalty-bridge run`).

Our own lines (get_logger) are rendered by structlog and written straight to stderr (orjson, no
standard-library record: ~10 µs a line instead of ~80). Libraries that log through the standard
library (uvicorn, arq, SQLAlchemy) go through a root handler rendering the same format.
Until configure_logging runs (tests), our lines go through the standard library instead, so
caplog and any handler see them.

Secrets never reach a line: callers log ids, never payloads, tokens or keys, and, as a second
line of defence, fields named like a credential or a payload are replaced by `[redacted]`.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED_VALUE = "[redacted]"
# Field names (lower case, substrings) whose values are never written.
_SECRET_FIELD_PARTS = ("token", "secret", "password", "api_key", "authorization", "payload", "body", "credential")
# Libraries whose INFO lines are noise (arq: two lines per job, the dispatcher runs every second;
# our own job lines say what happened; alembic: a line per plugin at start), unless LOG_LEVEL=DEBUG.
_QUIET_LOGGERS = ("httpx", "httpcore", "arq.worker", "alembic.runtime.plugins")
# Extras libraries add that only repeat the event (uvicorn's ANSI-coloured copy of its message).
_DROPPED_FIELDS = ("color_message",)
# Where get_logger keeps the module name until _name_the_logger renames it `logger`.
_MODULE_KEY = "_module"

bind_log_context = structlog.contextvars.bind_contextvars
bound_log_context = structlog.contextvars.bound_contextvars
unbind_log_context = structlog.contextvars.unbind_contextvars
clear_log_context = structlog.contextvars.clear_contextvars


def get_logger(name: str) -> Any:
    """The logger of a module: `logger.info("event_name", field=value, ...)`."""
    return structlog.get_logger(**{_MODULE_KEY: name})  # `logger` itself is get_logger's own argument


def _name_the_logger(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if _MODULE_KEY in event_dict:
        event_dict["logger"] = event_dict.pop(_MODULE_KEY)
    return event_dict


@functools.lru_cache(maxsize=1024)
def _is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_FIELD_PARTS)


def _redact_secret_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in _DROPPED_FIELDS:
        event_dict.pop(key, None)
    for key in event_dict:
        if _is_secret_field(key):
            event_dict[key] = REDACTED_VALUE
    return event_dict


def _timestamper() -> Processor:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def _foreign_formatter(log_format: str) -> logging.Formatter:
    """Renders standard-library records (uvicorn, arq, ...) like our own lines."""
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _timestamper(),
        _redact_secret_fields,
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "console":
        final.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        final += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=pre_chain, processors=final)


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send every record of the process, ours and the libraries', to stderr in `log_format`."""
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    processors: list[Processor] = [
        _name_the_logger,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamper(),
        _redact_secret_fields,
        structlog.processors.StackInfoRenderer(),
    ]
    logger_factory: Any
    binary_stderr = getattr(sys.stderr, "buffer", None)
    if log_format == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        logger_factory = structlog.WriteLoggerFactory(file=sys.stderr)
    elif binary_stderr is None:  # a text-only stderr (embedding code replaced it)
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        logger_factory = structlog.WriteLoggerFactory(file=sys.stderr)
    else:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer(serializer=orjson.dumps)]
        logger_factory = structlog.BytesLoggerFactory(file=binary_stderr)
    structlog.configure(
        processors=processors,
        logger_factory=logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_foreign_formatter(log_format))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if numeric_level > logging.DEBUG else logging.NOTSET)
    # uvicorn and arq configure nothing themselves (uvicorn runs with log_config=None): their
    # loggers propagate to the root handler above.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.setLevel(logging.NOTSET)
        library_logger.propagate = True


def _route_to_standard_library() -> None:
    """Until configure_logging runs (tests, a library import): a structlog call becomes a plain
    standard-library record of the module's logger (the event name as message, the fields as
    record attributes), so caplog and any handler see it."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _redact_secret_fields,
            _to_standard_library_call,
        ],
        logger_factory=_module_logger,
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _module_logger(*_: Any) -> logging.Logger:
    return logging.getLogger("loyalty_bridge")


def _to_standard_library_call(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Log on the module's own standard-library logger (the bound `logger` name)."""
    name = event_dict.pop(_MODULE_KEY, "loyalty_bridge")
    kwargs = structlog.stdlib.render_to_log_kwargs(logger, method_name, event_dict)
    level = logging.getLevelName(method_name.upper())
    if method_name == "exception":
        level = logging.ERROR
        kwargs.setdefault("exc_info", True)
    target = logging.getLogger(name)
    if isinstance(level, int) and target.isEnabledFor(level):
        target.log(level, kwargs.pop("msg"), *kwargs.pop("args", ()), **kwargs)
    raise structlog.DropEvent


if not structlog.is_configured():
    _route_to_standard_library()
