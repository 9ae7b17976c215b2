"""Keeping credentials out of what is stored, shown and logged.

A key can reach a URL (`https://user:KEY@host/v1`, `?api-key=KEY`), a header
derived from it (the HTTP client turns `user:pass@` into `Authorization: Basic
base64(user:pass)`), or an error message (a server that echoes what it
rejected, percent-encoded or not). Cache identities and request records use
`public_url`. Every secret a backend is given is `register`ed once, with
the forms it can take on the way out (percent-encoded and decoded, Basic
auth); from then on `redact` masks them in any text, and a log record
factory masks them in every log message of the process, an HTTP library's request
lines included. The CLI passes every line it prints through `redact`.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

_SECRET_NAME = re.compile(
    r"key|token|secret|pass|pwd|auth|signature|^sig$|credential|session|^code$|jwt|bearer|private", re.IGNORECASE)
MASK = "***"
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_registered: set[str] = set()
_lock = threading.Lock()
_factory_installed = False


def _is_secret_param(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def public_url(url: str | None) -> str | None:
    """`url` without its user, password and secret-looking query parameters."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_secret_param(k)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of `url`: its password (and user), the Basic-auth header the HTTP client makes of
    them, and secret-looking query values (as written and decoded)."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [p for p in (parts.password, parts.username) if p]
    if parts.username is not None or parts.password is not None:
        for user, password in {(parts.username or "", parts.password or ""),
                               (unquote(parts.username or ""), unquote(parts.password or ""))}:
            found.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    for raw in parts.query.split("&"):
        name, _, value = raw.partition("=")
        if value and _is_secret_param(unquote_plus(name)):
            found += [value, unquote_plus(value)]
    return found


def _forms(secret: str) -> set[str]:
    """The ways a secret may be written on the way out: as given, percent-encoded, decoded."""
    return {secret, quote(secret, safe=""), quote_plus(secret), unquote(secret), unquote_plus(secret)}


def register(*secrets: str | None) -> None:
    """Mask these secrets (and their encoded forms) in every `redact` and log message from now on."""
    global _factory_installed
    fresh = {form for s in secrets if s and len(s) >= 4 for form in _forms(s) if len(form) >= 4}
    if not fresh:
        return
    with _lock:
        _registered.update(fresh)
        if not _factory_installed:
            _install_log_redaction()
            _factory_installed = True


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every registered secret, and each of `secrets`, masked (four characters or more)."""
    extra = {form for s in secrets if s and len(s) >= 4 for form in _forms(s) if len(form) >= 4}
    for secret in sorted(extra | _registered, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def public_text(text: str) -> str:
    """`text` fit to show: every URL in it made public (`public_url`), every registered secret masked.

    For a backend spec in a table title (`openai:m@https://user:pw@host/v1?api-key=...`)."""
    return redact(_URL.sub(lambda m: public_url(m.group(0)) or "", text))


def _install_log_redaction() -> None:
    """A log record factory that masks registered secrets in every message, whichever logger made it."""
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record stays as it was; logging reports it
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
