"""A cold start pays only for what its path needs (issue 10): checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "yaml", "redis", "boto3", "botocore", "tencentcloud", "aws_lambda_powertools",
         "handler.policy.loader", "handler.policy.rules", "handler.retrier", "handler.ledger.ledger")


def loaded_after(code: str, tmp_path: Path, **env: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                          "AUTORETRY_STORE": f"sqlite:///{tmp_path / 'l.db'}",
                                          "AUTORETRY_LOCAL": "true", **env})
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_entry_module_loads_nothing_heavy(tmp_path: Path) -> None:
    assert heavy_in(loaded_after("import handler.app", tmp_path)) == []


def test_a_refused_request_loads_nothing_heavy(tmp_path: Path) -> None:
    code = ("from handler import app\n"
            "answer = app.main_handler({'httpMethod': 'POST', 'headers': {}, 'queryString': {},"
            " 'path': '/events', 'body': '{}'}, {})\n"
            "assert answer['statusCode'] == 401, answer\n")
    assert heavy_in(loaded_after(code, tmp_path, AUTORETRY_LOCAL="false",
                                 AUTORETRY_AUTH_TOKEN="t0ken")) == []


def test_without_a_policy_file_no_yaml_loader_or_rule_models_are_loaded(tmp_path: Path) -> None:
    code = ("import json\nfrom handler import app\n"
            f"event = json.load(open({str(ROOT / 'events' / 'scf-timer.json')!r}))\n"
            "app.main_handler(event, {'time_limit_in_ms': 2000})\n")
    loaded = loaded_after(code, tmp_path)
    assert "handler.retrier" in loaded  # the sweep did run
    assert [m for m in heavy_in(loaded) if m.startswith(("yaml", "handler.policy.loader",
                                                         "handler.policy.rules"))] == []
