"""A small HTTP proxy on 127.0.0.1 that injects faults in front of a real server.

Faults are a finite plan consumed one per request, so every fault test is
bounded in count; after the plan, requests pass through. The proxy counts the
requests it forwards (and those whose client had already hung up) and can delay every one (to make a run slow enough to
kill mid-way). It runs its own event loop on a thread and stops by itself
when the test's `with` block ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

FAULTS = ("429", "500", "503", "drop", "slow", "malformed", "html", "empty", "echo-key")


@dataclass
class ProxyLog:
    forwarded: int = 0
    abandoned: int = 0
    in_flight: int = 0
    """Connections accepted and not yet answered, faulted or dropped."""
    """Forwarded requests whose client had hung up (timed out) before the reply came back."""
    faults: list[str] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    """Every request's path, query string included."""


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        faults: Iterable[str] = (),
        *,
        delay: float = 0.0,
        slow_seconds: float = 3.0,
        retry_after: float = 1.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan = list(faults)
        unknown = set(self.plan) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.log = ProxyLog()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.plan.pop(0) if self.plan else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        completion = False
        with self._lock:
            self.log.in_flight += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
            body = await reader.readexactly(length) if length else b""
            self.log.paths.append(path)
            path = path.split("?", 1)[0]
            completion = path.endswith("/chat/completions")
            fault = self._next_fault() if completion else None
            if fault:
                self.log.faults.append(fault)
                await self._fault(fault, writer, headers, lines[0])
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            async with httpx.AsyncClient(timeout=120) as client:
                upstream = await client.request(
                    method,
                    self.upstream + path.removeprefix("/v1"),
                    content=body,
                    headers={"content-type": "application/json"},
                )
            if completion:
                with self._lock:
                    self.log.forwarded += 1
                    self.log.abandoned += reader.at_eof()
                    self.log.bodies.append(json.loads(body or b"{}"))
            self._respond(writer, upstream.status_code, upstream.content)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with self._lock:
                self.log.in_flight -= 1
            writer.close()

    async def _fault(self, fault: str, writer: asyncio.StreamWriter, headers: dict, request_line: str) -> None:
        if fault == "429":
            self._respond(writer, 429, b'{"error": {"message": "slow down"}}', {"Retry-After": str(self.retry_after)})
        elif fault in ("500", "503"):
            self._respond(writer, int(fault), b'{"error": {"message": "server fault"}}')
        elif fault == "malformed":
            self._respond(writer, 200, b'{"id": "x", "choices": [{"message": ')
        elif fault == "html":  # a proxy's or portal's page, with a 200
            page = b"<html><body><h1>Welcome to the captive portal</h1></body></html>"
            self._respond(writer, 200, page, {"Content-Type": "text/html"})
        elif fault == "empty":
            self._respond(writer, 200, b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}')
        elif fault == "echo-key":  # a server that quotes the credentials it rejects
            echoed = json.dumps({"error": {"message": f"Incorrect API key provided: { {k.lower(): v for k, v in headers.items()}.get('authorization')} "
                                                      f"for {request_line}"}}).encode()
            self._respond(writer, 401, echoed)
        elif fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        # "drop": close the connection without a reply
        await writer.drain()

    @staticmethod
    def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict | None = None) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}
        headers.update(extra or {})
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + body)
