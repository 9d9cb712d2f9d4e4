"""How the retrier paces itself: leases, backoff and the API's rates, scaled for the emulator."""

from __future__ import annotations

from dataclasses import dataclass, field

from handler.gateway import RATE_LIMITS

CALL_TIMEOUT_S = 5.0  # a Batch API call that has no answer by then is given up (ambiguous)
RENEWED_LEASE_S = 8.0


@dataclass(frozen=True)
class Settings:
    lease_s: float = 60.0  # a claim or a taken entry is ours this long
    # The drainer's lease and the sweep walk's: renewed while their holder works, so one that died
    # holds the fleet's drain (or a region's walk) this long at most.
    renewed_lease_s: float = RENEWED_LEASE_S
    recheck_s: float = 30.0  # after an ambiguous RetryJobs, re-read the job this much later
    backoff_base_s: float = 1.0  # after a throttle or transient error: base·2^n, full jitter…
    backoff_cap_s: float = 60.0  # …capped here
    dry_run: bool = False
    rates: dict[str, float] = field(default_factory=lambda: dict(RATE_LIMITS))
    regions: tuple[str, ...] = ("ap-guangzhou",)
    max_token_wait_s: float = 5.0
    window_s: float = 1.0  # the API counts `rate * window_s` calls per window of this length
    call_timeout_s: float = CALL_TIMEOUT_S
    # A FAILED job still showing the EndTime of a failure we retried this long ago failed again
    # (see handler.retrier.verify.check): a retried job leaves FAILED long before.
    refail_after_s: float = 300.0

    @classmethod
    def scaled(cls, speedup: float = 1.0, *, dry_run: bool = False,
               regions: tuple[str, ...] = ("ap-guangzhou",)) -> Settings:
        """The settings for an API `speedup` times faster than Tencent's (the emulator's
        AUTORETRY_API_SPEEDUP; 1 in production): every pace scales with it. A claim's lease
        always outlasts a RetryJobs call by a wide margin: the lease keeps a second caller out."""
        fast = max(speedup, 1.0)
        timeout_s = max(1.0, CALL_TIMEOUT_S / fast)
        return cls(dry_run=dry_run, regions=regions,
                   rates={a: r * speedup for a, r in RATE_LIMITS.items()},
                   window_s=1.0 / speedup, lease_s=max(3 * timeout_s + 2, 60.0 / fast),
                   renewed_lease_s=max(3.0, RENEWED_LEASE_S / fast),
                   recheck_s=30.0 / fast, backoff_base_s=1.0 / fast, backoff_cap_s=60.0 / fast,
                   call_timeout_s=timeout_s, refail_after_s=300.0 / fast)
