"""`manyminds view DB`: a local web page to browse the runs in a cache, down to every candidate.

A small read-only HTTP server on 127.0.0.1 (the standard library's; no external assets): the runs
table with accuracy and its interval, the report's plots, each run's questions with filters (wrong
answers, low confidence, methods disagreeing on the question), each question's candidates (text,
extracted answer, whether and how it voted, verdicts, the sample's token confidence, the stage and
prompt it came from), tally, stop reason and decision, and a diff of two runs on the same
questions. The page asks for JSON (`/api/...`) and draws it.

Reading is SQL over the `results` table (SQLite's JSON functions pick the few fields a list needs),
so the first screen of a run of 1,000 questions x 16 samples does not parse 16,000 candidates; a
question's full Result is read when it is opened. The file is opened read-only (`mode=ro`):
viewing never writes to it, while a benchmark may still be writing.
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from manyminds.cache.store import GenerationCache
from manyminds.errors import ConfigError

LOW_CONFIDENCE = 0.6
"""The default threshold of the "low confidence" filter: a winner with less than this share."""


class Library:
    """The runs of one cache file, read-only; every method opens its own connection (one per thread)."""

    def __init__(self, path: "str | Path") -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise ConfigError(f"no cache file at {self.path}")
        with GenerationCache(self.path, read_only=True):  # ours and readable, or a clear error now
            pass
        self._plots: dict[str, Path] | None = None
        self._plots_lock = threading.Lock()
        self._folder = tempfile.TemporaryDirectory(prefix="manyminds-view-")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        return conn

    # -- the runs table ------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run with questions: label, strategy, status, accuracy with its 95% interval, samples
        and tokens per question, model and data set."""
        from manyminds.bench.runner import bootstrap_interval

        with self._connect() as conn:
            rows = conn.execute(
                "SELECT r.id, r.label, r.strategy, r.status, r.meta, r.params, x.score, x.error, "
                "json_extract(x.result, '$.usage.samples'), json_extract(x.result, '$.usage.completion_tokens') "
                "FROM runs r JOIN results x ON x.run = r.id ORDER BY r.id, x.position").fetchall()
        runs: dict[int, dict[str, Any]] = {}
        values: dict[int, list[float]] = {}
        for run, label, strategy, status, meta, params, score, error, samples, tokens in rows:
            if run not in runs:
                info = json.loads(meta) if meta else {}
                runs[run] = {"id": run, "label": label, "strategy": strategy, "status": status or "finished",
                             "params": json.loads(params) if params else {}, "model": info.get("model"),
                             "dataset": info.get("dataset"), "oracle": bool(info.get("oracle")),
                             "questions": 0, "failed": 0, "samples": 0, "tokens": 0}
                values[run] = []
            entry = runs[run]
            entry["questions"] += 1
            entry["failed"] += error is not None
            entry["samples"] += samples or 0
            entry["tokens"] += tokens or 0
            if score is not None:
                values[run].append(float(json.loads(score)["value"]))
        for run, entry in runs.items():
            scored = values[run]
            entry["scored"] = len(scored)
            entry["accuracy"] = sum(scored) / len(scored) if scored else None
            low, high = bootstrap_interval(scored) if len(scored) > 1 else (None, None)
            entry["low"], entry["high"] = low, high
            entry["samples_per_question"] = entry.pop("samples") / entry["questions"]
            entry["tokens_per_question"] = entry.pop("tokens") / entry["questions"]
        return list(runs.values())

    # -- a run's questions ---------------------------------------------------------------

    def questions(self, run: int) -> dict[str, Any]:
        """One row per question of `run`: question, gold, answer, right or wrong, confidence, distinct
        answers, stop reason, error, and whether another run answered the same question otherwise."""
        with self._connect() as conn:
            info = conn.execute("SELECT label, strategy FROM runs WHERE id = ?", (run,)).fetchone()
            if info is None:
                raise KeyError(f"run {run}")
            rows = conn.execute(
                "SELECT x.position, x.task_id, json_extract(x.task, '$.question'), json_extract(x.task, '$.gold'), "
                "x.answer, json_extract(x.score, '$.value'), json_extract(x.result, '$.confidence'), "
                "(SELECT COUNT(*) FROM json_each(x.result, '$.tally')), json_extract(x.result, '$.stop_reason'), "
                "x.error, json_extract(x.result, '$.usage.samples') "
                "FROM results x WHERE x.run = ? ORDER BY x.position", (run,)).fetchall()
            # what other runs answered each question (one pass: the file is read-only, so no index)
            answered: dict[str, set[str | None]] = {}
            for task_id, answer in conn.execute("SELECT task_id, answer FROM results WHERE run != ? "
                                                "AND task_id IS NOT NULL", (run,)):
                answered.setdefault(task_id, set()).add(answer)
        return {"run": run, "label": info[0], "strategy": info[1], "questions": [
            {"position": p, "task_id": tid, "question": _short(q), "gold": gold, "answer": answer,
             "correct": value, "confidence": confidence, "distinct": distinct, "stop_reason": stop,
             "error": error, "samples": samples, "disagree": bool(answered.get(tid, set()) - {answer})}
            for p, tid, q, gold, answer, value, confidence, distinct, stop, error, samples in rows]}

    # -- one question --------------------------------------------------------------------

    def question(self, run: int, position: int) -> dict[str, Any]:
        """Everything stored about one question of a run, each candidate with what it did."""
        with self._connect() as conn:
            row = conn.execute("SELECT x.task, x.result, x.score, x.error, r.label FROM results x "
                               "JOIN runs r ON r.id = x.run WHERE x.run = ? AND x.position = ?",
                               (run, position)).fetchone()
            if row is None:
                raise KeyError(f"run {run} question {position}")
            others = conn.execute(
                "SELECT r.id, r.label, o.answer, json_extract(o.score, '$.value') FROM results o "
                "JOIN runs r ON r.id = o.run JOIN results x ON x.run = ? AND x.position = ? "
                "WHERE o.run != ? AND o.task_id = x.task_id AND x.task_id IS NOT NULL ORDER BY r.id",
                (run, position, run)).fetchall()
        task, result, score, error, label = row
        result = json.loads(result) if result else None
        candidates = []
        if result is not None:
            decision = result.get("decision") or {}
            tally = result.get("tally") or {}
            for c in result.get("candidates", []):
                source = c.get("source")
                kind = source.get("kind") if isinstance(source, dict) else _kind(source)
                generation = c.get("generation") or {}
                candidates.append({
                    "index": c.get("index"), "text": c.get("text", ""), "answer": c.get("answer"),
                    "source": source if isinstance(source, str) else json.dumps(source), "kind": kind,
                    "votes": kind == "sample" and c.get("answer") is not None,
                    "won": c.get("answer") is not None and c.get("answer") == result.get("answer"),
                    "chosen": decision.get("chosen") == c.get("index"),
                    "verdict": c.get("verdict"), "confidence": _token_confidence(generation.get("logprobs")),
                    "finish_reason": generation.get("finish_reason"),
                    "tokens": generation.get("completion_tokens"), "cached": generation.get("cached", False),
                    "tally": tally.get(c.get("answer")) if c.get("answer") is not None else None})
        return {"run": run, "label": label, "position": position, "task": json.loads(task) if task else None,
                "score": json.loads(score) if score else None, "error": error, "candidates": candidates,
                "answer": result.get("answer") if result else None,
                "confidence": result.get("confidence") if result else None,
                "tally": result.get("tally") if result else None,
                "decision": result.get("decision") if result else None,
                "stop_reason": result.get("stop_reason") if result else None,
                "trace": result.get("trace") if result else None, "usage": result.get("usage") if result else None,
                "others": [{"run": i, "label": lab, "answer": a, "correct": v} for i, lab, a, v in others]}

    # -- two runs side by side -----------------------------------------------------------

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Two runs on the same questions (matched by task id, else position): each question's two
        answers and scores, how many each got right that the other did not, and the difference in
        accuracy with its paired bootstrap interval and McNemar's p (`bench.stats.paired_scores`)."""
        from manyminds.bench.stats import paired_scores

        with self._connect() as conn:
            labels = dict(conn.execute("SELECT id, label FROM runs WHERE id IN (?, ?)", (a, b)).fetchall())
            if a not in labels or b not in labels:
                raise KeyError(f"run {a if a not in labels else b}")

            def answers(run: int) -> list[tuple[Any, ...]]:
                return conn.execute(
                    "SELECT COALESCE(task_id, position), position, json_extract(task, '$.question'), answer, "
                    "json_extract(score, '$.value') FROM results WHERE run = ? ORDER BY position", (run,)).fetchall()

            theirs = {row[0]: row for row in answers(b)}  # matched in Python: the read-only file has no index
            rows = [(mine, theirs[mine[0]]) for mine in answers(a) if mine[0] in theirs]
        questions = [{"position": p, "task_id": key, "question": _short(q), "answer_a": aa, "correct_a": ca,
                      "answer_b": other[3], "correct_b": other[4], "position_b": other[1], "differ": aa != other[3]}
                     for (key, p, q, aa, ca), other in rows]
        only_a = sum(1 for q in questions if (q["correct_a"] or 0) > (q["correct_b"] or 0))
        only_b = sum(1 for q in questions if (q["correct_b"] or 0) > (q["correct_a"] or 0))
        return {"a": {"run": a, "label": labels[a]}, "b": {"run": b, "label": labels[b]}, "shared": len(questions),
                "only_a_right": only_a, "only_b_right": only_b,
                "answers_differ": sum(1 for q in questions if q["differ"]), "questions": questions,
                "paired": paired_scores([q["correct_a"] for q in scored], [q["correct_b"] for q in scored])
                if (scored := [q for q in questions if q["correct_a"] is not None and q["correct_b"] is not None])
                else None}

    # -- the report's plots --------------------------------------------------------------

    def plots(self) -> dict[str, Path]:
        """The report's plots (`manyminds report`), drawn once, on first asking."""
        with self._plots_lock:
            if self._plots is None:
                from manyminds.bench.report import load_runs, write_report

                try:
                    written = write_report(load_runs(self.path), Path(self._folder.name) / "report")
                except ConfigError:
                    written = {}
                self._plots = {name: path for name, path in written.items() if path.suffix == ".png"}
            return self._plots

    def close(self) -> None:
        self._folder.cleanup()


def _short(text: str | None, limit: int = 300) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(source: Any) -> str:
    """A stored short-form source's kind: "sample" unless it names evidence ("synthesis", ...)."""
    from manyminds.types import EVIDENCE_KINDS

    if not isinstance(source, str):
        return "sample"
    for part in source.split("/"):
        head = part.split("-")[0]
        if head in EVIDENCE_KINDS:
            return head
    return "sample"


def _token_confidence(logprobs: Any) -> float | None:
    """The sample's mean token probability (exp of the mean log probability), where it was recorded."""
    if not logprobs:
        return None
    values = [float(t["logprob"]) for t in logprobs if isinstance(t, dict) and t.get("logprob") is not None]
    return math.exp(sum(values) / len(values)) if values else None


class _Handler(BaseHTTPRequestHandler):
    library: Library
    page: bytes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a local viewer
        return

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if not parts:
                return self._send(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
            if parts[0] == "api":
                return self._json(self._api(parts[1:], query))
            if parts[0] == "plots" and len(parts) == 2:
                plot = self.library.plots().get(parts[1].removesuffix(".png"))
                if plot is None:
                    raise KeyError(parts[1])
                return self._send(HTTPStatus.OK, plot.read_bytes(), "image/png")
            raise KeyError(url.path)
        except (KeyError, ValueError) as error:
            self._json({"error": f"not found: {error}"}, HTTPStatus.NOT_FOUND)
        except sqlite3.Error as error:
            self._json({"error": f"the cache could not be read: {error}"}, HTTPStatus.SERVICE_UNAVAILABLE)

    def _api(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts == ["runs"]:
            return {"path": str(self.library.path), "runs": self.library.runs(),
                    "plots": sorted(self.library.plots()) if query.get("plots") == "1" else None}
        if len(parts) == 2 and parts[0] == "runs":
            return self.library.questions(int(parts[1]))
        if len(parts) == 4 and parts[0] == "runs" and parts[2] == "questions":
            return self.library.question(int(parts[1]), int(parts[3]))
        if parts == ["diff"]:
            return self.library.diff(int(query["a"]), int(query["b"]))
        if parts == ["plots"]:
            return sorted(self.library.plots())
        raise KeyError("/api/" + "/".join(parts))

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode(),
                   "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                    "script-src 'self' 'unsafe-inline'; img-src 'self'")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page moved on before the reply
            pass


class ViewerServer(ThreadingHTTPServer):
    """The viewer's HTTP server; `library` is the cache it shows."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], library: Library) -> None:
        page = resources.files("manyminds.view").joinpath("page.html").read_bytes()
        super().__init__(address, type("Handler", (_Handler,), {"library": library, "page": page}))
        self.library = library

    def server_close(self) -> None:
        super().server_close()
        self.library.close()


def make_server(path: "str | Path", host: str = "127.0.0.1", port: int = 8765) -> ViewerServer:
    """The viewer's HTTP server over the cache at `path` (call `serve_forever`, then `shutdown` and
    `server_close`); port 0 takes a free one (`server_address[1]`)."""
    return ViewerServer((host, port), Library(path))
