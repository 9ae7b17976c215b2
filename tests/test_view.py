"""`manyminds view DB`: the runs, a run's questions with filters, every candidate of a question, two
runs side by side; read-only on the file. The page itself is driven in Debian's Chromium (headless,
through Playwright), clicking from the runs table into a question."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest

from manyminds.backends.scripted import Scripted
from manyminds.bench.runner import run
from manyminds.strategies import make
from manyminds.types import Task
from manyminds.view import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUESTIONS = [Task(question=f"What is {k} + 3?", gold=str(k + 3), id=f"q{k}") for k in range(12)]


def reply(messages, params, index):
    """Right on most samples; questions 0-3 split or wrong, so filters and the diff have work."""
    k = int(messages[-1].content.split("What is ")[1].split(" ")[0])
    if k < 2:
        return f"The answer is {k + 4}."  # always wrong
    if k < 4:
        return f"The answer is {k + 3 + index % 2}."  # split between right and wrong
    return f"I think it is {k + 3}. The answer is {k + 3}." if index % 3 else "No idea."


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("view") / "runs.db"
    run(QUESTIONS, {"single": make("self-consistency", 1, seed=2), "sc6": make("self-consistency", 6, seed=2)},
        backend=Scripted(reply), cache=path, progress=False)
    return path


@pytest.fixture(scope="module")
def viewer(cache):
    server = make_server(cache, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_the_runs_table_agrees_with_the_benchmark_report(cache, viewer):
    from manyminds.bench.report import load_runs

    runs = get(viewer + "api/runs")["runs"]
    reports = {r.run_id: r for r in load_runs(cache)}
    assert [r["label"] for r in runs] == ["single", "sc6"]
    for row in runs:
        report = reports[row["id"]]
        assert row["accuracy"] == pytest.approx(report.accuracy) and row["questions"] == report.questions
        assert (row["low"], row["high"]) == pytest.approx(report.interval())
    assert runs[1]["samples_per_question"] == 6


def test_a_question_shows_every_candidate_its_vote_and_the_decision(viewer):
    sc6 = get(viewer + "api/runs")["runs"][1]["id"]
    questions = get(viewer + f"api/runs/{sc6}")["questions"]
    split = next(q for q in questions if q["task_id"] == "q2")
    assert split["distinct"] == 2 and split["confidence"] == pytest.approx(0.5)
    detail = get(viewer + f"api/runs/{sc6}/questions/{split['position']}")
    assert len(detail["candidates"]) == 6 and detail["tally"] == {"5": 3.0, "6": 3.0}
    assert [c["answer"] for c in detail["candidates"]] == ["5", "6", "5", "6", "5", "6"]
    assert all(c["votes"] for c in detail["candidates"])
    assert sum(c["won"] for c in detail["candidates"]) == 3 and detail["decision"]["aggregator"] == "majority"
    unreadable = get(viewer + f"api/runs/{sc6}/questions/{next(q['position'] for q in questions if q['task_id'] == 'q6')}")
    assert [c["votes"] for c in unreadable["candidates"]].count(False) == 2  # "No idea." does not vote
    assert {o["label"] for o in detail["others"]} == {"single"}


def test_filters_and_the_diff_count_what_they_should(viewer):
    single, sc6 = (r["id"] for r in get(viewer + "api/runs")["runs"])
    questions = get(viewer + f"api/runs/{single}")["questions"]
    # one sample: index 0 is wrong on q0-q1 and unreadable ("No idea.") on q4-q11
    assert {q["task_id"] for q in questions if q["correct"] == 0} == {f"q{k}" for k in range(12)} - {"q2", "q3"}
    diff = get(viewer + f"api/diff?a={single}&b={sc6}")
    assert diff["shared"] == len(QUESTIONS)
    wrong_a = {q["task_id"] for q in diff["questions"] if q["correct_a"] == 0}
    wrong_b = {q["task_id"] for q in diff["questions"] if q["correct_b"] == 0}
    assert diff["only_a_right"] == len(wrong_b - wrong_a) == 0
    assert diff["only_b_right"] == len(wrong_a - wrong_b) == 8  # six samples outvote the unreadable ones
    assert diff["paired"]["difference"] == pytest.approx(8 / 12) and diff["paired"]["low"] > 0
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(viewer + "api/runs/99")
    assert missing.value.code == 404


def test_viewing_never_writes_to_the_file(cache, viewer):
    before = hashlib.sha256(cache.read_bytes()).hexdigest()
    first = get(viewer + "api/runs")["runs"][0]["id"]
    get(viewer + f"api/runs/{first}")
    get(viewer + f"api/runs/{first}/questions/0")
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == before


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install-browser)")
def test_the_page_in_chromium_from_the_runs_to_a_question_and_a_diff(viewer, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(viewer)
            page.wait_for_selector("#runs tr.link")
            rows = page.locator("#runs tr.link")
            assert rows.count() == 2 and "sc6" in rows.nth(1).inner_text()
            page.wait_for_selector("#plots img")
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)

            rows.nth(1).locator("td").nth(2).click()  # into the sc6 run
            page.wait_for_selector("#questions tr.link")
            assert page.locator("#questions tr.link").count() == len(QUESTIONS)
            page.click("button[data-filter='disagree']")
            page.wait_for_selector("button[data-filter='disagree'].on")
            differing = page.locator("#questions tr.link").count()
            assert 0 < differing < len(QUESTIONS)
            page.click("button[data-filter='all']")
            page.wait_for_selector("button[data-filter='all'].on")
            page.locator("#questions tr.link", has_text="What is 2 + 3?").click()
            page.wait_for_selector("#candidates .card")
            assert page.locator("#candidates .card").count() == 6
            assert page.locator("#candidates .card.won").count() == 3
            assert "majority" in page.locator("#summary").inner_text()
            page.screenshot(path=str(tmp_path / "question.png"), full_page=True)

            page.goto(viewer + "#/")
            page.wait_for_selector("#runs tr.link")
            for box in page.locator(".pick").all():
                box.check()
            page.click("#diff")
            page.wait_for_selector("#diffsummary")
            assert "questions in both" in page.locator("#diffsummary").inner_text()
            assert page.locator("#difference").inner_text() == "66.7 points"
            page.screenshot(path=str(tmp_path / "diff.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("runs", "question", "diff"))
