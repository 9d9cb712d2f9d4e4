"""Every AUTORETRY_NOTIFY_* setting is checked when the function builds its parts, whether or not a
channel URL is set; with none set, the notification code is not loaded at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handler import app
from handler.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WECOM_KEY = "k3y-that-must-not-be-shown"


@pytest.fixture
def no_notify_env(function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("AUTORETRY_NOTIFY_")]:
        monkeypatch.delenv(name)
    return function_env


@pytest.mark.parametrize(("name", "value", "said"), [
    ("AUTORETRY_NOTIFY_ON", "bogus", "unknown outcome(s) bogus"),
    ("AUTORETRY_NOTIFY_TIMEOUT_S", "90", "expected seconds from 0.1 to 30"),
    ("AUTORETRY_NOTIFY_BACKOFF_S", "0", "expected seconds from 1 to 1800"),
    ("AUTORETRY_NOTIFY_WEBHOOK_SECRET", "s3cret", "is set but AUTORETRY_NOTIFY_WEBHOOK_URL is not"),
    ("AUTORETRY_NOTIFY_WECOM_URI", f"https://wecom.test/send?key={WECOM_KEY}",
     "did you mean AUTORETRY_NOTIFY_WECOM_URL?"),
], ids=["outcome", "timeout", "backoff", "secret-alone", "misspelt-url"])
def test_a_wrong_notify_setting_refuses_to_start_with_no_channel_url_set(
        no_notify_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        app.runtime()
    message = str(refused.value)
    assert message.startswith(name) and said in message
    assert "\n" not in message and WECOM_KEY not in message and "s3cret" not in message


def test_a_wrong_notify_setting_is_refused_before_the_store_is_opened(
        no_notify_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As a broken policy: nothing is left open (here, no SQLite file is even made).
    monkeypatch.setenv("AUTORETRY_NOTIFY_ON", "bogus")
    with pytest.raises(ConfigError):
        app.runtime()
    assert not no_notify_env.exists()


def test_a_delivery_to_a_function_with_a_bogus_outcome_is_answered_503_and_logged(
        no_notify_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_NOTIFY_ON", "bogus")
    answer = app.main_handler({"httpMethod": "GET", "headers": {}, "path": "/events"}, {})
    assert answer["statusCode"] == 503
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    errors = [ln["error"] for ln in lines if ln["message"] == "configuration error"]
    assert len(errors) == 1 and errors[0].startswith("AUTORETRY_NOTIFY_ON: unknown outcome(s) bogus")


def test_without_any_notify_setting_the_notify_package_is_not_loaded(tmp_path: Path) -> None:
    # A fresh interpreter, as a cold start: a sweep runs, and nothing of handler.notify is imported.
    script = ("import json, sys\nfrom handler import app\n"
              f"event = json.load(open({str(ROOT / 'events' / 'scf-timer.json')!r}))\n"
              "assert app.main_handler(event, {'time_limit_in_ms': 2000})['statusCode'] == 200\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                          "AUTORETRY_STORE": f"sqlite:///{tmp_path / 'l.db'}",
                                          "AUTORETRY_LOCAL": "true"})
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "handler.retrier" in loaded  # the sweep did run
    assert sorted(m for m in loaded if m.startswith("handler.notify")) == []
