"""What the function tells operators: one structured line per decision, plus counters.

Lines are JSON on stdout/stderr through the standard `logging` module, so SCF's and Lambda's log
collectors take them as they are. Secrets never reach here: callers pass identifiers only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SERVICE = "batch-autoretry"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "service": SERVICE,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, default=str, separators=(",", ":"))


def _logger() -> logging.Logger:
    logger = logging.getLogger(SERVICE)
    if not logger.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(_JsonFormatter())
        logger.addHandler(h)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


@dataclass
class Observer:
    """Logs decisions and events as JSON lines; keeps counters for metrics. `correlation_id` ties
    the lines of one delivery together (the push message id or the platform's request id)."""

    correlation_id: str | None = None
    counters: Counter[str] = field(default_factory=Counter)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    quiet: bool = False

    def _emit(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if self.correlation_id:
            fields = {"correlation_id": self.correlation_id, **fields}
        if not self.quiet:
            _logger().log(level, message, extra={"fields": fields})

    def decision(self, **fields: Any) -> None:
        """One line per decision: job, failure key, rule, reason, outcome."""
        self.decisions.append(fields)
        self.count(f"decision.{fields.get('outcome', 'unknown')}")
        self._emit(logging.INFO, "decision", fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit(logging.ERROR, message, fields)

    def count(self, metric: str, value: int = 1) -> None:
        self.counters[metric] += value
