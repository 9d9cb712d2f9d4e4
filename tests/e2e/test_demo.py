"""`python -m handler demo` (what `make demo` runs) tells the story its table promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_retries_what_deserves_it_skips_the_bug_and_finds_the_lost_notice(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))} | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "handler", "demo", "--seconds", "90"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {m["name"]: m for m in re.finditer(
        r"^job-\w+\s+(?P<name>\S+)\s+.+?\s+(?P<runs>\d+)\s+(?P<retries>\d+)\s+(?P<final>[A-Z_]+)\s+"
        r"(?P<last>.*)$", run.stdout, re.M)}
    got = {name: (int(m["retries"]), m["final"]) for name, m in rows.items()}
    assert got == {
        "render-spot-1": (1, "SUCCEED"), "render-spot-2": (2, "SUCCEED"),
        "etl-flaky-mount": (1, "SUCCEED"), "train-bug": (3, "FAILED"),
        "report-ok": (0, "SUCCEED"), "index-ok": (0, "SUCCEED"), "lost-notice": (1, "SUCCEED"),
    }, run.stdout
    assert rows["train-bug"]["last"].startswith("max_attempts: ")
    assert ", 0 throttled" in run.stdout
    assert (tmp_path / "var" / "demo.db").exists()
    assert '"level"' not in run.stdout  # the function's JSON log lines stay out of the table


def test_demo_shows_progress_the_duplicates_it_absorbed_and_the_commands_to_follow(tmp_path: Path
                                                                                   ) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))} | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "handler", "demo", "--seconds", "90",
                          "--duplicates", "2"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=150)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    progress = re.findall(r"^\s+(\d+) s  (\d+) failures so far, (\d+) retried; (\d+) notices "
                          r"delivered \((\d+) duplicates absorbed\); (\d+) RetryJobs calls$", out, re.M)
    assert progress, out  # the demo takes ~10 s; a line every 3 s
    elapsed = [int(p[0]) for p in progress]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 2
    [headline] = re.findall(r"^(\d+) notices delivered, (\d+) duplicates absorbed, (\d+) RetryJobs "
                            r"calls: (\d+) retries for (\d+) failures$", out, re.M)
    delivered, duplicates, calls, retries, failures = map(int, headline)
    # 8 failures are published (train-bug 4, render-spot-2 2, two others 1 each; the lost notice
    # none), each pushed 3 times: every copy after the first of a message is a duplicate.
    assert (delivered, duplicates) == (24, 16), out
    assert (retries, failures) == (8, 9), out
    assert 1 <= calls <= retries
    train_bug = re.search(r"^(job-\w+)\s+train-bug\s", out, re.M)
    assert train_bug is not None
    assert (f"AUTORETRY_STORE=sqlite:///var/demo.db .venv/bin/python -m handler ledger show "
            f"{train_bug[1]}") in out
    assert "AUTORETRY_STORE=sqlite:///var/demo.db .venv/bin/python -m handler ledger list" in out
