"""Failures and their claims: a failure is claimed once, ever; what a claim spends is counted on its
job, within the cap and the fleet's budget, all atomically; a job the operator holds is never
claimed; every decision is kept on the job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handler.jobs import FailureKey, JobRef
from handler.ledger.records import (
    ATTEMPTS,
    DECISIONS_KEPT,
    FINAL_STATES,
    LEASED_STATES,
    ClaimOutcome,
    FailureState,
    Hold,
    Records,
    Spend,
    Spent,
    Step,
    failure_key,
    fleet_key,
    generation,
    hold_key,
    job_key,
    version_of,
    with_generation,
)
from handler.ledger.store import Record, Value, Write


@dataclass(frozen=True)
class Look:
    """What the ledger knows of one job as a flush verifies it: failures claimed earlier whose
    outcome is unknown, the failure it shows now (`current`: the API's key, with the generation the
    ledger knows for that EndTime) with its state and lease end, what the job spent as a decision
    on that failure must see it, when that failure was settled, whether the job was seen out
    of FAILED since its last retry, and the operator's hold on it if there is one."""

    pending: list[FailureKey]
    current: FailureKey | None
    state: tuple[FailureState, float] | None
    spent: Spent
    settled_at: float = 0.0
    left: bool = False
    hold: Hold | None = None

    def failed_again(self, now: float, refail_after_s: float) -> bool:
        """The failure we retried shows again with the same EndTime, and it is a new failure: the
        job was seen out of FAILED since, or the retry is more than `refail_after_s` old (a retried
        job does not stay FAILED that long)."""
        return self.state is not None and self.state[0] == FailureState.RETRIED and (
            self.left or now - self.settled_at > refail_after_s)


class Claims(Records):
    # ---- reading -------------------------------------------------------------------------------

    def look(self, jobs: Sequence[tuple[JobRef, FailureKey | None]]) -> dict[JobRef, Look]:
        """For each (job, the failure the API shows now): pending, state, spend and hold, in one
        read (two for a job that failed again with an EndTime it had before)."""
        keys = [job_key(j) for j, _ in jobs] + [hold_key(j) for j, _ in jobs] + \
            [failure_key(k) for _, k in jobs if k is not None]
        recs = self.store.get(keys) if keys else {}
        current = {job: self._generation_of(recs, job, k) if k else None for job, k in jobs}
        later = [failure_key(k) for (job, api), k in zip(jobs, current.values(), strict=True)
                 if k is not None and k != api]
        if later:
            recs.update(self.store.get(later))
        looks = {}
        for job, key in current.items():
            f = self._live(recs, failure_key(key)) if key else None
            jrec = self._live(recs, job_key(job))
            looks[job] = Look(self._pending(recs, job), key,
                              self._state(recs, key) if key else None, self._spent(recs, job, key),
                              settled_at=float(f.value.get("settled_at") or 0) if f else 0.0,
                              left=bool(jrec and key and jrec.value.get("left") == str(key)),
                              hold=self._hold(recs, job))
        return looks

    def _hold(self, recs: dict[str, Record], job: JobRef) -> Hold | None:
        rec = self._live(recs, hold_key(job))
        return Hold.from_value(job, rec.value) if rec is not None else None

    def _generation_of(self, recs: dict[str, Record], job: JobRef, key: FailureKey) -> FailureKey:
        rec = self._live(recs, job_key(job))
        end, _ = generation(key)
        n = int(((rec.value.get("generations") or {}) if rec else {}).get(end, 0))
        return with_generation(key, n)

    def history(self, job: JobRef, deciding: FailureKey | None = None) -> Spent:
        """Retries the job spent, per counter. With `deciding`, as a decision on that failure must
        see them: a claim on it that is still held (an unclear call, a crashed flusher) already spent
        from its counter, and taking it over spends nothing again, so it does not count against
        itself (else a held claim on the last allowed attempt would be skipped as over the cap)."""
        keys = [job_key(job)] + ([failure_key(deciding)] if deciding is not None else [])
        return self._spent(self.store.get(keys), job, deciding)

    def pending(self, job: JobRef) -> list[FailureKey]:
        """Failures of `job` claimed earlier whose outcome is not yet known."""
        return self._pending(self.store.get([job_key(job)]), job)

    def state(self, key: FailureKey) -> tuple[FailureState, float] | None:
        """The failure's state and lease end, or None if this failure was never seen."""
        return self._state(self.store.get([failure_key(key)]), key)

    def unseen(self, keys: Sequence[FailureKey], refail_after_s: float | None = None
               ) -> set[FailureKey]:
        """The failures among `keys` (as the API reports them) the ledger has no record of. With
        `refail_after_s`, also a failure we retried whose job has since left FAILED, or was retried
        that long ago, and shows the same EndTime again: it failed again (see `look`)."""
        if refail_after_s is None:
            recs = self.store.get([failure_key(k) for k in keys]) if keys else {}
            return {k for k in keys if self._live(recs, failure_key(k)) is None}
        now = self.clock()
        looks = self.look([(k.job, k) for k in keys])
        return {k for k in keys if (look := looks[k.job]).state is None
                or look.failed_again(now, refail_after_s)}

    def _spent(self, recs: dict[str, Record], job: JobRef, deciding: FailureKey | None) -> Spent:
        rec = self._live(recs, job_key(job))
        counters = {k: int(v) for k, v in (rec.value.get("counters", {}) if rec else {}).items()}
        claim = self._live(recs, failure_key(deciding)) if deciding is not None else None
        if claim is not None and claim.value.get("state") in LEASED_STATES:
            counter = str(claim.value.get("counter", ATTEMPTS))
            counters[counter] = max(0, counters.get(counter, 0) - 1)
        return Spent(counters)

    def _pending(self, recs: dict[str, Record], job: JobRef) -> list[FailureKey]:
        rec = self._live(recs, job_key(job))
        return [FailureKey.parse(k) for k in (rec.value.get("pending", []) if rec else [])]

    def _state(self, recs: dict[str, Record], key: FailureKey) -> tuple[FailureState, float] | None:
        rec = self._live(recs, failure_key(key))
        if rec is None:
            return None
        return FailureState(rec.value["state"]), float(rec.value.get("lease_until") or 0.0)

    def _job_value(self, recs: dict[str, Record], job: JobRef) -> tuple[Value, int]:
        rec = recs.get(job_key(job))
        base: Value = {"region": job.region, "job_id": job.job_id, "counters": {}, "pending": [],
                       "decisions": []}
        if rec is None:
            return base, 0
        if not rec.live(self.clock()):
            return base, rec.version
        value = dict(rec.value)
        value["counters"] = dict(value.get("counters") or {})
        value["pending"] = list(value.get("pending") or [])
        value["decisions"] = [dict(d) for d in value.get("decisions") or []]
        return value, rec.version

    def _note(self, jv: Value, key: str, **decision: Any) -> None:
        decisions = [d for d in jv["decisions"] if d.get("key") != key]
        decisions.append({"key": key, "at": self.clock(), **decision})
        jv["decisions"] = decisions[-DECISIONS_KEPT:]

    # ---- claiming ------------------------------------------------------------------------------

    def claim_step(self, key: FailureKey, spend: Spend, lease_s: float, floor: int = 0) -> Step:
        """Claim `key` for one RetryJobs call, spending one on the spend's counter within its cap
        and the fleet budget, all atomically. A failure is claimed once, ever; a claim whose lease
        expired may be taken over (the taker has re-read the job), spending nothing again.
        `floor` is what the job is known to have spent from its budget (`attempts`) elsewhere (its
        own tags): the count never starts below it, even in a ledger that forgot.

        The operator's hold is read in the same read: a job held before its failure is claimed is
        never called for, whichever instance claims (outcome HELD, kept as `held_step` keeps it).
        A failure that came while the job was held is claimed afresh once it is released."""
        now = self.clock()
        fk, jk, hk = failure_key(key), job_key(key.job), hold_key(key.job)
        bk = fleet_key(spend.fleet, now) if spend.fleet is not None else None

        def change(recs: dict[str, Record]) -> tuple[list[Write], ClaimOutcome]:
            f = self._live(recs, fk)
            takeover = False
            if f is not None and FailureState(f.value["state"]) != FailureState.HELD:
                if FailureState(f.value["state"]) in FINAL_STATES:
                    return [], ClaimOutcome.DUPLICATE
                if float(f.value.get("lease_until") or 0.0) > now:
                    return [], ClaimOutcome.DUPLICATE
                takeover = True
            hold = self._hold(recs, key.job)
            if hold is not None:
                return self._held_writes(recs, key, hold), ClaimOutcome.HELD
            jv, jver = self._job_value(recs, key.job)
            writes: list[Write] = []
            if f is not None and takeover:
                fv = dict(f.value)
            else:
                counter = spend.counter
                known = int(jv["counters"].get(counter, 0))
                if counter == ATTEMPTS and floor > known:
                    jv["counters"][counter] = known = floor
                if known >= spend.cap:
                    return [], ClaimOutcome.OVER_CAP
                if spend.fleet is not None and bk is not None:
                    b = self._live(recs, bk)
                    used = int(b.value["retries"]) if b else 0
                    if used >= spend.fleet.max_retries:
                        return [], ClaimOutcome.OVER_FLEET_BUDGET
                    writes.append(Write(bk, {"retries": used + 1}, version_of(recs, bk),
                                        expires_at=now + spend.fleet.window_s * 2))
                jv["counters"][counter] = int(jv["counters"].get(counter, 0)) + 1
                end, n = generation(key)
                if n:
                    jv["generations"] = {**(jv.get("generations") or {}), end: n}
                fv = {"state": FailureState.CLAIMED, "counter": counter, "rule": spend.rule,
                      "reason": spend.reason, "claimed_at": now}
            fv.update(state=FailureState.CLAIMED, owner=self.owner, lease_until=now + lease_s)
            if str(key) not in jv["pending"]:
                jv["pending"].append(str(key))
            self._note(jv, str(key), action="RETRY", rule=spend.rule, reason=spend.reason,
                       outcome="claimed")
            writes.append(Write(fk, fv, version_of(recs, fk), expires_at=self._expires()))
            writes.append(Write(jk, jv, jver, expires_at=self._expires()))
            return writes, ClaimOutcome.TAKEN_OVER if takeover else ClaimOutcome.CLAIMED

        keys = (fk, jk, hk) if bk is None else (fk, jk, hk, bk)
        return Step(keys, change, "claim", key)

    def held_step(self, key: FailureKey, reason: str) -> Step:
        """The failure came while the operator holds its job (`reason`, the hold's, as the flush
        read it): keep it as HELD, with the decision `held` on the job. It is not retried, and the
        sweep does not enqueue it again; a notice after the release has it decided anew. A
        failure already settled, or claimed under a live lease, is left as it is (a claim made
        before the hold may have its call under way)."""
        fk, hk = failure_key(key), hold_key(key.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            f = self._live(recs, fk)
            if f is not None:
                state = FailureState(f.value["state"])
                if state in FINAL_STATES or (state in LEASED_STATES and float(
                        f.value.get("lease_until") or 0.0) > self.clock()):
                    return [], False
            hold = self._hold(recs, key.job) or Hold(key.job, reason, self.clock())
            return self._held_writes(recs, key, hold), True

        return Step((fk, job_key(key.job), hk), change, "held", key)

    def _held_writes(self, recs: dict[str, Record], key: FailureKey, hold: Hold) -> list[Write]:
        """Keep `key` as HELD, with the hold's reason as the decision on the job (a repeat counts
        on it). A claim whose lease ended is given back, as a skip gives it back."""
        fk, jk = failure_key(key), job_key(key.job)
        f = self._live(recs, fk)
        jv, jver = self._job_value(recs, key.job)
        if f is not None and FailureState(f.value["state"]) in LEASED_STATES:
            _refund(jv, f)
            jv["pending"] = [k for k in jv["pending"] if k != str(key)]
        end, n = generation(key)
        if n:
            jv["generations"] = {**(jv.get("generations") or {}), end: n}
        same = [d for d in jv["decisions"] if d.get("key") == str(key)]
        if same and same[-1].get("outcome") == "held":
            same[-1]["repeats"] = int(same[-1].get("repeats", 0)) + 1
            same[-1]["last_repeats_at"] = self.clock()
        else:
            self._note(jv, str(key), action="SKIP", rule="hold", reason=hold.reason,
                       outcome="held")
        fv = {"state": FailureState.HELD, "rule": "hold", "reason": hold.reason, "outcome": "held",
              "settled_at": self.clock()}
        return [Write(fk, fv, version_of(recs, fk), expires_at=self._expires()),
                Write(jk, jv, jver, expires_at=self._expires())]

    def claim(self, key: FailureKey, spend: Spend, lease_s: float, floor: int = 0) -> ClaimOutcome:
        result: ClaimOutcome = self.apply([self.claim_step(key, spend, lease_s, floor)])[0]
        return result

    # ---- settling ------------------------------------------------------------------------------

    def _settle_step(self, name: str, key: FailureKey, state: FailureState, outcome: str,
                     refund: bool, lease_until: float = 0.0, only_if_owner: bool = True) -> Step:
        fk, jk = failure_key(key), job_key(key.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            f = self._live(recs, fk)
            if f is None:
                return [], None
            if only_if_owner and f.value.get("owner") != self.owner:
                return [], None  # our lease expired and someone took the failure over
            if FailureState(f.value["state"]) in FINAL_STATES:
                return [], None
            jv, jver = self._job_value(recs, key.job)
            if refund:
                _refund(jv, f)
            if state != FailureState.AMBIGUOUS:
                jv["pending"] = [k for k in jv["pending"] if k != str(key)]
            if state == FailureState.RETRIED:
                jv["last_retried"], jv["left"] = str(key), None
            for d in jv["decisions"]:
                if d.get("key") == str(key):
                    d["outcome"] = outcome
                    d["settled_at"] = self.clock()
            writes = [Write(jk, jv, jver, expires_at=self._expires())]
            if refund:
                writes.append(Write(fk, None, f.version))
            else:
                fv = dict(f.value, state=state, lease_until=lease_until, settled_at=self.clock())
                writes.append(Write(fk, fv, f.version, expires_at=self._expires()))
            return writes, None

        return Step((fk, jk), change, name, key)

    def retried_step(self, key: FailureKey) -> Step:
        """RetryJobs accepted the job: the failure is retried, for good."""
        return self._settle_step("retried", key, FailureState.RETRIED, "retried", refund=False)

    def confirmed_step(self, key: FailureKey) -> Step:
        """A pending failure the job has since left: our call (or its takeover's) was applied."""
        return self._settle_step("confirmed", key, FailureState.RETRIED, "confirmed", refund=False,
                                 only_if_owner=False)

    def release_step(self, key: FailureKey, outcome: str) -> Step:
        """The call was certainly not applied: forget the claim and refund what it spent."""
        return self._settle_step("release", key, FailureState.CLAIMED, outcome, refund=True)

    def ambiguous_step(self, key: FailureKey, recheck_at: float, outcome: str) -> Step:
        """The call may or may not have been applied: hold the claim until the job is re-read."""
        return self._settle_step("ambiguous", key, FailureState.AMBIGUOUS, outcome, refund=False,
                                 lease_until=recheck_at)

    def skip_step(self, key: FailureKey, rule: str, reason: str, outcome: str = "skipped") -> Step:
        """Remember a failure the policy (or a limit) left alone, so sweeps do not bring it back.
        The result is False if the failure was already settled or is claimed under a live lease. A
        claim whose lease ended (a crashed flusher, or an unclear call the job's state shows was
        never applied) is settled as skipped: its spend is refunded and it is pending no more."""
        fk, jk = failure_key(key), job_key(key.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            f = self._live(recs, fk)
            state = FailureState(f.value["state"]) if f is not None else None
            leased = state in LEASED_STATES
            if f is not None and not leased and state != FailureState.HELD:
                return [], False  # settled already
            if f is not None and leased and float(f.value.get("lease_until") or 0) > self.clock():
                return [], False
            jv, jver = self._job_value(recs, key.job)
            if f is not None and leased:
                _refund(jv, f)
                jv["pending"] = [k for k in jv["pending"] if k != str(key)]
            self._note(jv, str(key), action="SKIP", rule=rule, reason=reason, outcome=outcome)
            fv = {"state": FailureState.SKIPPED, "rule": rule, "reason": reason, "outcome": outcome,
                  "settled_at": self.clock()}
            return [
                Write(fk, fv, version_of(recs, fk), expires_at=self._expires()),
                Write(jk, jv, jver, expires_at=self._expires()),
            ], True

        return Step((fk, jk), change, "skip", key)

    def note_step(self, job: JobRef, key: FailureKey | None, outcome: str, rule: str,
                  reason: str) -> Step:
        """Keep a decision that changes no failure (the job was not found or not FAILED, or the
        failure was decided already) on the job's record, so operators see it. A repeat of the
        same decision counts on the one kept instead of pushing older ones out."""
        jk = job_key(job)
        mark = str(key) if key is not None else f"{job.region}/{job.job_id}/{outcome}"

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            jv, jver = self._job_value(recs, job)
            if outcome == "not_failed" and jv.get("last_retried"):
                jv["left"] = jv["last_retried"]  # seen out of FAILED since that retry
            same = [d for d in jv["decisions"] if d.get("key") == mark]
            if same and (outcome == "duplicate" or same[-1].get("outcome") == outcome):
                count = "duplicates" if outcome == "duplicate" else "repeats"
                same[-1][count] = int(same[-1].get(count, 0)) + 1
                same[-1][f"last_{count}_at"] = self.clock()
            else:
                self._note(jv, mark, action="SKIP", rule=rule, reason=reason, outcome=outcome)
            return [Write(jk, jv, jver, expires_at=self._expires())], None

        return Step((jk,), change, "note", job)

    def record_retried(self, key: FailureKey) -> None:
        self.apply([self.retried_step(key)])

    def confirm_retried(self, key: FailureKey) -> None:
        self.apply([self.confirmed_step(key)])

    def release(self, key: FailureKey, outcome: str) -> None:
        self.apply([self.release_step(key, outcome)])

    def mark_ambiguous(self, key: FailureKey, recheck_at: float, outcome: str) -> None:
        self.apply([self.ambiguous_step(key, recheck_at, outcome)])

    def record_skip(self, key: FailureKey, rule: str, reason: str, outcome: str = "skipped") -> bool:
        result: bool = self.apply([self.skip_step(key, rule, reason, outcome)])[0]
        return result


def _refund(jv: Value, claim: Record) -> None:
    """Give back what a claim spent from its job's counter (the call was never applied)."""
    counter = claim.value.get("counter", ATTEMPTS)
    jv["counters"][counter] = max(0, int(jv["counters"].get(counter, 0)) - 1)
