"""The answers the emulator gives where Tencent documents nothing: each a switch, so tests can prove
the function safe whichever way the real service behaves. The defaults are the emulator's original
guesses. Every field may be changed on a running emulator (`emu.behaviour.listing_order = ...`)."""

from __future__ import annotations

from dataclasses import dataclass

# RetryJobs naming several jobs, some not FAILED:
#   refuse-all              nothing is retried; the call answers UnsupportedOperation
#   apply-some-then-refuse  the FAILED ones ARE retried, then the call answers the same error
RETRY_REFUSALS = ("refuse-all", "apply-some-then-refuse")

# A job that fails again after a retry:
#   new            its EndTime moves on (at least 1 s after the previous failure's)
#   keep-end-time  it reports the EndTime of its earlier failure
REFAILURE_END_TIMES = ("new", "keep-end-time")

# The order of DescribeJobs' listing (Filters, not JobIds):
#   newest-first  by creation, newest first
#   oldest-first  by creation, oldest first
#   unordered     a fixed shuffle: the same order on every call, unrelated to age
LISTING_ORDERS = ("newest-first", "oldest-first", "unordered")

# When the Tag service refuses to write a Batch job's tags (tags_writable=False):
#   error             the whole call answers InvalidParameterValue.ServiceTypeInvalid
#   failed-resources  the call succeeds but lists every job in FailedResources
TAG_REFUSALS = ("error", "failed-resources")

# How "N requests per second" is counted, per action, on arrival (a refused request counts for
# nothing):
#   window  at most N in any window of one second (a sliding window)
#   bucket  a token bucket refilled at N per second and holding one token: requests at least 1/N
#           apart (a gateway's limit without burst allowance; a bucket holding more tokens admits
#           all that this one does)
RATE_LIMITS = ("window", "bucket")

# The StateReason of a job that TerminateJob ended (it ends FAILED; the wording is undocumented):
#   marked    it says so: "terminated by user" (its instance's ExitCode is lost_exit_code: the
#             node was stopped, no process reported)
#   unmarked  nothing tells it from an ordinary task failure: "task failed", ExitCode 1
TERMINATE_REASONS = ("marked", "unmarked")

# DescribeCmqQueueDetail naming a queue that does not exist (TDMQ's SDKs list both codes for it,
# and no document says which one a missing queue gets):
#   ResourceNotFound  the resource is missing
#   FailedOperation   the operation failed
ABSENT_QUEUE_CODES = ("ResourceNotFound", "FailedOperation")


@dataclass
class Behaviour:
    retry_refusal: str = "refuse-all"
    refailure_end_time: str = "new"
    listing_order: str = "newest-first"
    tags_writable: bool = True
    tag_refusal: str = "error"
    rate_limit: str = "window"
    terminate_reason: str = "marked"
    absent_queue_code: str = "ResourceNotFound"
    # ExitCode of an instance whose node vanished (spot reclaimed, terminated by the user): the
    # real API always answers an integer, and which one is undocumented.
    lost_exit_code: int = -1

    def __post_init__(self) -> None:
        for name, allowed in (("retry_refusal", RETRY_REFUSALS), ("refailure_end_time", REFAILURE_END_TIMES),
                              ("listing_order", LISTING_ORDERS), ("tag_refusal", TAG_REFUSALS),
                              ("rate_limit", RATE_LIMITS), ("terminate_reason", TERMINATE_REASONS),
                              ("absent_queue_code", ABSENT_QUEUE_CODES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} is one of {', '.join(allowed)}, not {value!r}")
        if not isinstance(self.lost_exit_code, int) or isinstance(self.lost_exit_code, bool):
            raise ValueError("lost_exit_code must be an integer")
