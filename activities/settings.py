"""The one settings object: environment variables (prefix CASHCYCLE_, plus Temporal's own names).

Outside the demo and development environments it refuses to run with the default secrets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "cashcycle-development-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASHCYCLE_", extra="ignore")

    environment: Literal["development", "demo", "test", "production"] = "development"
    data_dir: Path = Path(".cashcycle")
    database_url: str = ""  # default: SQLite file in the data dir
    temporal_address: str = Field(
        default="", validation_alias=AliasChoices("TEMPORAL_ADDRESS", "CASHCYCLE_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "CASHCYCLE_TEMPORAL_NAMESPACE")
    )
    task_queue: str = "cashcycle"
    secret_key: str = DEFAULT_SECRET  # signs API tokens
    token_minutes: int = 8 * 60
    # The web UI: how long a browser stays signed in (ended sooner by logout or by disabling the user).
    session_minutes: int = 8 * 60
    # The web UI's address as people reach it: the links in reminder and escalation mails.
    ui_base_url: str = "http://127.0.0.1:8000"
    # Outgoing mail (invoice delivery). `cashcycle up` starts a local capture server when unset.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "billing@cashcycle.local"
    # Durations the invoice workflow waits for (architecture rule 6).
    record_timeout_seconds: float = 30.0
    delivery_timeout_seconds: float = 60.0
    delivery_retry_max_interval_seconds: float = 300.0
    approval_matrix_file: str = ""  # default: policies/approval_matrix.toml
    approval_reminder_seconds: float = 24 * 3600.0
    approval_escalation_seconds: float = 72 * 3600.0
    max_body_bytes: int = 1_000_000
    # The control tower: the service levels (TOML; default policies/sla.toml) and the Temporal Web UI its
    # rows link to (`cashcycle up` sets it for the dev server it starts; empty: no links).
    sla_file: str = ""
    temporal_ui_url: str = ""
    # Evidence: the Ed25519 key that signs ledger checkpoints (32-byte seed, hex or base64), the public keys
    # of earlier (rotated) signing keys still trusted for old checkpoints (hex, comma-separated), and when
    # the checkpoint schedule runs (cron, UTC; daily by default).
    ledger_signing_key: str = ""
    ledger_trusted_keys: str = ""
    checkpoint_cron: str = "0 1 * * *"
    # Customer portals: their configuration (TOML; secrets as env:VAR), and how often pulled portals
    # (Coupa-style) are polled for status updates.
    portals_file: str = ""
    portal_poll_seconds: float = 300.0
    update_timeout_seconds: float = 30.0
    # Workflow code runs without Temporal's sandbox unless this is set (see worker.workflow_runner): the
    # sandbox re-checks at run time what tests/workflows/test_determinism.py checks in the source and the
    # workflow tests (sandboxed) and replay tests check by running, at a third of the worker's CPU.
    workflow_sandbox: bool = False

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            if self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise ValueError(
                    "CASHCYCLE_SECRET_KEY must be set to a random value of 32+ characters in production"
                )
            if not self.ledger_signing_key:
                raise ValueError(
                    "CASHCYCLE_LEDGER_SIGNING_KEY must be set in production: a 32-byte Ed25519 seed, hex "
                    "or base64 (e.g. `python -c 'import os; print(os.urandom(32).hex())'`)"
                )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the usual spellings and use the psycopg 3 driver we ship.
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.data_dir / 'cashcycle.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
