"""Keep secrets out of everything the platform records (MLflow params, logs, status, events).

Redaction is by key name here; the secrets module adds redaction by value for secrets it loaded.
"""

from __future__ import annotations

import re
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


def redact_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {key: (REDACTED if is_secret_key(key) else value) for key, value in flat.items()}
