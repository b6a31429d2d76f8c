"""The test run's scheduling (scripts/run_tests.sh): ``pytest -n 2 --dist loadfile`` keeps each file on one worker.

The expensive module fixtures (tests/test_grading.py grades a class of twenty, tests/test_instructor.py grades
every exercise pair) are made once only if all of a file's tests run in one worker process; a scheduler that
spreads them makes each fixture once per worker (under pytest 9, ``--dist loadgroup`` did, silently).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FILE = """
import os
import pytest

def log(what):
    with open(os.environ["SCHEDULING_LOG"], "a") as f:
        f.write(f"{what} {__name__} {os.getpid()}\\n")

@pytest.fixture(scope="module")
def made():
    log("MADE")

@pytest.mark.parametrize("i", range(8))
def test_one(made, i):
    log("RAN")
"""


def _pytest_options() -> list[str]:
    """The options scripts/run_tests.sh gives pytest (up to the test folder)."""
    line = next(x for x in (ROOT / "scripts" / "run_tests.sh").read_text().splitlines() if " -m pytest " in x)
    words = shlex.split(line.split(" -m pytest ", 1)[1])
    return words[: words.index("tests")]


def test_run_tests_keeps_each_file_on_one_worker_and_makes_module_fixtures_once(tmp_path):
    options = _pytest_options()
    assert "-n" in options, options
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text(FILE)
    options = [o for o in options if not o.startswith("--durations")]
    cmd = [sys.executable, "-m", "pytest", *options, "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)]
    log = tmp_path / "log.txt"
    env = {**os.environ, "SCHEDULING_LOG": str(log)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    made = re.findall(r"MADE (test_\w) (\d+)", log.read_text())
    ran = set(re.findall(r"RAN (test_\w) (\d+)", log.read_text()))
    assert sorted(m for m, _ in made) == ["test_a", "test_b"], f"a module fixture was made more than once: {made}"
    assert len(ran) == 2 and {m for m, _ in ran} == {"test_a", "test_b"}, f"a file's tests ran on two workers: {ran}"
