"""The `cashcycle` command: run everything locally (`up`), or the pieces (`worker`, `api`), and manage
legal entities, users and roles.

    cashcycle up [--port 8000] [--data-dir .cashcycle] [--demo]
    cashcycle worker | cashcycle api [--host 127.0.0.1] [--port 8000]
    cashcycle entities add CODE --name NAME --currency EUR [--timezone Europe/Paris]
    cashcycle users add NAME [--password P] | list | grant NAME ROLE ENTITY | revoke NAME ROLE ENTITY
    cashcycle users disable NAME [--reason TEXT] | conflicts
    cashcycle mail-capture --port 1025 --dir DIR [--refuse-domain DOMAIN]
    cashcycle portal-sim [--host 127.0.0.1] [--port 9100] [--scenario FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sqlmodel import Session

from activities.db import Store, migrate, open_store, reading, writing
from activities.directory import (
    DirectoryError,
    add_user,
    conflict_report,
    disable_user,
    ensure_legal_entity,
    grant,
    revoke,
)
from activities.models import LegalEntity
from activities.queries import role_assignments, users
from activities.settings import get_settings

log = logging.getLogger("cashcycle")


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as s:
            # As the servers themselves bind: a port left in TIME_WAIT by the last run (Ctrl-C, then
            # `up` again) is free to listen on; one another process listens on is still refused.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass  # taken: any free port will do
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else "temporal"


TOWER_DYNAMIC_CONFIG = (
    "--dynamic-config-value",
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=2",
)


def temporal_dev_server_command(data_dir: Path, port: int, ui_port: int, namespace: str) -> list[str]:
    from activities.temporal import dev_server_search_attribute_flags

    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--namespace",
        namespace,
        "--db-filename",
        str((data_dir / "temporal.db").resolve()),
        # WAL keeps the dev server's SQLite file fast and safe under concurrent readers.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
        # Temporal flags a workflow whose task keeps failing (TemporalReportedProblems), which the control
        # tower finds in one visibility query; the dev server does so only when told.
        *TOWER_DYNAMIC_CONFIG,
        *dev_server_search_attribute_flags(),
    ]


def _secret_for(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def cmd_up(args: argparse.Namespace) -> int:
    """Start the Temporal dev server (unless TEMPORAL_ADDRESS is set), the mail capture (unless
    CASHCYCLE_SMTP_HOST is set), the worker and the API as child processes; Ctrl-C stops them all."""
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CASHCYCLE_DATA_DIR"] = str(data_dir)
    env.setdefault("CASHCYCLE_ENVIRONMENT", "demo" if args.demo else "development")
    env.setdefault("CASHCYCLE_SECRET_KEY", _secret_for(data_dir))
    demo_sla = Path(__file__).resolve().parent.parent / "policies" / "sla-demo.toml"
    if args.demo and not env.get("CASHCYCLE_SLA_FILE") and demo_sla.exists():
        # The SLAs of policies/sla.toml in minutes: the demo's waiting invoices are past them minutes after
        # the start, not days (a file the user sets is kept).
        env["CASHCYCLE_SLA_FILE"] = os.environ["CASHCYCLE_SLA_FILE"] = str(demo_sla)  # (seeding names it)
    demo_disputes = demo_sla.with_name("disputes-demo.toml")
    if args.demo and not env.get("CASHCYCLE_DISPUTES_FILE") and demo_disputes.exists():
        # The dispute SLAs in minutes and a CAPA effectiveness window of minutes: cases past their SLA and
        # CAPAs checked during a demo session (read by activities/disputes.py in the API and the worker).
        env["CASHCYCLE_DISPUTES_FILE"] = str(demo_disputes)
    namespace = env.get("TEMPORAL_NAMESPACE", "default")
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)

    def spawn(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("ab")
        # Own process group: Ctrl-C reaches us once, and we stop the children in order.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        children.append((name, proc))
        return proc

    ui_url = ""
    try:
        if not env.get("TEMPORAL_ADDRESS"):
            tport = free_port(7233)
            uport = free_port(8233)
            proc = spawn("temporal", temporal_dev_server_command(data_dir, tport, uport, namespace))
            wait_for_port(tport, 60, proc)
            wait_for_port(uport, 60, proc)
            env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{tport}"
            ui_url = f"http://127.0.0.1:{uport}"
            env.setdefault("CASHCYCLE_TEMPORAL_UI_URL", ui_url)  # the control tower links its workflows there
        if not env.get("CASHCYCLE_SMTP_HOST"):
            mport = free_port(1025)
            mail = [sys.executable, "-m", "api.cli", "mail-capture", "--port", str(mport)]
            mail += ["--dir", str(data_dir / "outbox")]
            if args.demo:
                # One demo customer's mail server refuses (4xx): its deliveries keep retrying, for the tower.
                from demo.stuck import REFUSING_MAIL_DOMAIN

                mail += ["--refuse-domain", REFUSING_MAIL_DOMAIN]
            proc = spawn("mail", mail)
            wait_for_port(mport, 30, proc)
            env["CASHCYCLE_SMTP_HOST"], env["CASHCYCLE_SMTP_PORT"] = "127.0.0.1", str(mport)
        sim_url = ""
        if args.demo and not env.get("CASHCYCLE_PORTALS_FILE"):
            # The demo's customers behind procurement portals talk to a simulated buyer.
            sport = free_port(9100)
            proc = spawn("portal-sim", [sys.executable, "-m", "portal_sim", "--port", str(sport)])
            wait_for_port(sport, 60, proc)
            sim_url = f"http://127.0.0.1:{sport}"
            env["CASHCYCLE_PORTALS_FILE"] = str(_write_demo_portals(data_dir, sim_url))
            env.setdefault("CASHCYCLE_PORTAL_POLL_SECONDS", "10")
            env["CASHCYCLE_DEMO_PORTALS"] = "1"
            os.environ["CASHCYCLE_DEMO_PORTALS"] = "1"  # read by the seeding, in this process
        migrate(_settings_url(env))
        spawn("worker", [sys.executable, "-m", "api.cli", "worker"])
        api_port = free_port(args.port) if args.port else free_port(8000)
        if args.port and api_port != args.port:
            raise SystemExit(f"port {args.port} is in use")
        proc = spawn("api", [sys.executable, "-m", "api.cli", "api", "--port", str(api_port)])
        wait_for_port(api_port, 60, proc)
        base = f"http://127.0.0.1:{api_port}"
        from demo import DEMO_PASSWORD, DEMO_USERS, seed_if_empty, wait_healthy

        asyncio.run(wait_healthy(base, 120))
        if args.demo:
            print("Seeding demo data through the API and the workflows (first start only)...", flush=True)
            asyncio.run(seed_if_empty(base, _settings_url(env), progress=True))
        print(f"\nCashcycle is running (data in {data_dir}, logs in {logs})")
        print(f"  Web UI (sign in)      {base}/   (login page {base}/login)")
        print(f"  API and OpenAPI docs  {base}/docs")
        print(f"  Health                {base}/healthz")
        print(f"  Temporal              {env['TEMPORAL_ADDRESS']}")
        if ui_url:
            print(f"  Temporal Web UI       {ui_url}")
        if sim_url:
            print(f"  Portal simulator      {sim_url}/_sim/invoices   (Coupa-style, cXML, Peppol)")
        if "CASHCYCLE_SMTP_PORT" in env and not os.environ.get("CASHCYCLE_SMTP_HOST"):
            print(f"  Outgoing mail         captured in {data_dir / 'outbox'}")
            if args.demo:
                from demo.stuck import REFUSING_MAIL_DOMAIN

                refused = f"(recipients @{REFUSING_MAIL_DOMAIN} refused with 450: their delivery retries)"
                print(f"  {'':20}  {refused}")
        if args.demo:
            print(f"  Demo users (password {DEMO_PASSWORD}): {', '.join(u for u, _ in DEMO_USERS)}")
            print(f"  SLAs                  {env.get('CASHCYCLE_SLA_FILE') or 'policies/sla.toml'}")
            print(f"  Dispute policy        {env.get('CASHCYCLE_DISPUTES_FILE') or 'policies/disputes.toml'}")
        print("Press Ctrl-C to stop.", flush=True)
        stop = {"now": False}

        def _stop(*_: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop["now"]:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping (see {logs / (name + '.log')})")
                    stop["now"] = True
            time.sleep(0.5)
        return 0
    finally:
        _stop_children(children)
        print("Stopped.")


def _write_demo_portals(data_dir: Path, sim_url: str) -> Path:
    """The demo's portal configuration: the simulator's portals, one per protocol."""
    from portal_sim import demo_portals_toml

    path = data_dir / "portals.toml"
    path.write_text(demo_portals_toml(sim_url))
    return path


def _settings_url(env: dict[str, str]) -> str:
    from activities.settings import Settings

    return Settings(
        data_dir=Path(env["CASHCYCLE_DATA_DIR"]), database_url=env.get("CASHCYCLE_DATABASE_URL", "")
    ).sqlalchemy_url


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # API first (no new commands), then the worker (finishes its task), then mail and Temporal.
    for name, proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if name == "temporal" else signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # Say so: a child that has to be killed may have left work half done.
                print(f"{name} did not stop within 15s: killed", flush=True)
                proc.kill()
                proc.wait()
                continue
            if proc.returncode != 0:
                print(
                    f"{name} exited with {proc.returncode} while stopping (see logs/{name}.log)", flush=True
                )


def cmd_worker(_: argparse.Namespace) -> int:
    from worker import main as worker_main

    worker_main()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    """Bring the store's schema to the newest migration (production runs this once per release)."""
    url = get_settings().sqlalchemy_url
    migrate(url)
    print("store schema is up to date")
    return 0


def cmd_mail_capture(args: argparse.Namespace) -> int:
    from api.mail_capture import serve

    # `up` stops this child with SIGINT. Started from a shell script (`cashcycle up &`) it inherits an
    # ignored SIGINT and would sit out the stop timeout until killed: restore the handler, and take
    # SIGTERM the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    serve(args.port, Path(args.dir), args.refuse_domain)
    return 0


def cmd_portal_sim(args: argparse.Namespace) -> int:
    """A simulated customer portal (cXML, Coupa-style REST, Peppol) for the tests and the demo."""
    from portal_sim import serve

    serve(args.host, args.port, Path(args.scenario) if args.scenario else None)
    return 0


def _store_session() -> Store:
    settings = get_settings()
    migrate(settings.sqlalchemy_url)
    return open_store(settings.sqlalchemy_url)


def _legal_entity_problem(args: argparse.Namespace) -> tuple[str, str] | None:
    """Why the entity cannot be created: a bad currency or zone would only surface later, as failed
    invoices (every draft's release instant is computed in the entity's zone)."""
    from zoneinfo import ZoneInfo

    from activities.money import MoneyError, exponent

    if not args.code or len(args.code) > 32 or not args.code.replace("_", "").replace("-", "").isalnum():
        return "code", "1-32 letters, digits, '-' or '_'"
    if not args.name.strip():
        return "name", "must not be empty"
    try:
        if len(args.currency) != 3 or not args.currency.isupper():
            raise MoneyError("currency", f"{args.currency!r} is not an ISO 4217 code such as EUR")
        exponent(args.currency)
    except MoneyError as exc:
        return "currency", str(exc)
    try:
        ZoneInfo(args.timezone)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return "timezone", f"unknown time zone {args.timezone!r} (use an IANA name such as Europe/Paris)"
    if args.country and (len(args.country) != 2 or not args.country.isalpha() or not args.country.isupper()):
        return "country", f"{args.country!r} is not an ISO 3166 alpha-2 code such as FR"
    return None


def cmd_entities(args: argparse.Namespace) -> int:
    problem = _legal_entity_problem(args)
    if problem is not None:
        print(f"error: {problem[0]}: {problem[1]}", file=sys.stderr)
        return 2
    store = _store_session()
    wanted = LegalEntity(
        code=args.code, name=args.name, currency=args.currency, timezone=args.timezone, country=args.country
    )
    with writing(store) as session:
        found = ensure_legal_entity(session, wanted)
        same = (found.name, found.currency, found.timezone, found.country) == (
            wanted.name,
            wanted.currency,
            wanted.timezone,
            wanted.country,
        )
    if not same:
        print(
            f"error: code: legal entity {args.code} already exists with other details (unchanged)",
            file=sys.stderr,
        )
        return 2
    print(f"legal entity {args.code} ready")
    return 0


def _cli_actor() -> str:
    """Who ran a command, for the evidence: the operator as `cashcycle users` names them (no API login on
    this path)."""
    return os.environ.get("CASHCYCLE_OPERATOR") or getpass.getuser()


def _chains(session: Session, entity: str | None) -> list[str]:
    from activities.checkpoints import chain_entities

    return [entity] if entity else chain_entities(session)


def cmd_ledger(args: argparse.Namespace) -> int:
    import json

    from activities.checkpoints import (
        NothingToCheckpoint,
        SigningKeyError,
        checkpoint_chains,
        checkpoint_export,
        checkpoints_of,
        trusted_public_keys,
        verify_and_record,
    )

    settings = get_settings()
    store = _store_session()
    with reading(store) as session:
        entities = _chains(session, args.entity)
    if args.ledger_cmd == "verify":
        if args.from_seq is not None and args.to_seq is not None and args.to_seq < args.from_seq:
            print("error: --to is before --from", file=sys.stderr)
            return 2
        broken = False
        for entity in entities:
            run = verify_and_record(store, settings, entity, _cli_actor(), args.from_seq, args.to_seq)
            print(f"{entity}: {run.result.summary}")
            broken |= not run.result.intact
        if not entities:
            print("the ledger is empty")
        return 1 if broken else 0
    if args.ledger_cmd == "checkpoint":
        try:
            made, unsigned = checkpoint_chains(store, settings, entities, "on_demand", _cli_actor())
        except (SigningKeyError, NothingToCheckpoint) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for cp in made:
            print(
                f"{cp.legal_entity}: checkpoint #{cp.id} at seq {cp.seq}, "
                f"head {cp.entry_hash}, key {cp.key_id}"
            )
        for entity in unsigned:
            print(f"{entity}: does not verify, not signed (cashcycle ledger verify --entity {entity})")
        return 1 if unsigned else 0
    trusted = trusted_public_keys(settings)
    with reading(store) as session:
        rows = [
            checkpoint_export(cp, trusted) for entity in entities for cp in checkpoints_of(session, entity)
        ]
    text = json.dumps(rows, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(rows)} checkpoint(s) written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    from datetime import date

    from activities.controls import CatalogueError, load_catalogue
    from activities.packs import PackError, PackRequest, build_pack, record_pack

    try:
        catalogue = load_catalogue()
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.evidence_cmd == "controls":
        for c in catalogue.controls.values():
            print(f"{c.id}\t{c.name}\t{c.frequency}\t{', '.join(c.attributes)}")
        return 0
    try:
        start, end = date.fromisoformat(args.period_start), date.fromisoformat(args.period_end)
    except ValueError as exc:
        print(f"error: period: {exc} (use YYYY-MM-DD)", file=sys.stderr)
        return 2
    settings = get_settings()
    store = _store_session()
    with reading(store) as session:
        from activities.queries import legal_entity_codes

        entities = [args.entity] if args.entity else legal_entity_codes(session)
    req = PackRequest(
        control_id=args.control,
        period_start=start,
        period_end=end,
        legal_entities=tuple(entities),
        requested_by=_cli_actor(),
        sample_size=args.sample_size,
        seed=args.seed,
    )
    try:
        pack = build_pack(store, settings, req, catalogue)
    except PackError as exc:
        print(f"error: {exc.field or 'request'}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or pack.filename)
    out.write_bytes(pack.data)
    record_pack(store, pack, _cli_actor())
    m = pack.manifest
    print(
        f"{out}: {m['record_count']} records, sample {m['sample']['size']} (seed {m['sample']['seed']}), "
        f"{m['sample']['exceptions']} exception(s); "
        f"population.csv sha256 {m['files']['population.csv']['sha256']}"
    )
    return 0


def _print_conflicts(session: Session) -> None:
    """The conflict-of-duties report, headed by how it was produced (for the access review's evidence)."""
    report = conflict_report(session)
    print(
        f"conflicts of duties as of {report.generated_at.isoformat(timespec='seconds')}, checked against "
        f"policies/{report.rules.source} sha256 {report.rules.version}; {report.assignments_examined} "
        f"role assignments examined, {len(report.conflicts)} conflict(s)"
    )
    for c in report.conflicts:
        state = " (disabled)" if c.username in report.disabled_users else ""
        print(f"{c.username}{state}\t{c.legal_entity}\t{c.role_a} + {c.role_b}\t{c.why}")


def cmd_users(args: argparse.Namespace) -> int:
    store = _store_session()
    actor = os.environ.get("CASHCYCLE_OPERATOR") or getpass.getuser()
    try:
        if args.action == "add":
            password = args.password or getpass.getpass(f"password for {args.username}: ")
            with writing(store) as session:
                add_user(
                    session,
                    args.username,
                    password,
                    actor,
                    full_name=args.full_name or "",
                    email=args.email or "",
                )
            print(f"user {args.username} added")
        elif args.action == "list":
            with reading(store) as session:
                roles: dict[str, list[str]] = {}
                for r in role_assignments(session):
                    roles.setdefault(r.username, []).append(f"{r.role}@{r.legal_entity}")
                for u in users(session):
                    state = "" if u.active else " (disabled)"
                    print(f"{u.username}{state}\t{' '.join(roles.get(u.username, [])) or '-'}")
        elif args.action == "grant":
            with writing(store) as session:
                changed = grant(session, args.username, args.role, args.entity, actor)
            done = "now holds" if changed else "already held"
            print(f"{args.username} {done} {args.role} in {args.entity}")
        elif args.action == "revoke":
            with writing(store) as session:
                changed = revoke(session, args.username, args.role, args.entity, actor)
            done = "no longer holds" if changed else "did not hold"
            print(f"{args.username} {done} {args.role} in {args.entity}")
        elif args.action == "disable":
            with writing(store) as session:
                changed = disable_user(session, args.username, actor, reason=args.reason or "")
            print(f"user {args.username} {'disabled' if changed else 'was already disabled'}")
        elif args.action == "conflicts":
            with reading(store) as session:
                _print_conflicts(session)
    except DirectoryError as exc:
        print(f"error: {exc.field}: {exc}", file=sys.stderr)
        return 2
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cashcycle", description="Accounts-receivable workflows on Temporal")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything locally")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", default=os.environ.get("CASHCYCLE_DATA_DIR", ".cashcycle"))
    up.add_argument("--demo", action="store_true", help="seed a demo company on first start")
    up.set_defaults(func=cmd_up)
    sub.add_parser("worker", help="run a worker").set_defaults(func=cmd_worker)
    api = sub.add_parser("api", help="run the API and UI server")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=cmd_api)
    sub.add_parser("migrate", help="apply the store's schema migrations").set_defaults(func=cmd_migrate)
    mail = sub.add_parser("mail-capture", help="a local SMTP server that stores messages as .eml files")
    mail.add_argument("--port", type=int, default=1025)
    mail.add_argument("--dir", default=".cashcycle/outbox")
    mail.add_argument(
        "--refuse-domain",
        action="append",
        default=[],
        help="refuse recipients in this domain with a temporary error (450), as a mail server in trouble; "
        "repeatable (the demo uses it for one customer)",
    )
    mail.set_defaults(func=cmd_mail_capture)
    sim = sub.add_parser("portal-sim", help="a simulated customer portal: cXML, Coupa-style REST, Peppol")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9100)
    sim.add_argument("--scenario", help="a scenario file (TOML or JSON); default: the demo's portal")
    sim.set_defaults(func=cmd_portal_sim)
    ent = sub.add_parser("entities", help="legal entities")
    ent_sub = ent.add_subparsers(dest="action", required=True)
    add = ent_sub.add_parser("add")
    add.add_argument("code")
    add.add_argument("--name", required=True)
    add.add_argument("--currency", required=True)
    add.add_argument("--timezone", default="UTC")
    add.add_argument("--country", default="")
    ent.set_defaults(func=cmd_entities)
    us = sub.add_parser("users", help="users and roles")
    us_sub = us.add_subparsers(dest="action", required=True)
    ua = us_sub.add_parser("add")
    ua.add_argument("username")
    ua.add_argument("--password")
    ua.add_argument("--full-name")
    ua.add_argument("--email")
    us_sub.add_parser("list")
    us_sub.add_parser("conflicts", help="users holding incompatible roles (policies/sod_conflicts.csv)")
    ud = us_sub.add_parser("disable", help="stop a user from signing in (roles kept for the access review)")
    ud.add_argument("username")
    ud.add_argument("--reason")
    for verb in ("grant", "revoke"):
        g = us_sub.add_parser(verb)
        g.add_argument("username")
        g.add_argument("role")
        g.add_argument("entity")
    us.set_defaults(func=cmd_users)
    led = sub.add_parser("ledger", help="the evidence ledger: verify, checkpoint, export checkpoints")
    led_sub = led.add_subparsers(dest="ledger_cmd", required=True)
    lv = led_sub.add_parser("verify", help="recompute the hash chains (against head and checkpoints)")
    lv.add_argument("--entity", help="one legal entity's chain (default: every chain)")
    lv.add_argument("--from", dest="from_seq", type=int, help="first seq to verify")
    lv.add_argument("--to", dest="to_seq", type=int, help="last seq to verify")
    lc = led_sub.add_parser("checkpoint", help="sign a checkpoint of each chain's head now")
    lc.add_argument("--entity")
    lx = led_sub.add_parser("checkpoints", help="export the signed checkpoints as JSON")
    lx.add_argument("--entity")
    lx.add_argument("--out", help="file to write (default: standard output)")
    led.set_defaults(func=cmd_ledger)
    ev = sub.add_parser("evidence", help="control catalogue and evidence packs")
    ev_sub = ev.add_subparsers(dest="evidence_cmd", required=True)
    ev_sub.add_parser("controls", help="list the control catalogue")
    pk = ev_sub.add_parser("pack", help="build an evidence pack (zip) for a control and period")
    pk.add_argument("--control", required=True, help="control id, e.g. OTC-01")
    pk.add_argument("--from", dest="period_start", required=True, help="first day, YYYY-MM-DD")
    pk.add_argument("--to", dest="period_end", required=True, help="last day (inclusive), YYYY-MM-DD")
    pk.add_argument("--sample-size", type=int)
    pk.add_argument("--seed", type=int)
    pk.add_argument("--entity", help="one legal entity (default: all)")
    pk.add_argument("--out", help="zip file to write (default: evidence-<control>-<from>-<to>.zip)")
    ev.set_defaults(func=cmd_evidence)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
