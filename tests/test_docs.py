"""The documentation site: its strategy pages are what the code says now, and `mkdocs build --strict`
passes (every link, every reference, every docstring the API pages render). Its code blocks run
under `make test` (pytest --markdown-docs docs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_strategy_pages_are_current():
    done = subprocess.run([sys.executable, "docs/_tools/strategy_pages.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    built = tmp_path / "site"
    assert (built / "index.html").is_file() and (built / "strategies" / "moa" / "index.html").is_file()
    reference = (built / "reference" / "index.html").read_text()
    assert "Session" in reference and "StreamingBackend" in reference  # the API pages were rendered
