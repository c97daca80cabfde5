"""Delivering an approved invoice to the customer: a PDF rendered from a Jinja2 template, sent by SMTP.
The same rendering (`render_pdf`, `render_mail`) and sending (`send_message`) serve credit notes
(activities/credit_notes.py, templates credit_note.html and credit_note_mail.txt).

Sending is made once-only as far as SMTP allows: the Message-ID is derived from the workflow id and the
transition seq, and a delivery row is written after sending and checked before. A crash between the
SMTP reply and that row can repeat the mail, with the same Message-ID so the recipient's side can drop it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import stat
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from fontTools import subset, ttLib  # type: ignore[import-untyped]
from fontTools import version as fonttools_version
from fpdf import FPDF
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session
from temporalio.exceptions import ApplicationError

from activities.db import Store, reading, writing
from activities.models import Customer, Invoice, InvoiceDelivery, LegalEntity
from activities.money import format_minor
from activities.numbering import issue_number
from activities.settings import Settings
from workflows.types import InvoiceState

TEMPLATES = Path(__file__).resolve().parent.parent / "ui" / "templates" / "documents"
_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
log = logging.getLogger("cashcycle.delivery")
# fpdf2 subsets the embedded fonts with fontTools, which logs every step at INFO: some 75 lines per PDF.
logging.getLogger("fontTools").setLevel(logging.WARNING)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), keep_trailing_newline=True
)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    mail_from: str
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_seconds: float = 30.0


def document_context(state: InvoiceState, entity: LegalEntity, customer: Customer) -> dict[str, Any]:
    d = state.draft
    return {
        "entity": entity,
        "customer": customer,
        "invoice": {
            "number": state.number,
            "external_id": state.external_id,
            "issue_date": d.issue_date,
            "due_date": d.due_date,
            "po_number": d.po_number,
            "currency": d.currency,
        },
        "lines": [
            {
                "description": ln.description,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
                "tax_rate": ln.tax_rate,
                "net": format_minor(ln.net_minor, d.currency),
            }
            for ln in d.lines
        ],
        "totals": {
            "subtotal": format_minor(d.subtotal_minor, d.currency),
            "tax": format_minor(d.tax_total_minor, d.currency),
            "total": format_minor(d.total_minor, d.currency),
        },
    }


# Code points the cached font subsets map: ASCII and Latin-1, Latin Extended-A and -B, General
# Punctuation (dashes, quotes, bullet), Currency Symbols (€ and the rest) and Letterlike Symbols (™, №).
_SUBSET_RANGES = ((0x20, 0x7E), (0xA0, 0x24F), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F))
# The encoding fpdf2 writes the standard fonts' text in (their PDF encoding is WinAnsiEncoding).
CORE_FONTS_ENCODING = "windows-1252"
_DEJAVU = {"": _FONT_DIR / "DejaVuSans.ttf", "B": _FONT_DIR / "DejaVuSans-Bold.ttf"}


@dataclass(frozen=True)
class _UnicodeFonts:
    """Font files by style, and the characters all of them map (None: any, the full fonts)."""

    files: dict[str, Path]
    chars: frozenset[str] | None

    def cover(self, text: str) -> bool:
        return self.chars is None or set(text) <= self.chars

    def present(self) -> bool:
        return all(path.exists() for path in self.files.values())


_FULL_FONTS = _UnicodeFonts(_DEJAVU, None)
# Bump when the subsetting below changes: the cached files are named after it.
_SUBSET_VERSION = 1
_subset_lock = threading.Lock()
_subset_fonts: _UnicodeFonts | None = None
_subset_failed = False


def _font_cache() -> Path:
    """The directory of the subset files: one per user under the temp dir, shared by all processes and
    restarts. Files are named after what they are made from, so nothing needs cleaning up (a directory per
    process would be left behind by every worker, which ends with os._exit())."""
    path = Path(tempfile.gettempdir()) / f"cashcycle-fonts-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        # Fonts are parsed from here: not from a directory that anyone else could have filled.
        raise PermissionError(f"{path} is not a private directory of this user")
    return path


def _subset_file(source: Path, directory: Path) -> Path:
    key = hashlib.sha256(source.read_bytes())
    key.update(repr((_SUBSET_VERSION, _SUBSET_RANGES, fonttools_version)).encode())
    target = directory / f"{source.stem}-{key.hexdigest()[:24]}.ttf"
    if target.exists():
        return target
    # The same options as fpdf2's own subsetting at output (.notdef outline, hinting kept), minus the
    # OpenType layout tables, which fpdf2 drops at output when it does no text shaping (as here). Glyph
    # names are kept: without them fontTools derives them from the cmap on every add_font() (2 ms).
    options = subset.Options(
        notdef_outline=True, recommended_glyphs=True, layout_features=[], glyph_names=True
    )
    options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "kern"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[cp for first, last in _SUBSET_RANGES for cp in range(first, last + 1)])
    with ttLib.TTFont(source, recalcTimestamp=False) as font:
        subsetter.subset(font)
        # Written aside and renamed: another process reading the name only ever finds a whole file.
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".part", delete=False) as part:
            try:
                font.save(part)
            except BaseException:
                Path(part.name).unlink()
                raise
    os.replace(part.name, target)
    return target


def _mapped_chars(path: Path) -> set[str]:
    with ttLib.TTFont(path, lazy=True) as font:
        return {chr(cp) for cp in font.getBestCmap()}


def _build_subset_fonts() -> _UnicodeFonts:
    directory = _font_cache()
    files = {style: _subset_file(source, directory) for style, source in _DEJAVU.items()}
    chars = set.intersection(*(_mapped_chars(path) for path in files.values()))
    # Line breaks and tabs of the HTML never reach a glyph.
    return _UnicodeFonts(files, frozenset(chars | {"\n", "\r", "\t"}))


def _unicode_fonts(text: str) -> _UnicodeFonts | None:
    """DejaVu for `text`: subsets of the two faces, made once and loaded once per process (add_font()
    on the full 750 KB files parses them with fontTools for every PDF, 120-170 ms of CPU per invoice), or
    the full fonts when the text has a character outside the subsets. None when DejaVu is not installed."""
    global _subset_fonts, _subset_failed
    if not all(path.exists() for path in _DEJAVU.values()):
        return None
    fonts = _subset_fonts
    # Checked on every PDF (two stat calls): a temp cleaner may have removed the files since.
    if not _subset_failed and (fonts is None or not fonts.present()):
        with _subset_lock:  # one thread builds, the others wait for it rather than build their own
            if not _subset_failed and (_subset_fonts is None or not _subset_fonts.present()):
                try:
                    _subset_fonts = _build_subset_fonts()
                except Exception:  # a temp dir not ours, or a font fontTools cannot subset: still render
                    _subset_failed = True
                    _subset_fonts = None
                    log.exception("could not build the DejaVu subsets; embedding the full fonts")
            fonts = _subset_fonts
    if fonts is not None and fonts.cover(text):
        return fonts
    return _FULL_FONTS


def _keep_glyph_bounds(pdf: FPDF) -> None:
    """At output fpdf2 subsets each font to the glyphs used and saves it with fontTools, which by default
    unpacks and recompiles every glyph to recompute its bounding box: some 8 ms per PDF. Our subset files
    were saved with exact boxes, and subsetting leaves the outlines as they are, so the boxes stay valid.
    This reaches into fpdf2's font objects (`FPDF.fonts[key].ttfont`, fpdf2 2.8) and does nothing where
    a later version has none."""
    for font in pdf.fonts.values():
        ttfont = getattr(font, "ttfont", None)
        if ttfont is not None:
            ttfont.recalcBBoxes = False


def _core_font_text(text: str) -> bool:
    """Whether the PDF's standard Helvetica (one of the 14 fonts every PDF reader has, so nothing is
    embedded) can show `text`: it is encoded in Windows-1252, which holds Latin-1, the euro sign, dashes
    and typographic quotes."""
    try:
        text.encode(CORE_FONTS_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def render_invoice_pdf(context: dict[str, Any]) -> bytes:
    """The invoice page (see `render_pdf`)."""
    return render_pdf("invoice.html", f"Invoice {context['invoice']['number']}", context)


def render_pdf(
    template: str, title: str, context: dict[str, Any], *, created: datetime | None = None
) -> bytes:
    """A document page from one of the documents' templates. Text that Windows-1252 encodes (most Western
    names and addresses) is set in the standard Helvetica: no font is parsed, subset or embedded, a third of
    the CPU of an embedded font. Anything else (Greek, Cyrillic, CJK names...) is set in DejaVu, embedded.
    `created` fixes the PDF's creation date (the same document then renders to the same bytes)."""
    html = _env.get_template(template).render(**context)
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_creator("Cashcycle")
    if created is not None:
        pdf.set_creation_date(created)
    pdf.add_page()
    if _core_font_text(html):
        pdf.core_fonts_encoding = CORE_FONTS_ENCODING
        pdf.set_font("Helvetica", size=10)
        pdf.write_html(html)
        return bytes(pdf.output())
    fonts = _unicode_fonts(html)
    if fonts is not None:
        # A Unicode font when the system has one; customer names are not all Latin-1.
        for style, path in fonts.files.items():
            pdf.add_font("DejaVu", style, str(path))
        if fonts.chars is not None:
            _keep_glyph_bounds(pdf)
        pdf.set_font("DejaVu", size=10)
        pdf.write_html(html, font_family="DejaVu")
    else:
        pdf.set_font("Helvetica", size=10)
        pdf.write_html(html.encode("latin-1", "replace").decode("latin-1"))
    return bytes(pdf.output())


def render_invoice_mail(context: dict[str, Any]) -> str:
    return _env.get_template("invoice_mail.txt").render(**context)


def render_mail(template: str, context: dict[str, Any]) -> str:
    """A mail body from one of the documents' templates (e.g. credit_note_mail.txt)."""
    return _env.get_template(template).render(**context)


def send_message(smtp: SmtpConfig, msg: EmailMessage) -> None:
    """Hand one message to the SMTP server (STARTTLS and login when configured). smtplib's exceptions
    and OSError propagate: the caller decides what is retried."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(msg)


@dataclass(frozen=True)
class MailSent:
    """An invoice mailed: its Message-ID, where it went, and the number it was issued under."""

    invoice_id: str
    message_id: str
    recipient: str
    number: str


class MailDelivery:
    """Delivery to customers without a portal: e-mail with the PDF attached.

    Not an activity of its own: `deliver_invoice` (activities/submission.py) calls `send`, then writes
    `mark_sent` and the `deliver` transition in one transaction."""

    def __init__(self, store: Store, smtp: SmtpConfig) -> None:
        self._store = store
        self._smtp = smtp

    def send(self, invoice_id: str, workflow_id: str, transition_seq: int, state: InvoiceState) -> MailSent:
        """Send the invoice PDF to the customer's billing address, once per delivery transition: an
        earlier attempt that sent it (its delivery row written) is answered without sending again."""
        message_id = f"<{workflow_id.replace('/', '.')}.{transition_seq}@cashcycle>"
        with reading(self._store) as session:
            sent = session.get(InvoiceDelivery, message_id)
            issued = session.get(Invoice, invoice_id)
            if sent is not None and issued is not None and issued.number:
                return MailSent(invoice_id, message_id, sent.recipient, issued.number)
            customer = session.get(Customer, state.draft.customer_id)
            entity = session.get(LegalEntity, state.legal_entity)
            if customer is None or entity is None:
                raise ApplicationError("customer or legal entity missing from the store", non_retryable=True)
            session.expunge_all()
        if not customer.email:
            # Retried with backoff: master data can be fixed while the invoice waits.
            raise ApplicationError(f"customer {customer.name} has no billing e-mail address")
        # The number is allocated now, as the invoice is issued: issued invoices are numbered without gaps.
        with writing(self._store) as session:
            number = issue_number(session, invoice_id)
        context = document_context(replace(state, number=number), entity, customer)
        msg = EmailMessage()
        msg["Subject"] = f"Invoice {number} from {entity.name}"
        msg["From"] = self._smtp.mail_from
        msg["To"] = customer.email
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id
        msg.set_content(render_invoice_mail(context))
        msg.add_attachment(
            render_invoice_pdf(context), maintype="application", subtype="pdf", filename=f"{number}.pdf"
        )
        send_message(self._smtp, msg)
        return MailSent(invoice_id, message_id, customer.email, number)


def mark_sent(session: Session, sent: MailSent) -> None:
    """The delivery row: written after the SMTP server took the mail, checked before sending again."""
    if session.get(InvoiceDelivery, sent.message_id) is None:
        session.add(
            InvoiceDelivery(
                message_id=sent.message_id,
                invoice_id=sent.invoice_id,
                channel="email",
                recipient=sent.recipient,
            )
        )
        session.flush()


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host or "127.0.0.1",
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
    )
