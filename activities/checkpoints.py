"""Signed checkpoints of the evidence ledger, and verification runs that are themselves evidence.

A checkpoint is the head of one legal entity's chain (seq, entry hash) signed with Ed25519 at a moment.
Someone with write access to the database can rewrite the whole chain consistently (every hash
recomputed): the chain then verifies, but no longer matches the checkpoints signed before, and they cannot
sign new ones without the key, which lives in configuration, not in the database.

Signed message (version 1): the canonical JSON of
    {"v": 1, "legal_entity", "seq", "entry_hash", "signed_at", "key_id"}
where key_id is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import Store, reading, writing
from activities.directory import roles_of
from activities.ledger import (
    CheckpointRef,
    LedgerFacts,
    Verification,
    append_to_ledger,
    canonical_json,
    verify_chain,
)
from activities.models import LedgerCheckpoint, LedgerEntry, LedgerHead
from activities.settings import Settings
from workflows.types import CheckpointRequest, CheckpointRun

log = logging.getLogger("cashcycle.evidence")

SYSTEM_ACTOR = "cashcycle"


class SigningKeyError(ValueError):
    """The configured signing key cannot be used."""


class NothingToCheckpoint(ValueError):
    """The chain has no entries yet."""


def _seed(text: str) -> bytes:
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != 32:
        raise SigningKeyError("the ledger signing key must be 32 bytes (an Ed25519 seed), hex or base64")
    return raw


def held_roles(session: Session, username: str, legal_entity: str) -> list[str]:
    """The roles the actor holds in that entity at this moment (and everywhere), for the evidence."""
    return sorted(set(roles_of(session, username, legal_entity)) | set(roles_of(session, username, "*")))


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The configured key. Outside production, when none is configured, a development key derived from
    the secret key (stable across restarts of one installation; the settings refuse this in production)."""
    if settings.ledger_signing_key:
        return Ed25519PrivateKey.from_private_bytes(_seed(settings.ledger_signing_key))
    if settings.environment == "production":  # the settings object refuses this already; never sign with a
        raise SigningKeyError("CASHCYCLE_LEDGER_SIGNING_KEY is not set")  # derived key in production
    derived = hashlib.sha256(b"cashcycle ledger development signing key\0" + settings.secret_key.encode())
    return Ed25519PrivateKey.from_private_bytes(derived.digest())


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public_key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def trusted_public_keys(settings: Settings) -> set[str]:
    """The current key's public half, and the retired ones still trusted (hex)."""
    keys = {public_hex(signing_key(settings).public_key())}
    for item in settings.ledger_trusted_keys.split(","):
        item = item.strip().lower()
        if item:
            if len(item) != 64 or any(c not in "0123456789abcdef" for c in item):
                raise SigningKeyError(f"trusted ledger key {item!r} is not a 32-byte public key in hex")
            keys.add(item)
    return keys


def checkpoint_message(legal_entity: str, seq: int, entry_hash: str, signed_at: str, kid: str) -> bytes:
    return canonical_json(
        {
            "v": 1,
            "legal_entity": legal_entity,
            "seq": seq,
            "entry_hash": entry_hash,
            "signed_at": signed_at,
            "key_id": kid,
        }
    ).encode("utf-8")


def signature_valid(cp: LedgerCheckpoint, trusted: set[str]) -> bool:
    """The checkpoint is signed by a trusted key, over exactly its own fields."""
    if cp.public_key not in trusted or key_id(cp.public_key) != cp.key_id:
        return False
    message = checkpoint_message(cp.legal_entity, cp.seq, cp.entry_hash, cp.signed_at, cp.key_id)
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key)).verify(
            bytes.fromhex(cp.signature), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def checkpoint_export(cp: LedgerCheckpoint, trusted: set[str]) -> dict[str, Any]:
    """A checkpoint as exported (API and CLI): with its public key and the exact signed message, so that
    anyone can check it offline, and whether this installation trusts its key."""
    return {
        "id": cp.id,
        "legal_entity": cp.legal_entity,
        "seq": cp.seq,
        "entry_hash": cp.entry_hash,
        "signed_at": cp.signed_at,
        "key_id": cp.key_id,
        "public_key": cp.public_key,
        "algorithm": "Ed25519",
        "signature": cp.signature,
        "message": checkpoint_message(
            cp.legal_entity, cp.seq, cp.entry_hash, cp.signed_at, cp.key_id
        ).decode(),
        "trigger": cp.trigger,
        "requested_by": cp.requested_by,
        "signature_valid": signature_valid(cp, trusted),
    }


def checkpoints_of(session: Session, legal_entity: str) -> list[LedgerCheckpoint]:
    return list(
        session.exec(
            select(LedgerCheckpoint)
            .where(LedgerCheckpoint.legal_entity == legal_entity)
            .order_by(col(LedgerCheckpoint.id))
        )
    )


def checkpoint_refs(session: Session, legal_entity: str, trusted: set[str]) -> list[CheckpointRef]:
    """Checkpoints for verification: one per seq (the latest signed), each with its signature checked."""
    by_seq: dict[int, CheckpointRef] = {}
    for cp in checkpoints_of(session, legal_entity):
        assert cp.id is not None
        ref = CheckpointRef(cp.id, cp.seq, cp.entry_hash, cp.signed_at, signature_valid(cp, trusted))
        if not ref.trusted or cp.seq not in by_seq or by_seq[cp.seq].trusted:
            by_seq[cp.seq] = ref
    return list(by_seq.values())


def sign_checkpoint(
    session: Session, settings: Settings, legal_entity: str, trigger: str, requested_by: str
) -> LedgerCheckpoint:
    """Sign the entity's chain head as it is now (in the caller's write transaction, which holds the
    head's lock on PostgreSQL and the database's on SQLite, so the head cannot move meanwhile), then
    record that the checkpoint was made as the next ledger entry."""
    head = session.execute(
        sa_select(LedgerHead).where(col(LedgerHead.legal_entity) == legal_entity).with_for_update()
    ).scalar_one_or_none()
    if head is None or head.seq == 0:
        raise NothingToCheckpoint(f"the ledger of {legal_entity} has no entries to checkpoint")
    key = signing_key(settings)
    pub = public_hex(key.public_key())
    kid = key_id(pub)
    signed_at = datetime.now(UTC).isoformat(timespec="microseconds")
    signature = key.sign(checkpoint_message(legal_entity, head.seq, head.entry_hash, signed_at, kid)).hex()
    cp = LedgerCheckpoint(
        legal_entity=legal_entity,
        seq=head.seq,
        entry_hash=head.entry_hash,
        signed_at=signed_at,
        key_id=kid,
        public_key=pub,
        signature=signature,
        trigger=trigger,
        requested_by=requested_by,
    )
    session.add(cp)
    session.flush()
    append_to_ledger(
        session,
        LedgerFacts(
            legal_entity=legal_entity,
            business_key=f"checkpoint#{cp.id}",
            object_type="ledger",
            object_id=legal_entity,
            event="ledger_checkpoint",
            from_status=None,
            to_status=None,
            actor=requested_by,
            actor_roles=held_roles(session, requested_by, legal_entity),
            rule="checkpoint:" + trigger,
            reason=f"signed checkpoint #{cp.id} of seq {cp.seq}",
            workflow_id="",
            run_id="",
            request_id="",
            at=signed_at,
            payload={
                "checkpoint_id": cp.id,
                "seq": cp.seq,
                "entry_hash": cp.entry_hash,
                "key_id": kid,
                "signature": signature,
            },
        ),
    )
    log.info("ledger checkpoint #%s of %s at seq %s (%s)", cp.id, legal_entity, cp.seq, trigger)
    session.expunge(cp)  # written; the caller keeps a plain copy past the commit
    return cp


def chain_entities(session: Session) -> list[str]:
    """Every chain in the ledger (legal entities, and the reserved access chain)."""
    return list(
        session.execute(
            sa_select(col(LedgerHead.legal_entity)).order_by(col(LedgerHead.legal_entity))
        ).scalars()
    )


@dataclass(frozen=True)
class VerificationRun:
    result: Verification
    ledger_seq: int | None  # where the run itself was recorded


def verify_and_record(
    store: Store,
    settings: Settings,
    legal_entity: str,
    actor: str,
    from_seq: int | None = None,
    to_seq: int | None = None,
    request_id: str = "",
) -> VerificationRun:
    """Verify one chain against its head and its checkpoints, then record the run on that chain:
    evidence that the monitoring control operated, with what it found."""
    trusted = trusted_public_keys(settings)
    with reading(store) as session:
        result = verify_chain(
            session,
            legal_entity,
            from_seq,
            to_seq,
            checkpoints=checkpoint_refs(session, legal_entity, trusted),
        )
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    with writing(store) as session:
        entry = append_to_ledger(
            session,
            LedgerFacts(
                legal_entity=legal_entity,
                business_key=f"verify#{legal_entity}#{at}#{actor}",
                object_type="ledger",
                object_id=legal_entity,
                event="ledger_verified" if result.intact else "ledger_verification_failed",
                from_status=None,
                to_status=None,
                actor=actor,
                actor_roles=held_roles(session, actor, legal_entity),
                rule="ledger:read",
                reason=result.summary,
                workflow_id="",
                run_id="",
                request_id=request_id,
                at=at,
                payload={
                    "intact": result.intact,
                    "from_seq": result.from_seq,
                    "to_seq": result.to_seq,
                    "entries": result.entries,
                    "head_hash": result.head_hash,
                    "broken_at": result.broken_at,
                    "kind": result.kind,
                    "problem": result.problem,
                    "checkpoint_id": result.checkpoint_id,
                    "checkpoint_seq": result.checkpoint_seq,
                },
            ),
        )
        seq = entry.seq
    if not result.intact:
        log.error("ledger of %s: %s", legal_entity, result.summary)
    return VerificationRun(result, seq)


def checkpoint_chains(
    store: Store, settings: Settings, entities: list[str], trigger: str, requested_by: str
) -> tuple[list[LedgerCheckpoint], list[str]]:
    """Verify each chain (the monitoring control operating, and recorded), then sign a checkpoint of each
    intact one. A broken chain is not signed (a signature would bless the damage): it is returned and
    logged as an error, and its failed verification is in the ledger."""
    made, broken = [], []
    for entity in entities:
        run = verify_and_record(store, settings, entity, requested_by)
        if not run.result.intact:
            broken.append(entity)
            continue
        with writing(store) as session:
            made.append(sign_checkpoint(session, settings, entity, trigger, requested_by))
    return made, broken


def checkpoint_all(
    store: Store, settings: Settings, trigger: str, requested_by: str
) -> tuple[list[LedgerCheckpoint], list[str]]:
    """The schedule's work: every chain that has entries."""
    with reading(store) as session:
        entities = chain_entities(session)
    return checkpoint_chains(store, settings, entities, trigger, requested_by)


def latest_entry_seq(session: Session, legal_entity: str) -> int:
    value = session.execute(
        sa_select(col(LedgerEntry.seq))
        .where(col(LedgerEntry.legal_entity) == legal_entity)
        .order_by(col(LedgerEntry.seq).desc())
        .limit(1)
    ).scalar_one_or_none()
    return int(value or 0)


class CheckpointActivities:
    """What the checkpoint workflow calls (the schedule's, and on-demand runs)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    @activity.defn(name="sign_ledger_checkpoints")
    def sign_ledger_checkpoints(self, req: CheckpointRequest) -> CheckpointRun:
        try:
            if req.legal_entity:
                with reading(self.store) as session:
                    if not any(e == req.legal_entity for e in chain_entities(session)):
                        raise NothingToCheckpoint(
                            f"the ledger of {req.legal_entity} has no entries to checkpoint"
                        )
                made, broken = checkpoint_chains(
                    self.store, self.settings, [req.legal_entity], req.trigger, req.requested_by
                )
            else:
                made, broken = checkpoint_all(self.store, self.settings, req.trigger, req.requested_by)
        except SigningKeyError as exc:
            raise ApplicationError(str(exc), type="signing_key", non_retryable=True) from None
        except NothingToCheckpoint as exc:
            raise ApplicationError(str(exc), type="no_entries", non_retryable=True) from None
        return CheckpointRun([cp.id for cp in made if cp.id is not None], broken)
