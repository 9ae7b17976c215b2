"""`manyminds view`: time to the first screen on a 1,000-question x 16-sample run, in Chromium.

A cache with two runs over the same 1,000 questions (one sample, and self-consistency with 16) is
made with a Scripted backend (answers spread over a few values, so tallies are real); the viewer
serves it on 127.0.0.1 and Debian's Chromium (headless, through Playwright) opens it. Timed, from
navigation to the rows being on the screen: the runs table (the first screen, the viewer's first
request; the report's plots are drawn after it, on the first visit; goal < 1 s), the
16-sample run's question list, one question's 16 candidates, and the diff of the two runs (which
also computes the paired bootstrap). Needs `chromium` (Debian) and `playwright` (pip).

    .venv/bin/python benchmarks/viewer.py
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from _common import record

QUESTIONS = 1000
SAMPLES = 16


def make_cache(path: Path) -> None:
    from manyminds.backends.scripted import Scripted
    from manyminds.bench.runner import run
    from manyminds.strategies import make
    from manyminds.types import Task

    def reply(messages, params, index):
        k = int(messages[-1].content.split("Question ")[1].split(":")[0])
        return f"Working it out step by step for question {k}. The answer is {k + (index * 7 + k) % 3}."

    tasks = [Task(question=f"Question {k}: what is {k} plus nothing?", gold=str(k), id=f"q{k}")
             for k in range(QUESTIONS)]
    run(tasks, {"single": make("self-consistency", 1, seed=1), "sc16": make("self-consistency", SAMPLES, seed=1)},
        backend=Scripted(reply), cache=path, progress=False, concurrency=64)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from manyminds.view import make_server

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "runs.db"
        began = time.perf_counter()
        make_cache(path)
        print(f"cache of {QUESTIONS} x {SAMPLES} made in {time.perf_counter() - began:.1f} s "
              f"({path.stat().st_size / 1e6:.1f} MB)", flush=True)
        server = make_server(path, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        timings: dict[str, float] = {}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})

                def timed(name: str, target: str, selector: str) -> None:
                    began = time.perf_counter()
                    page.goto(target)
                    page.wait_for_selector(selector)
                    timings[name] = round(time.perf_counter() - began, 3)
                    print(name, timings[name], "s", flush=True)

                page.goto("about:blank")  # the browser itself started: not the viewer's time
                timed("runs_table_s", url + "#/", "#runs tr.link")
                timed("run_questions_s", url + "#/run/2", f"#questions tr.link >> nth={QUESTIONS - 1}")
                timed("question_candidates_s", url + "#/run/2/q/500", f"#candidates .card >> nth={SAMPLES - 1}")
                timed("diff_s", url + "#/diff/1/2?all=1", "#diffsummary")
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    result = {"questions": QUESTIONS, "samples": SAMPLES, **timings, "goal": "runs table < 1 s",
              "met": timings["runs_table_s"] < 1.0}
    print("written", record("viewer", result))


if __name__ == "__main__":
    main()
