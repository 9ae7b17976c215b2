"""Reports from stored runs: intervals, the accuracy-by-samples curve, calibration, and the files written."""

import json

import pytest

import manyminds as mm
from manyminds.backends import Scripted
from manyminds.bench.report import calibration, load_runs, samples_curve, write_report
from manyminds.bench.runner import bootstrap_interval
from manyminds.errors import ConfigError
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

PNG = b"\x89PNG\r\n\x1a\n"


def _three_in_four_right(messages, params, index):
    """Samples 0, 1, 2 of every question right, sample 3 wrong: one sample is right 3/4 of the time."""
    return "The answer is 4." if index % 4 != 3 else "The answer is 5."


def _tasks(count=20):
    return [Task(question=f"Question {k}: what is 2 + 2?", gold="4", id=f"q{k}") for k in range(count)]


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    small = bootstrap_interval([1, 0] * 10)
    large = bootstrap_interval([1, 0] * 500)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert bootstrap_interval([1, 0] * 10) == small  # seeded


def test_the_samples_curve_is_computed_by_subsampling_the_stored_samples(tmp_path):
    report = mm.bench.run(_tasks(), [SelfConsistency(n=8)], backend=Scripted(_three_in_four_right),
                          cache=tmp_path / "c.db", progress=False)
    curve = samples_curve(report.runs[0])
    ks = [p["k"] for p in curve]
    assert ks == [1, 2, 3, 4, 6, 8]
    by_k = {p["k"]: p["accuracy"] for p in curve}
    assert by_k[1] == pytest.approx(0.75, abs=0.04)  # a random sample is right 6 times in 8
    assert by_k[8] == 1.0 == report.runs[0].accuracy  # every sample: the stored vote
    assert by_k[3] > by_k[1]
    assert all(p["low"] <= p["accuracy"] <= p["high"] for p in curve)


def test_calibration_error_is_the_weighted_gap_between_confidence_and_accuracy(tmp_path):
    report = mm.bench.run(_tasks(10), [SelfConsistency(n=4)], backend=Scripted(_three_in_four_right),
                          cache=tmp_path / "c.db", progress=False)
    table = calibration(report.runs[0])
    # every vote is 3 of 4 (confidence 0.75) and right: one bin, gap 0.25
    assert table["ece"] == pytest.approx(0.25) and len(table["bins"]) == 1 and table["questions"] == 10


def test_a_report_from_a_small_run_writes_markdown_json_and_plots(tmp_path):
    db = tmp_path / "c.db"
    mm.bench.run(_tasks(12), {"one": SelfConsistency(n=1), "vote": SelfConsistency(n=8)},
                 backend=Scripted(_three_in_four_right), cache=db, progress=False)
    runs = load_runs(db)
    assert [r.label for r in runs] == ["one", "vote"]
    written = write_report(runs, tmp_path / "out", prices={"*": 1e-6})
    assert set(written) == {"json", "comparisons", "markdown", "accuracy_vs_samples", "accuracy_vs_compute",
                            "calibration"}
    assert "## Paired comparisons" in written["markdown"].read_text()
    for name in ("accuracy_vs_samples", "accuracy_vs_compute", "calibration"):
        data = written[name].read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    summary = json.loads(written["json"].read_text())
    assert summary[1]["label"] == "vote" and summary[1]["accuracy"] == 1.0 and summary[1]["curve"][-1]["k"] == 8
    assert summary[0]["cost_per_question"] == pytest.approx(summary[0]["tokens_per_question"] * 1e-6)
    markdown = written["markdown"].read_text()
    assert "| 2 | vote | tasks | scripted | 100.0% (12) |" in markdown and "![calibration](calibration.png)" in markdown
    assert "k=1: 7" in markdown  # 75% or so at one sample


def test_report_errors_name_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="no cache file"):
        load_runs(tmp_path / "none.db")
    db = tmp_path / "c.db"
    mm.bench.run(_tasks(2), [SelfConsistency(n=2)], backend=Scripted(_three_in_four_right), cache=db, progress=False)
    with pytest.raises(ConfigError, match="has no run 7; its runs: 1"):
        load_runs(db, [7])


def test_a_selective_run_reports_what_it_answered_and_its_accuracy_against_coverage(tmp_path):
    def split(messages, params, index):
        """Questions 0-4 unanimous and right; 5-9 split 3 to 2, the majority wrong."""
        if "Question 5" in messages[-1].content or any(f"Question {k}:" in messages[-1].content for k in range(6, 10)):
            return "The answer is 5." if index % 5 < 3 else "The answer is 4."
        return "The answer is 4."

    strategies = {"vote": SelfConsistency(n=10), "selective": SelfConsistency(n=10, aggregator="selective")}
    report = mm.bench.run(_tasks(10), strategies, backend=Scripted(split), cache=tmp_path / "c.db", progress=False)
    from manyminds.bench.report import selective

    vote, chosen = selective(report.run("vote")), selective(report.run("selective"))
    assert vote["answered"] == 1.0 and vote["selective_accuracy"] == 0.5
    assert [p["accuracy"] for p in vote["risk_coverage"]][:1] == [0.5] and vote["risk_coverage"][-1]["accuracy"] == 1.0
    assert chosen["answered"] == 0.5 and chosen["selective_accuracy"] == 1.0, "the split votes abstain"
    written = write_report(report.runs, tmp_path / "report")
    text = written["markdown"].read_text()
    assert "## Selective answering: accuracy against coverage" in text
    assert "| selective | 50.0% | 100.0% |" in text
