"""`python -m handler ledger init [--adopt]`: the identity a deployment passes as
AUTORETRY_LEDGER_ID, alone on the last line; the same every time; a ledger that forgot is refused
until adopted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from emulator.forget import drop_ledger


def ledger(tmp_path: Path, *args: str, ledger_id: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORETRY_")}
    env["AUTORETRY_STORE"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    if ledger_id:
        env["AUTORETRY_LEDGER_ID"] = ledger_id
    return subprocess.run([sys.executable, "-m", "handler", "ledger", "init", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_init_prints_one_identity_and_the_same_one_again(tmp_path: Path) -> None:
    first = ledger(tmp_path)
    assert first.returncode == 0, first.stderr
    identity = first.stdout.strip().splitlines()[-1]
    assert identity and " " not in identity
    again = ledger(tmp_path, ledger_id=identity)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == identity


def test_a_ledger_that_forgot_is_refused_until_adopted_with_a_new_identity(tmp_path: Path) -> None:
    identity = ledger(tmp_path).stdout.strip().splitlines()[-1]
    drop_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    refused = ledger(tmp_path, ledger_id=identity)
    assert refused.returncode == 1  # a runtime failure, as for every command
    assert "--adopt" in refused.stderr and "Traceback" not in refused.stderr
    adopted = ledger(tmp_path, "--adopt", ledger_id=identity)
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout.strip().splitlines()[-1] != identity
