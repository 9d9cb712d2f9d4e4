"""What it costs to make a claim durable before its call, on Redis servers of our own on loopback.

    .venv/bin/python bench/durable.py            # n=300 batches of each kind
    .venv/bin/python bench/durable.py -n 1000

Two redis-servers are started on free ports (no persistence: `--save "" --appendonly no`), the
second a replica of the first; the machine's own Redis is never touched. Each row times what a
flush does between verifying its jobs and calling RetryJobs (`handler.ledger.Ledger`):

  claim 1 / claim 100   claim one failure, or a batch of 100 in one read and one commit
  + identity            the same with the identity guard armed (AUTORETRY_LEDGER_ID set)
  + wait                then `wait_durable`: with a replica, a marker write and WAIT for it

on the primary alone (before the replica is attached: `wait_durable` has nothing to wait for)
and on the primary with its replica. ops/s is 1 / mean latency for one caller.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import Table, timed
from bench.local import free_port, wait_port
from handler.jobs import FailureKey
from handler.ledger import Ledger, open_store
from handler.policy import Action, RetryDecision

REGION = "ap-guangzhou"
DECISION = RetryDecision(Action.RETRY, "default", "retry 1 of 3")


class RedisNode:
    """A redis-server of our own on a free port, kept in memory only (a replica is what keeps its
    writes), that can be made a replica, stopped, resumed, killed and promoted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def start(self, replica_of: RedisNode | None = None) -> RedisNode:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               # a replica's first copy is sent at once, without the default 5 s delay
               "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            cmd += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        wait_port(self.port)
        if replica_of is not None:
            self._until(lambda: replica_of.online_replicas() >= 1, "replica online")
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def online_replicas(self) -> int:
        client = self.client()
        try:
            info = client.info("replication")
        finally:
            client.close()
        return sum(1 for k, v in info.items()
                   if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but reads nothing (a stalled replica)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def promote(self) -> None:
        """What a failover does to the replica chosen: it stops following and takes writes."""
        client = self.client()
        try:
            client.execute_command("REPLICAOF", "NO", "ONE")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @staticmethod
    def _until(ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for: {what}")


def run(url: str, n: int) -> dict[str, list[float]]:
    store = open_store(url)
    ledger = Ledger(store, owner="bench")
    guarded = Ledger(store, owner="bench-guarded")
    guarded.check_identity(guarded.init_identity())
    out: dict[str, list[float]] = {}
    serial = iter(range(10**9))

    def claims(size: int) -> list[FailureKey]:
        return [FailureKey(REGION, f"job-{next(serial):08d}", "2026-11-24T10:00:00Z")
                for _ in range(size)]

    for size in (1, 100):
        variants = ((f"claim {size}", ledger, False),
                    (f"claim {size} + identity", guarded, False),
                    (f"claim {size} + identity + wait", guarded, True))
        for label, _, _ in variants:
            out[label] = []
        # Interleaved, so that a busy moment of the machine weighs on every variant alike.
        for _ in range(n if size == 1 else max(1, n // 10)):
            for label, led, wait in variants:
                batch = claims(size)

                def once(led: Ledger = led, wait: bool = wait, batch: list[FailureKey] = batch
                         ) -> None:
                    led.apply([led.claim_step(k, DECISION, 600) for k in batch])
                    if wait:
                        led.wait_durable()
                out[label].append(timed(once))
    store.close()
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="single claims per row (batches: n/10)")
    args = ap.parse_args(argv)
    table = Table("server", label_w=22, op_w=32, n_w=5, us_w=8, ops_w=7)
    print(table.header())
    with tempfile.TemporaryDirectory() as tmp:
        primary = RedisNode(Path(tmp)).start()
        replica = RedisNode(Path(tmp))
        try:
            prefix = f"bench-durable:{uuid.uuid4().hex[:8]}:"
            for label in ("primary alone", "primary + 1 replica"):
                if label != "primary alone":
                    replica.start(replica_of=primary)
                for op, lat in run(primary.url(prefix), args.n).items():
                    print(table.row(label, op, lat))
        finally:
            replica.stop()
            primary.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
