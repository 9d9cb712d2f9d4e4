"""handler.commands.one_line: errors a user can fix become one line and exit 1 (a runtime failure;
a UsageError exits 2: tests/cli/test_bad_arguments.py); a bug keeps its traceback."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from handler.commands import Refused, one_line
from handler.config import ConfigError
from handler.gateway import ApiError, ErrorKind
from handler.ledger.store import StoreUnavailable
from handler.policy.loader import PolicyError


def _raising(error: BaseException) -> Callable[[list[str]], int]:
    @one_line("python -m handler thing")
    def main(argv: list[str]) -> int:
        raise error

    return main


@pytest.mark.parametrize(("error", "line"), [
    (Refused("no ledger at /x"), "no ledger at /x"),
    (ConfigError("AUTORETRY_REGION='x': expected a region"), "AUTORETRY_REGION='x': expected a region"),
    (PolicyError("limits.max_attempts: expected a number"),
     "AUTORETRY_POLICY: limits.max_attempts: expected a number"),
    (StoreUnavailable("redis://127.0.0.1:1/0: refused"),
     "ledger unavailable: redis://127.0.0.1:1/0: refused (is it running? AUTORETRY_STORE names it)"),
    (ApiError("DescribeJobs", ErrorKind.TRANSIENT, "AuthFailure.SecretIdNotFound", "no such id"),
     "the Batch API refused the credentials (AuthFailure.SecretIdNotFound): set "
     "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY"),
    (ConfigError("two\nlines"), "two lines"),
])
def test_a_known_error_is_one_line_and_exit_1(error: Exception, line: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(error)([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"python -m handler thing: {line}")


def test_a_policy_error_wrapped_by_the_app_still_names_autoretry_policy(
        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        try:
            raise PolicyError("inline policy: not valid JSON")
        except PolicyError as e:
            raise ConfigError(str(e)) from None
    except ConfigError as wrapped:
        assert _raising(wrapped)([]) == 1
    assert "AUTORETRY_POLICY: inline policy: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ValueError("a bug"), KeyError("k")])
def test_any_other_error_is_a_bug_and_keeps_its_traceback(error: Exception) -> None:
    with pytest.raises(type(error)):
        _raising(error)([])
