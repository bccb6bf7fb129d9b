"""Keep secrets out of everything the platform records (MLflow params, logs, status, events).

Two nets: by key name (`api_key`, `db.password`, ...) for configuration, and by value for every
secret this process loaded from Vault (the secrets module registers them), so a secret that slips
into a message, an exception text or a param under an innocent name is masked too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# Matched against each dotted/underscored segment group, so `api_key` and `db.password` match but
# `keyboard_layout` and `monkey` do not.
_SECRET_KEY = re.compile(
    r"(?:^|[._-])(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"secret[_-]?key|credentials?|auth|authorization|session[_-]?key|dsn)(?:$|[._-])",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists become dotted keys (`a.b.0.c`), the shape MLflow params need."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, path))
        elif isinstance(value, list | tuple):
            flat.update(flatten({str(i): item for i, item in enumerate(value)}, path))
        else:
            flat[path] = value
    return flat


# Shorter values would mask ordinary words and numbers; Vault secrets are longer than this.
MIN_SECRET_LENGTH = 6
_known_values: set[str] = set()
_lock = threading.Lock()


def register_secret_value(value: str) -> None:
    if len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _known_values.add(value)


def redact_text(text: str) -> str:
    """`text` with every loaded secret value replaced; longest first, so no fragment survives."""
    with _lock:
        values = sorted(_known_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: REDACTED if is_secret_key(key) else (redact_text(value) if isinstance(value, str) else value)
        for key, value in flat.items()
    }


class RedactingFilter(logging.Filter):
    """Masks loaded secret values in every record a handler emits (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put the filter on the handlers of `logger` (default: root); records from every logger pass there."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
