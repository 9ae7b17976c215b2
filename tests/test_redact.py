"""Secrets never print: in errors, retry warnings, log lines (httpx's included), tables and cache identities."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys

import pytest

from manyminds.backends.openai_compat import OpenAICompatible
from manyminds.errors import BackendError
from manyminds.redact import public_text, public_url, redact, register, url_secrets
from manyminds.types import Message, SamplingParams
from tests.proxy import FaultProxy

MSGS = [Message(role="user", content="hi")]
SHORT = SamplingParams(max_tokens=4, temperature=0.0)
USER, PASSWORD = "alice-user", "pw+in/the=url 42"
QUERY_KEY = "qk+ENC/secret=="  # written percent-encoded in the URL, as a user copies it from a console


def _url(base: str) -> str:
    from urllib.parse import quote

    return (base.replace("http://", f"http://{quote(USER)}:{quote(PASSWORD, safe='')}@")
            + f"?api-key={quote(QUERY_KEY, safe='')}&pass=hunter22x&code=azfunc-code-9&api-version=7")


def _forms() -> list[str]:
    from urllib.parse import quote

    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return [PASSWORD, quote(PASSWORD, safe=""), QUERY_KEY, quote(QUERY_KEY, safe=""), basic, "hunter22x",
            "azfunc-code-9"]


def test_every_form_of_a_secret_is_masked():
    url = _url("http://127.0.0.1:1/v1")
    secrets = url_secrets(url)
    text = " ".join(_forms())
    assert all(form not in redact(text, secrets) for form in _forms())
    shown = public_url(url)
    assert "api-version=7" in shown and all(f not in shown for f in _forms()) and "pass=" not in shown


def test_a_registered_secret_is_masked_in_every_log_record(caplog, monkeypatch):
    register("sk-registered-0042")
    # a library imported earlier in the process (litellm) may have raised httpx's logger level and added
    # a filter of its own that rewrites URLs: without them, what is checked here is manyminds' masking
    monkeypatch.setattr(logging.getLogger("httpx"), "filters", [])
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("some.library").info("sending %s", "Bearer sk-registered-0042")
        logging.getLogger("httpx").info("HTTP Request: POST http://h/v1?api-key=%s", "sk-registered-0042")
    assert "sk-registered-0042" not in caplog.text and caplog.text.count("***") == 2


def test_public_text_cleans_a_backend_spec():
    spec = "openai:gpt@" + _url("https://example.test/v1")
    shown = public_text(spec)
    assert shown.startswith("openai:gpt@https://example.test/v1") and all(f not in shown for f in _forms())


def test_a_server_echoing_basic_auth_and_an_encoded_key_shows_neither(caplog, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FaultProxy("http://127.0.0.1:9", ["echo-key"] * 4) as proxy:
        backend = OpenAICompatible(model="m", base_url=_url(proxy.url), retry_deadline=0.5)
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(BackendError, match="HTTP 401") as error:
                asyncio.run(backend.generate(MSGS, SHORT, 1))
    shown = str(error.value) + caplog.text + repr(backend) + str(backend.cache_identity())
    assert "Incorrect API key" in str(error.value)
    for form in _forms():
        assert form not in shown, form


def test_bench_shows_no_credential_and_fails_when_no_question_succeeds(tmp_path):
    with FaultProxy("http://127.0.0.1:9", ["echo-key"] * 50) as proxy:
        proc = subprocess.run(
            [sys.executable, "-m", "manyminds.cli", "bench", "arithmetic", "--limit", "2", "-n", "1", "--no-baseline",
             "--no-cache", "--backend", f"openai:m@{_url(proxy.url)}"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": "sk-bench-key-31337"})
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 1, printed
    assert "HTTP 401" in proc.stderr and "Traceback" not in printed
    for form in [*_forms(), "sk-bench-key-31337"]:
        assert form not in printed, form
