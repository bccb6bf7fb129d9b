"""What every component's settings class shares: read from the environment, errors name the variable.

Each component declares its own settings class next to its code (the operator in
`promoter.operator.settings`, the inference server in `promoter.serving.settings`, Vault in
`promoter.secrets`), each with one environment prefix. This module holds only what they share, so
that a bad value reads the same everywhere: `PROMOTER_OPERATOR_RECONCILE_SECONDS: Input should be a
valid number`, never a pydantic traceback about a field the user never heard of. Values are left
out of the message on purpose: settings are never secrets, but a secret pasted into the wrong
variable must not reach a log.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """The environment configures a component wrongly; the message names each bad variable."""


class EnvSettings(BaseSettings):
    """A component's settings; subclasses set `env_prefix` (and aliases for third-party names)."""

    # An empty variable counts as unset (a manifest's `value: ""` must not become an empty role);
    # variables of other components in the same environment are none of this class's business.
    model_config = SettingsConfigDict(
        frozen=True, env_ignore_empty=True, extra="ignore", validate_by_name=True
    )

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """The settings from the environment, `overrides` (e.g. command-line options) winning."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError("; ".join(cls._describe(error) for error in exc.errors())) from None

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable a field is read from."""
        alias = cls.model_fields[field_name].validation_alias
        if isinstance(alias, str):
            return alias
        return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()

    @classmethod
    def _describe(cls, error: Any) -> str:
        # pydantic reports a field read through an alias (MLFLOW_TRACKING_URI) by that alias
        name = str(error["loc"][0]) if error["loc"] else cls.__name__
        where = cls.variable(name) if name in cls.model_fields else name
        if error["type"] == "missing":
            return f"{where} is not set"
        return f"{where}: {error['msg']}"
