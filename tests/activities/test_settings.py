"""The settings object: environment variables, the secrets refused in production, and the store URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.settings import DEFAULT_SECRET, Settings

STRONG_SECRET = "k3Jv9xQ2mT7pL0sW8yB4nR6cF1hD5gZa"  # 32 characters
SIGNING_KEY = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 test 1


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment: start every test from none of ours."""
    for name in list(os.environ):
        if name.startswith(("CASHCYCLE_", "TEMPORAL_")):
            monkeypatch.delenv(name)


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="CASHCYCLE_SECRET_KEY"):
        Settings()


def test_production_refuses_a_secret_shorter_than_32_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", "production")
    monkeypatch.setenv("CASHCYCLE_SECRET_KEY", STRONG_SECRET[:31])
    with pytest.raises(ValidationError, match="32"):
        Settings()


def test_production_refuses_to_run_without_a_ledger_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", "production")
    monkeypatch.setenv("CASHCYCLE_SECRET_KEY", STRONG_SECRET)
    with pytest.raises(ValidationError, match="CASHCYCLE_LEDGER_SIGNING_KEY"):
        Settings()


def test_production_accepts_a_secret_of_32_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", "production")
    monkeypatch.setenv("CASHCYCLE_SECRET_KEY", STRONG_SECRET)
    monkeypatch.setenv("CASHCYCLE_LEDGER_SIGNING_KEY", SIGNING_KEY)
    settings = Settings()
    assert (settings.environment, settings.secret_key) == ("production", STRONG_SECRET)


@pytest.mark.parametrize("environment", ["development", "demo", "test"])
@pytest.mark.parametrize("secret", [None, "short"])
def test_development_demo_and_test_accept_the_default_and_short_secrets(
    monkeypatch: pytest.MonkeyPatch, environment: str, secret: str | None
) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", environment)
    if secret is not None:
        monkeypatch.setenv("CASHCYCLE_SECRET_KEY", secret)
    settings = Settings()
    assert settings.environment == environment
    assert settings.secret_key == (secret or DEFAULT_SECRET)


def test_the_default_environment_is_development() -> None:
    assert Settings().environment == "development"


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="environment"):
        Settings()


def test_temporal_address_and_namespace_come_from_temporals_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "cashcycle-prod")
    settings = Settings()
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.temporal_namespace == "cashcycle-prod"


def test_temporal_address_and_namespace_also_come_from_prefixed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASHCYCLE_TEMPORAL_ADDRESS", "10.0.0.5:7233")
    monkeypatch.setenv("CASHCYCLE_TEMPORAL_NAMESPACE", "staging")
    settings = Settings()
    assert (settings.temporal_address, settings.temporal_namespace) == ("10.0.0.5:7233", "staging")


def test_temporal_defaults_are_empty_address_and_default_namespace() -> None:
    settings = Settings()
    assert (settings.temporal_address, settings.temporal_namespace) == ("", "default")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://app:s3cret@db.internal:5432/cashcycle",
            "postgresql+psycopg://app:s3cret@db.internal:5432/cashcycle",
        ),
        (
            "postgresql://app@db.internal/cashcycle?sslmode=require",
            "postgresql+psycopg://app@db.internal/cashcycle?sslmode=require",
        ),
        ("postgresql+psycopg://app@db/cashcycle", "postgresql+psycopg://app@db/cashcycle"),
        ("sqlite:////var/lib/cashcycle/store.db", "sqlite:////var/lib/cashcycle/store.db"),
    ],
)
def test_database_url_spellings_map_to_the_psycopg_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("CASHCYCLE_DATABASE_URL", given)
    assert Settings().sqlalchemy_url == expected


def test_the_default_store_is_an_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CASHCYCLE_DATA_DIR", str(tmp_path / "data"))
    assert Settings().sqlalchemy_url == f"sqlite:///{tmp_path / 'data' / 'cashcycle.db'}"


def test_the_default_data_dir_is_dot_cashcycle_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / '.cashcycle' / 'cashcycle.db'}"


def test_a_relative_data_dir_becomes_an_absolute_sqlite_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASHCYCLE_DATA_DIR", "var/store")
    url = Settings().sqlalchemy_url
    assert url == f"sqlite:///{tmp_path.resolve() / 'var' / 'store' / 'cashcycle.db'}"
    assert Path(url.removeprefix("sqlite:///")).is_absolute()


def test_prefixed_variables_set_the_other_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASHCYCLE_TASK_QUEUE", "billing")
    monkeypatch.setenv("CASHCYCLE_TOKEN_MINUTES", "15")
    monkeypatch.setenv("CASHCYCLE_SMTP_STARTTLS", "true")
    settings = Settings()
    assert (settings.task_queue, settings.token_minutes, settings.smtp_starttls) == ("billing", 15, True)
