"""The newsletter's emails (plain text + HTML, RFC 8058 one-click unsubscribe) and their sending."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiosmtplib

from services.newsletter.settings import NewsletterSettings

TEXTS = {
    "en": {
        "confirm_subject": "Confirm your {site} newsletter subscription",
        "confirm_body": "Someone (hopefully you) asked to receive the {site} newsletter at this address.\n"
                        "To confirm, open this link within {hours} hours:",
        "confirm_ignore": "If this wasn't you, ignore this message: nothing will be sent to you.",
        "digest_subject": "{site}: the day's top stories, {date}",
        "digest_intro": "The day's top stories:",
        "unsubscribe": "Unsubscribe",
    },
    "ru": {
        "confirm_subject": "Подтвердите подписку на рассылку {site}",
        "confirm_body": "Кто-то (надеемся, вы) подписал этот адрес на рассылку {site}.\n"
                        "Чтобы подтвердить, откройте ссылку в течение {hours} ч.:",
        "confirm_ignore": "Если это были не вы, просто проигнорируйте письмо.",
        "digest_subject": "{site}: главное за день, {date}",
        "digest_intro": "Главные новости дня:",
        "unsubscribe": "Отписаться",
    },
    "kk": {
        "confirm_subject": "{site} таратылымына жазылуды растаңыз",
        "confirm_body": "Біреу (сіз деп үміттенеміз) бұл мекенжайды {site} таратылымына жазды.\n"
                        "Растау үшін сілтемені {hours} сағат ішінде ашыңыз:",
        "confirm_ignore": "Егер бұл сіз болмасаңыз, хатты елемеңіз.",
        "digest_subject": "{site}: күннің басты жаңалықтары, {date}",
        "digest_intro": "Күннің басты жаңалықтары:",
        "unsubscribe": "Жазылымнан бас тарту",
    },
}


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """Sends through the configured SMTP server (one connection per message)."""

    def __init__(self, settings: NewsletterSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        await aiosmtplib.send(
            message, hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_s,
            username=s.smtp_username, password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls, use_tls=False,
        )


def link(settings: NewsletterSettings, path: str, token: str, language: str = "en") -> str:
    return f"{settings.public_base_url.rstrip('/')}{path}?token={quote(token)}&lang={quote(language)}"


def _base(settings: NewsletterSettings, to: str, subject: str, unsubscribe_url: str, now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=settings.mail_from.rsplit("@", 1)[-1].rstrip(">") or None)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def confirmation_email(settings: NewsletterSettings, to: str, language: str, confirm_url: str, unsubscribe_url: str,
                       now: datetime) -> EmailMessage:
    t = TEXTS.get(language, TEXTS["en"])
    site = settings.site_name
    hours = int(settings.confirm_ttl_s // 3600) or 1
    msg = _base(settings, to, t["confirm_subject"].format(site=site), unsubscribe_url, now)
    body = t["confirm_body"].format(site=site, hours=hours)
    msg.set_content(f"{body}\n\n{confirm_url}\n\n{t['confirm_ignore']}\n\n{t['unsubscribe']}: {unsubscribe_url}\n")
    e = html.escape
    msg.add_alternative(
        f"<!doctype html><html lang=\"{e(language)}\"><body><p>{e(body).replace(chr(10), '<br>')}</p>"
        f"<p><a href=\"{e(confirm_url)}\">{e(confirm_url)}</a></p><p>{e(t['confirm_ignore'])}</p>"
        f"<p><a href=\"{e(unsubscribe_url)}\">{e(t['unsubscribe'])}</a></p></body></html>",
        subtype="html",
    )
    return msg


def digest_email(settings: NewsletterSettings, to: str, language: str, items: Sequence[dict[str, Any]],
                 unsubscribe_url: str, now: datetime) -> EmailMessage:
    t = TEXTS.get(language, TEXTS["en"])
    site = settings.site_name
    base = settings.public_base_url.rstrip("/")
    msg = _base(settings, to, t["digest_subject"].format(site=site, date=now.date().isoformat()), unsubscribe_url, now)
    lines = [t["digest_intro"], ""]
    parts = []
    e = html.escape
    for item in items:
        url = f"{base}/articles/{item['id']}/{item['slug']}"
        lines += [f"* {item['headline']}", f"  {url}", ""]
        standfirst = f"<br>{e(item['standfirst'])}" if item.get("standfirst") else ""
        parts.append(f"<li lang=\"{e(item.get('language') or language)}\"><a href=\"{e(url)}\">{e(item['headline'])}</a>{standfirst}</li>")
    lines += [f"{t['unsubscribe']}: {unsubscribe_url}"]
    msg.set_content("\n".join(lines) + "\n")
    msg.add_alternative(
        f"<!doctype html><html lang=\"{e(language)}\"><body><h1>{e(site)}</h1><p>{e(t['digest_intro'])}</p>"
        f"<ul>{''.join(parts)}</ul><p><a href=\"{e(unsubscribe_url)}\">{e(t['unsubscribe'])}</a></p></body></html>",
        subtype="html",
    )
    return msg
