"""A local Tencent Cloud Batch API (2017-03-12) for development and tests, never deployed.

It speaks the real wire protocol (TC3-signed `POST /`, exact `application/json` answers, errors in a
200), answers SubmitJob, DescribeJob(s), DescribeTask, RetryJobs and TerminateJob with the service's
error codes and per-action rate limits, and the Tag service's TagResources, UnTagResources,
ModifyResourceTags and GetResources on Batch jobs; runs scripted jobs, pushes job notices to
subscribers the way a TDMQ-CMQ HTTP subscription does, injects faults, and records every call it
answered. Where Tencent documents nothing, `Behaviour` switches between the plausible answers.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from emulator import cam, cmq, scf, tags
from emulator.api import LIMITS, VERSION, Api, RateLimiter, Service
from emulator.behaviour import Behaviour
from emulator.cmq import Cmq
from emulator.faults import Faults
from emulator.fleet import Fleet, Job, Outcome, iso
from emulator.server import Handler, Server
from emulator.serving import serve_in_background
from emulator.topics import Subscription, Topics

__all__ = ["Behaviour", "Emulator", "Faults", "Outcome"]

_ANY = object()


class Emulator:
    def __init__(self, secret_id: str = "AKIDEMULATOR", secret_key: str = "emulator-secret",
                 region: str = "ap-guangzhou", *, speedup: float = 1.0, host: str = "127.0.0.1",
                 port: int = 0, run_s: float = 2.0, faults: Faults | None = None,
                 limits: dict[str, float] | None = None, senders: int = 16, seed: int | None = None,
                 uin: str = "100000000001", retry_refusal: str = "refuse-all",
                 refailure_end_time: str = "new", listing_order: str = "newest-first",
                 tags_writable: bool = True, tag_refusal: str = "error", lost_exit_code: int = -1,
                 rate_limit: str = "window", terminate_reason: str = "marked",
                 absent_queue_code: str = "ResourceNotFound", url_in_answer: bool = False,
                 scf_python: str | None = None) -> None:
        self.region, self.speedup, self.uin = region, speedup, uin
        self.secrets = {secret_id: secret_key}
        self.faults = faults or Faults()
        self.behaviour = Behaviour(retry_refusal=retry_refusal, refailure_end_time=refailure_end_time,
                                   listing_order=listing_order, tags_writable=tags_writable,
                                   tag_refusal=tag_refusal, lost_exit_code=lost_exit_code,
                                   rate_limit=rate_limit, terminate_reason=terminate_reason,
                                   absent_queue_code=absent_queue_code)
        self.limiter = RateLimiter({**tags.LIMITS, **(LIMITS if limits is None else limits)}, speedup,
                                   self.behaviour)
        self.fleet = Fleet(speedup=speedup, run_s=run_s, seed=seed, on_change=self._on_change,
                           behaviour=self.behaviour)
        self.api = Api(self.fleet)
        self.tag_api = tags.TagApi(self.fleet, region, uin)
        # X-TC-Version picks the API, as the real endpoints' versions differ (2017-03-12, 2018-08-13).
        self.services = {VERSION: Service("batch", self.api.handle),
                         tags.VERSION: Service(tags.SERVICE, self.tag_api.handle)}
        self.topics = Topics(speedup=speedup, senders=senders)
        self.cmq = Cmq(self.secrets, self.topics, speedup=speedup, clock=lambda: self.clock(),
                       behaviour=self.behaviour)
        self.services[cmq.VERSION] = Service("tdmq", self.cmq.handle)
        self.cam = cam.Cam(uin, secrets_=self.secrets)  # roles, users, policies, attachments
        self.services[cam.VERSION] = Service(cam.SERVICE, self.cam.handle)
        # SCF runs what was deployed: each invocation a process of `scf_python` (default: this
        # interpreter, playing Python3.10). url_in_answer: function URLs show in TriggerDesc.
        self.scf = scf.Scf(self.secrets, region, uin=uin, speedup=speedup, base_url=lambda: self.url,
                           role_exists=lambda name: self.cam.role(name) is not None,
                           app_id=lambda: str(self.cam.app_id),
                           python=scf_python, url_in_answer=url_in_answer)
        self.services[scf.VERSION] = Service(scf.SERVICE, self.scf.handle)
        self.calls: list[dict[str, Any]] = []
        self.clock = time.time  # the server's clock for signature expiry (tests may skew it)
        self._lock = threading.Lock()
        self._server = Server((host, port), Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Emulator:
        self._thread = serve_in_background(self._server, "emulator-http")
        return self

    def stop(self) -> None:
        self.scf.stop()  # its timers and running functions first: they call the other services
        self.topics.stop()
        self.fleet.stop()
        if self._thread is not None:  # shutdown() waits for serve_forever: never started, it would hang
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """host:port, what AUTORETRY_BATCH_ENDPOINT takes (with AUTORETRY_BATCH_PROTOCOL=http)."""
        host, port = self._server.server_address[:2]
        return f"{host if isinstance(host, str) else host.decode()}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def function_urls(self) -> list[str]:
        """Every function URL the emulator's SCF serves (http://HOST:PORT/scf-url/<id>/)."""
        return self.scf.function_urls()

    # --- jobs ------------------------------------------------------------------------------------
    def add_job(self, name: str, script: Iterable[Outcome] = (), *, topic: str | None = None,
                notify: Iterable[str] = ("JOB_FAILED",), event_vars: dict[str, str] | None = None,
                tags: dict[str, str] | None = None, instances: int = 1) -> str:
        """A job that starts running now; run n ends as script[n-1] (the last entry repeats).
        With `instances` > 1 its task has that many instances; a failed run fails the last one."""
        return self.fleet.add(name, script, topic=topic, notify=notify if topic else (),
                              event_vars=event_vars, tags=tags, instances=instances).job_id

    def add_failed_job(self, name: str, script: Iterable[Outcome] = (), *,
                       reason: str = "CVM_SPOT_RECLAIMED: the spot instance was reclaimed",
                       exit_code: int | None = None, publish: bool = False, topic: str = "batch-events",
                       event_vars: dict[str, str] | None = None, tags: dict[str, str] | None = None,
                       detail: str = "", instances: int = 1) -> str:
        """A job already FAILED from its first run; `script` says how each retried run ends.
        `detail` is the failed instance's StateDetailedReason."""
        first = Outcome.fail(reason, exit_code, detail=detail)
        notify = ("JOB_FAILED",) if publish else ()
        job = self.fleet.add(name, [first, *script], topic=topic if publish else None, notify=notify,
                             event_vars=event_vars, tags=tags, failed_with=first, instances=instances)
        return job.job_id

    def add_failed_jobs(self, count: int, name: str = "retained", script: Iterable[Outcome] = (), *,
                        reason: str = "task failed", exit_code: int | None = 1,
                        tags: dict[str, str] | None = None) -> list[str]:
        """`count` jobs already FAILED (an account's retained failures), oldest first, created one
        second apart and ending now; no notices. Cheap enough for 50,000."""
        first = Outcome.fail(reason, exit_code)
        return [j.job_id for j in self.fleet.add_failed_many(count, name, script, first, tags=tags)]

    def resource(self, job_id: str) -> str:
        """The job's six-segment name for the Tag service: qcs::batch:<region>:uin/<uin>:job/<id>."""
        return tags.resource_name(self.region, self.uin, job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        with self.fleet.lock:
            return self.fleet.jobs[job_id].snapshot()

    def jobs(self) -> list[dict[str, Any]]:
        with self.fleet.lock:
            return [j.snapshot() for j in self.fleet.jobs.values()]

    # --- notices ---------------------------------------------------------------------------------
    def subscribe(self, topic: str, url: str | list[str], *, format: str = "json",
                  base64_body: bool = False, duplicates: int = 0, concurrent_duplicates: bool = False,
                  timeout_s: float = 5.0, max_attempts: int = 16) -> None:
        if format not in ("json", "simplified"):
            raise ValueError("format is 'json' or 'simplified'")
        url = " ".join(url) if isinstance(url, list) else url
        self.topics.subscribe(Subscription(topic, url, format, base64_body, duplicates,
                                           concurrent_duplicates, timeout_s, max_attempts))

    def notice(self, job_id: str, event: str = "JOB_FAILED") -> dict[str, Any]:
        """The notice Batch publishes for this job's current state."""
        with self.fleet.lock:
            job = self.fleet.jobs[job_id]
            return self._notice(job, event)

    def _notice(self, job: Job, event: str) -> dict[str, Any]:
        batch: dict[str, Any] = {"JobId": job.job_id, "JobName": job.name, "JobState": job.state}
        if job.end_time and job.state in ("SUCCEED", "FAILED", "FAILED_INTERRUPTED"):
            batch["EndTime"] = iso(job.end_time)
        if job.last and not job.last.succeeded and event.startswith("JOB_FAILED"):
            batch["StateReason"] = job.last.reason
        return {"Events": [{"EventVersion": "1.0", "EventTime": iso(time.time()), "Region": self.region,
                            "Batch": batch, "EventName": event,
                            "EventVars": [{"Name": k, "Value": v} for k, v in job.event_vars.items()]}]}

    def publish(self, job_id: str, event: str = "JOB_FAILED", topic: str = "batch-events") -> str:
        """Publish this job's notice now, as Batch would (used to replay or to simulate bursts)."""
        return self.topics.publish(topic, json.dumps(self.notice(job_id, event)))

    def _on_change(self, job: Job, event: str) -> None:
        if job.topic and event in job.notify:
            self.topics.publish(job.topic, json.dumps(self._notice(job, event)))

    @property
    def pushes(self) -> list[dict[str, Any]]:
        return list(self.topics.pushes)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no job is running and every push has been answered (or given up)."""
        end = time.time() + timeout
        while time.time() < end:
            if self.fleet.running() == 0 and self.topics.idle():
                return True
            time.sleep(0.02)
        return False

    def wait_job(self, job_id: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The job's snapshot (`job`) once every one of `fields` has its value, e.g.
        `wait_job(j, state="FAILED", retries=2)`; AssertionError with the last snapshot if that
        does not happen within `timeout` seconds."""
        end = time.time() + timeout
        while True:
            snap = self.job(job_id)
            if all(snap[k] == v for k, v in fields.items()):
                return snap
            if time.time() >= end:
                raise AssertionError(f"{job_id} never reached {fields} within {timeout:g} s: {snap}")
            time.sleep(0.01)

    # --- what happened ---------------------------------------------------------------------------
    def record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)

    def retry_counts(self) -> collections.Counter[str]:
        """Job retries the service applied, per job (every job listed, 0 if never retried)."""
        with self.fleet.lock:
            return collections.Counter({j.job_id: j.retries for j in self.fleet.jobs.values()})

    def count(self, action: str, error: object = _ANY) -> int:
        """Calls of `action` answered; with `error`, only those that failed with that code (None: the
        successful ones)."""
        with self._lock:
            calls = [c for c in self.calls if c["action"] == action]
        if error is _ANY:
            return len(calls)
        return sum(1 for c in calls if c["error"] == error)
