"""Keys never reach a log line: a logging filter that masks API keys in query strings (`?token=`, which screens
must use because browsers cannot set headers on a WebSocket), in Authorization values and in salespulse's own
key format, installed on every handler the services log through, uvicorn's access and error logs included."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

__all__ = ["MASK", "RedactSecrets", "install_on_root", "redact", "uvicorn_log_config"]

MASK = "***"
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:token|access_token|api_key|apikey|key)=)[^&\s\"';]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_GENERATED_KEY = re.compile(r"\bsp_[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """`text` with every API key it shows replaced by ***."""
    text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return _GENERATED_KEY.sub(MASK, text)


def _redact_arg(value: Any) -> Any:
    # Numbers stay numbers (uvicorn's access formatter reads the status code as an int); anything whose text
    # would show a key is replaced by its masked text.
    if isinstance(value, int | float) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    masked = redact(text)
    return value if masked == text else masked


class RedactSecrets(logging.Filter):
    """Masks keys in the message, its arguments and any traceback before a handler formats the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _redact_arg(arg) for name, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with the filter on each of its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": f"{__name__}.RedactSecrets"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config


def install_on_root() -> None:
    """Put the filter on the root logger's handlers, where the services' own loggers end up."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
