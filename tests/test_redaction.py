from __future__ import annotations

import pytest

from promoter.redaction import REDACTED, flatten, is_secret_key, redact_flat


def test_nested_config_flattens_to_dotted_keys() -> None:
    assert flatten({"a": {"b": 1, "c": [10, {"d": "x"}]}, "e": None}) == {
        "a.b": 1,
        "a.c.0": 10,
        "a.c.1.d": "x",
        "e": None,
    }


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "params.api_key",
        "s3.access-key",
        "hf_token",
        "db.dsn",
        "vault.secret",
        "AWS_SECRET_ACCESS_KEY",
        "credentials.json",
        "Authorization",
    ],
)
def test_secret_looking_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["keyboard", "monkey", "params.tokenizer_vocab_size", "lr", "data.sha256", "authors"]
)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


def test_redaction_replaces_values_not_keys() -> None:
    assert redact_flat({"params.lr": 0.1, "params.hf_token": "hf_abc"}) == {
        "params.lr": 0.1,
        "params.hf_token": REDACTED,
    }


def test_a_loaded_secret_is_masked_by_value_wherever_it_appears() -> None:
    import logging
    import uuid

    from promoter.redaction import RedactingFilter, redact_text, register_secret_value

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    longer = secret + "-and-more"
    register_secret_value(secret)
    register_secret_value(longer)
    register_secret_value("abc")  # too short to mask safely: ordinary text would be mangled

    assert redact_text(f"token={secret}; other={longer}") == "token=***; other=***"
    assert redact_text("abc stays") == "abc stays"
    assert redact_flat({"endpoint.note": f"use {secret}"}) == {"endpoint.note": "use ***"}

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "connecting with %s", (secret,), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "connecting with ***"
