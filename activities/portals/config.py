"""Portal configuration: one entry per portal name (a customer's channel), from a TOML file named by
CASHCYCLE_PORTALS_FILE or from a mapping.

    [portals.initech-ariba]
    channel = "cxml"
    url = "https://service.ariba.example/cxml"
    from_identity = "AN01000000001"
    to_identity = "AN02000000002"
    shared_secret = "env:INITECH_ARIBA_SECRET"    # read from that environment variable

Secrets are `SecretStr` (their repr is masked) and are best given as `env:VARIABLE`, so that the file
itself can be reviewed and versioned without them. They travel only in the requests they authenticate.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, TypeAdapter, ValidationInfo

from activities.portals.base import HttpOptions
from activities.portals.status import ReasonCode

PORTALS_FILE_ENV = "CASHCYCLE_PORTALS_FILE"


def _secret_from_env(value: Any, info: ValidationInfo) -> Any:
    """`env:NAME` means the value of environment variable NAME (from the validation context's `environ`
    when given, for tests). The error names the variable, never a value."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        environ: Mapping[str, str] = (info.context or {}).get("environ", os.environ)
        if name not in environ:
            raise ValueError(f"environment variable {name} is not set")
        return environ[name]
    return value


Secret = Annotated[SecretStr, BeforeValidator(_secret_from_env)]


class _Portal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_seconds: float = Field(default=30.0, gt=0)
    verify_tls: bool = True
    # This portal instance's own reason codes, onto the normalised ones (Coupa dispute reasons and
    # Ariba rejection codes are configured per customer).
    reason_codes: dict[str, ReasonCode] = Field(default_factory=dict)

    def http_options(self) -> HttpOptions:
        return HttpOptions(timeout_seconds=self.timeout_seconds, verify_tls=self.verify_tls)

    def extra_reason_codes(self) -> dict[str, str]:
        return {code: reason.value for code, reason in self.reason_codes.items()}


class CxmlPortal(_Portal):
    """Ariba-style cXML: InvoiceDetailRequest POSTed to `url`; statuses pushed to us as
    StatusUpdateRequest (follow_up "push") or fetched with GetPendingRequest (follow_up "poll")."""

    channel: Literal["cxml"]
    url: str
    from_identity: str  # the supplier (us) on the network
    to_identity: str  # the buyer
    sender_identity: str = ""  # who authenticates: defaults to from_identity
    from_domain: str = "NetworkId"
    to_domain: str = "NetworkId"
    sender_domain: str = "NetworkId"
    shared_secret: Secret
    # The secret the portal presents in its own pushes to us; unset: pushes are not authenticated here
    # (then the API endpoint in front must do it).
    push_shared_secret: Secret | None = None
    deployment_mode: Literal["production", "test"] = "production"
    follow_up: Literal["push", "poll"] = "push"
    user_agent: str = "Cashcycle"


class CoupaPortal(_Portal):
    """Coupa-style REST: OAuth2 client credentials, JSON invoices, statuses polled by updated_at."""

    channel: Literal["coupa"]
    base_url: str
    client_id: str
    client_secret: Secret
    scope: str = "core.invoice.read core.invoice.write"
    token_path: str = "/oauth2/token"
    invoices_path: str = "/api/invoices"
    page_size: int = Field(default=50, ge=1, le=500)
    # What this customer's instance means by "disputed": a dispute (it contests the invoice and wants a
    # credit; the default), or a rejection (it sends invoices back that way for a fix and a resubmission).
    disputed_status: Literal["disputed", "rejected"] = "disputed"


class PeppolPortal(_Portal):
    """A Peppol access point's HTTP API: UBL in, Invoice Responses out (inbox polled, or pushed)."""

    channel: Literal["peppol"]
    base_url: str
    api_key: Secret
    # Participant ids "scheme:value" (e.g. "0088:5790000435968"); default: the document's endpoints.
    sender_id: str = ""
    receiver_id: str = ""
    webhook_secret: Secret | None = None  # HMAC key of pushed Invoice Responses
    follow_up: Literal["push", "poll"] = "poll"


class EmailPortal(_Portal):
    """The PDF by e-mail to the customer's billing address (SMTP settings are the worker's)."""

    channel: Literal["email"]


PortalConfig = Annotated[
    CxmlPortal | CoupaPortal | PeppolPortal | EmailPortal, Field(discriminator="channel")
]
_PORTALS = TypeAdapter(dict[str, PortalConfig])


def portals_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, PortalConfig]:
    """{portal name: config}; pydantic's ValidationError names the portal and the field at fault."""
    context = {"environ": environ} if environ is not None else None
    return _PORTALS.validate_python(dict(data), context=context)


def load_portals(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, PortalConfig]:
    """The portals of the TOML file at `path` (default: $CASHCYCLE_PORTALS_FILE); none when unset."""
    env = os.environ if environ is None else environ
    if path is None:
        named = env.get(PORTALS_FILE_ENV, "")
        if not named:
            return {}
        path = Path(named)
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return portals_from_mapping(data.get("portals", {}), env)
