"""Keeping credentials out of what is stored, shown and logged.

A key can reach a URL (`https://user:KEY@host/v1`, `?api-key=KEY`) or an
error message (a server that echoes the key it rejected). Cache identities
and request records use `public_url`; error messages pass through `redact`
with the secrets the caller knows of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|signature|^sig$|credential|session", re.IGNORECASE)
MASK = "***"


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
    """The secret parts of `url`: its password (and user) and secret-looking query values."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [p for p in (parts.password, parts.username) if p]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _is_secret_param(k) and v]
    return found


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every known secret (of four characters or more) masked."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
