"""Short versions of bench/soak.py: real function processes behind the emulator's topic, the API
faulting at 20 %, processes killed with SIGKILL and restarted, the store's server killed and
restarted. Every eligible failure is retried exactly once: no double, none missed, none over
budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.soak import SoakConfig, SoakResult, run_soak
from emulator.faults import KINDS


def soak(tmp_path: Path, **overrides: Any) -> SoakResult:
    settings: dict[str, Any] = {"jobs": 200, "waves": 4, "wave_gap_s": 0.3, "speedup": 20.0,
                                "processes": 2, "max_seconds": 60.0, "quiet": True, "workdir": tmp_path}
    settings.update(overrides)
    result = run_soak(SoakConfig(**settings))
    print("\n" + result.report())
    return result


def assert_exactly_once(result: SoakResult) -> None:
    assert result.finished, result.report()
    assert result.doubles == [], result.report()
    assert result.missed == [], result.report()
    assert result.over_budget == [], result.report()
    assert result.retries == result.due


def test_every_eligible_failure_is_retried_exactly_once_while_the_api_faults_at_20_percent(
    tmp_path: Path,
) -> None:
    result = soak(tmp_path, fault_rate=0.2, jobs=300, waves=20, seed=11)
    assert_exactly_once(result)
    # The faults really happened, every kind of them (the ambiguous lost answer included).
    assert set(result.faults) == set(KINDS), result.faults
    assert result.retry_refused_not_failed == 0


def test_every_eligible_failure_is_retried_exactly_once_when_function_processes_are_killed(
    tmp_path: Path,
) -> None:
    result = soak(tmp_path, fault_rate=0.1, kill_every=1.5, kill_on_retry=0.5, waves=20, wave_gap_s=0.6,
                  seed=12)
    assert result.kills >= 3 and result.kills_in_retry >= 1, result.report()
    assert result.restarts >= 1
    assert_exactly_once(result)


def test_deliveries_during_a_store_outage_get_5xx_are_redelivered_and_retried_exactly_once(
    tmp_path: Path,
) -> None:
    result = soak(tmp_path, store="redis", fault_rate=0.0, jobs=200, waves=8, wave_gap_s=0.5,
                  outage_at=1.5, outage_s=2.0, seed=13)
    assert result.outage_pushes_5xx > 0, result.report()
    assert result.outage_lost == 0 and result.outage_redelivered_ok > 0, result.report()
    assert_exactly_once(result)
