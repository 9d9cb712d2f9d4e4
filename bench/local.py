"""Helpers the benchmarks share for starting local servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Until something listens on the loopback port."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def end_group(process: subprocess.Popen[bytes]) -> None:
    """End a process started in a session of its own, and every process of its group: SIGTERM,
    then SIGKILL if it has not ended within 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def function_env(store: str, emu: Any) -> dict[str, str]:
    """The environment of a local function process (`python -m handler serve`, a sweep) on `store`,
    pointed at the emulator with its credentials and time scale; nothing inherited from ours."""
    secret_id, secret_key = next(iter(emu.secrets.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))}
    env.update({"AUTORETRY_STORE": store, "AUTORETRY_BATCH_ENDPOINT": emu.endpoint,
                "AUTORETRY_BATCH_PROTOCOL": "http", "AUTORETRY_LOCAL": "true",
                "AUTORETRY_REGION": emu.region, "AUTORETRY_API_SPEEDUP": f"{emu.speedup:g}",
                "TENCENTCLOUD_SECRET_ID": secret_id, "TENCENTCLOUD_SECRET_KEY": secret_key,
                "PYTHONPATH": str(ROOT)})
    return env
