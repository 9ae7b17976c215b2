"""The scripts that run inside the sandbox (sent as source, after `plain.py`'s).

Three entry points, one per role:

- `run_program`: runs one program; once its last line has run, writes the
  run's token to the report pipe (the token is never on disk, in argv or in
  the environment, and an early exit cannot produce it).
- `serve_candidate`: runs a candidate's code, then answers calls to its
  functions over a pipe: arguments arrive and results leave as plain data
  (`plain.py`). Everything in this process is the candidate's to tamper with;
  nothing here decides a verdict.
- `run_tests`: runs the task's tests in a separate sandbox, with each of the
  candidate's functions replaced by a stub that calls across the pipe and
  rebuilds the reply as fresh builtins. Only this process holds the token,
  and it runs no candidate code, so no monkeypatch, frame walk or `__eq__`
  of the candidate's can reach it.

Each program runs as the real `__main__` module, so `pickle` (and so
`multiprocessing`) finds the functions it defines.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import struct
import sys
import traceback
import types

from manyminds.verifiers.plain import NotPlain, decode, dumps, encode

MAX_MESSAGE = 64 * 1024 * 1024
_MUTABLE = (list, dict, set, bytearray)


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8")


def _limit_processes(nproc: int) -> None:
    if nproc > 0:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        except (ValueError, OSError):
            pass


def _new_main(path: str) -> dict:
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [path]
    return module.__dict__


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _send(fd: int, message: object) -> None:
    data = dumps(message)
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd: int, size: int) -> bytes:
    parts = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the pipe closed")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _receive(fd: int) -> object:
    (size,) = struct.unpack(">I", _read_exactly(fd, 4))
    if size > MAX_MESSAGE:
        raise NotPlain(f"a message of {size} bytes (the limit is {MAX_MESSAGE})")
    raw = _read_exactly(fd, size)
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise NotPlain(f"a message that is not JSON ({type(error).__name__})") from None


def run_program(token_fd: int, report_fd: int, source_fd: int, nproc: int) -> None:
    token = os.read(token_fd, 64)
    os.close(token_fd)
    _limit_processes(nproc)
    source = _read_all(source_fd)
    namespace = _new_main("/sandbox/program.py")
    _to_the_end("program", lambda: exec(compile(source, "/sandbox/program.py", "exec"), namespace))
    _report(report_fd, token)


def _to_the_end(what: str, body) -> None:
    """Run `body`; if it exits or raises, say why and end the process without reporting the token."""
    try:
        body()
    except SystemExit as stop:
        sys.stderr.write("manyminds sandbox: the %s exited (%r) before its last line ran\n" % (what, stop.code))
        _fail()
    except BaseException:
        traceback.print_exc()
        _fail()


def _fail(why: str | None = None) -> None:
    if why:
        sys.stderr.write("manyminds sandbox: %s\n" % (why,))
    _flush()
    os._exit(1)


def _report(report_fd: int, token: bytes) -> None:
    """The last line ran: hand the run's token to the host."""
    _flush()
    os.write(report_fd, token)
    os.close(report_fd)


def serve_candidate(source_fd: int, requests_fd: int, replies_fd: int, nproc: int) -> None:
    _limit_processes(nproc)
    source = _read_all(source_fd)
    namespace = _new_main("/sandbox/candidate.py")
    try:
        exec(compile(source, "/sandbox/candidate.py", "exec"), namespace)
    except BaseException as error:
        traceback.print_exc()
        _flush()
        _send(replies_fd, {"loaded": False, "error": f"{type(error).__name__}: {error}"[:2000]})
        os._exit(1)
    names = sorted(name for name, value in list(namespace.items())
                   if not name.startswith("__") and callable(value))
    _send(replies_fd, {"loaded": True, "names": names})
    while True:
        try:
            request = _receive(requests_fd)
        except EOFError:
            _flush()
            os._exit(0)
        _send(replies_fd, _answer(namespace, request))


def _answer(namespace: dict, request) -> dict:
    try:
        name = str(request["call"])
        args = [decode(a) for a in request["args"]]
        kwargs = {str(k): decode(v) for k, v in request["kwargs"].items()}
    except (NotPlain, KeyError, TypeError, AttributeError, RecursionError) as error:
        return {"raise": "TypeError", "message": f"a malformed call ({error})", "fatal": True}
    function = namespace.get(name)
    if function is None or not callable(function):
        return {"raise": "NameError", "message": f"name {name!r} is not defined", "fatal": False}
    try:
        value = function(*args, **kwargs)
    except BaseException as error:
        _flush()
        return {"raise": type(error).__name__, "message": str(error)[:2000],
                "fatal": not isinstance(error, Exception)}
    _flush()
    try:
        after = {str(i): encode(a) for i, a in enumerate(args) if type(a) in _MUTABLE}
        after.update({k: encode(v) for k, v in kwargs.items() if type(v) in _MUTABLE})
        return {"value": encode(value), "after": after}
    except NotPlain as error:
        return {"unplain": f"{name}() returned {error}, which cannot cross to the tests as plain data"}
    except RecursionError:
        return {"unplain": f"{name}() returned a value too deeply nested to cross to the tests"}


class CandidateError(Exception):
    """The candidate's function raised an exception that is not a builtin one."""


class CandidateStopped(BaseException):
    """The candidate's process ended, stopped the call (SystemExit...) or sent what is not plain data.

    A BaseException, so that a test's `except Exception` cannot take it for an expected error.
    """


class Remote:
    """The candidate's process, seen from the tests: a stub per function, calls over the pipe."""

    def __init__(self, requests_fd: int, replies_fd: int) -> None:
        self.requests_fd = requests_fd
        self.replies_fd = replies_fd
        self.broken: str | None = None

    def hello(self) -> dict:
        try:
            reply = _receive(self.replies_fd)
        except (EOFError, NotPlain) as error:
            self.broken = f"the candidate's process gave no greeting ({error})"
            raise CandidateStopped(self.broken) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("loaded"), bool):
            self.broken = "the candidate's process sent a malformed greeting"
            raise CandidateStopped(self.broken)
        return reply

    def stub(self, name: str):
        remote = self

        def call(*args, **kwargs):
            return remote.call(name, args, kwargs)

        call.__name__ = call.__qualname__ = name
        return call

    def _stop(self, why: str) -> CandidateStopped:
        self.broken = self.broken or why
        return CandidateStopped(why)

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.broken:
            raise CandidateStopped(self.broken)
        try:
            request = {"call": name, "args": [encode(a) for a in args],
                       "kwargs": {str(k): encode(v) for k, v in kwargs.items()}}
        except NotPlain as error:
            raise self._stop(f"the tests pass {error} to {name}(), which cannot cross to the candidate") from None
        try:
            _send(self.requests_fd, request)
            reply = _receive(self.replies_fd)
        except (EOFError, BrokenPipeError, OSError) as error:
            raise self._stop(f"the candidate's process ended during {name}() ({error})") from None
        except NotPlain as error:
            raise self._stop(f"{name}() sent back {error}") from None
        if not isinstance(reply, dict):
            raise self._stop(f"{name}() sent back a malformed reply")
        if "unplain" in reply:
            raise self._stop(str(reply["unplain"]))
        if "raise" in reply:
            kind, message = str(reply.get("raise")), str(reply.get("message", ""))
            if reply.get("fatal", True):
                raise self._stop(f"{name}() stopped the candidate's process ({kind}: {message})")
            raise _exception(kind, message)
        if "value" not in reply or not isinstance(reply.get("after", {}), dict):
            raise self._stop(f"{name}() sent back a malformed reply")
        try:
            value = decode(reply["value"])
            for key, state in reply.get("after", {}).items():
                original = kwargs.get(key) if not key.isdigit() else (args[int(key)] if int(key) < len(args) else None)
                _update_in_place(original, decode(state))
        except (NotPlain, RecursionError) as error:
            raise self._stop(f"{name}() sent back {error}") from None
        return value


def _exception(kind: str, message: str) -> Exception:
    """A builtin exception of the same name (so `except ValueError` still works), else CandidateError."""
    found = getattr(builtins, kind, None)
    if isinstance(found, type) and issubclass(found, Exception):
        try:
            return found(message)
        except Exception:
            pass
    return CandidateError(f"{kind}: {message}")


def _update_in_place(original, state) -> None:
    """The candidate mutated an argument: make the tests' copy match (lists, dicts, sets, bytearrays)."""
    if type(original) is not type(state):
        return
    if type(original) in (list, bytearray):
        original[:] = state
    elif type(original) in (dict, set):
        original.clear()
        original.update(state)


def run_tests(token_fd: int, report_fd: int, spec_fd: int, requests_fd: int, replies_fd: int, nproc: int) -> None:
    token = os.read(token_fd, 64)
    os.close(token_fd)
    _limit_processes(nproc)
    spec = json.loads(_read_all(spec_fd))
    remote = Remote(requests_fd, replies_fd)
    _to_the_end("tests", lambda: _tests(spec, remote))
    if remote.broken:
        _fail(remote.broken)
    _report(report_fd, token)


def _tests(spec: dict, remote: Remote) -> None:
    hello = remote.hello()
    if not hello["loaded"]:
        _fail(f"the candidate's code did not load: {hello.get('error')}")
    namespace = _new_main("/sandbox/tests.py")
    if spec.get("setup"):
        exec(compile(spec["setup"], "/sandbox/setup.py", "exec"), namespace)
    if spec.get("prelude"):  # the task's own header (helpers the tests use): trusted, run here
        try:
            exec(compile(spec["prelude"], "/sandbox/prelude.py", "exec"), namespace)
        except Exception:
            pass
    entry = spec.get("entry")
    for name in hello.get("names", []):
        if isinstance(name, str) and (name not in namespace or name == entry):
            namespace[name] = remote.stub(name)
    if entry:
        namespace[entry] = remote.stub(entry)
    exec(compile(spec["tests"], "/sandbox/tests.py", "exec"), namespace)
    if entry:
        namespace["check"](namespace[entry])
