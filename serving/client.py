"""What a running inference server says about itself, asked over plain HTTP.

Shared by everything that must check what an address really serves rather than what was asked of
it: the local blue/green rollout, and the operator's check of a Rollout's preview and active Services.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON body of a 200 answer, else None (not listening, not ready, or not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            document = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return document if isinstance(document, dict) else None


def served_version(address: str) -> str | None:
    """The exact model version the server at `address` (http://host:port) answers with."""
    metadata = get_json(f"{address}/metadata")
    return str(metadata["version"]) if metadata and metadata.get("version") is not None else None
