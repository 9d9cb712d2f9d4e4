"""What the function tells operators: one JSON line per decision and event, and metrics per invocation.

Log lines are JSON on stdout, which SCF's and Lambda's log collectors take as they are. They are
written with the standard `logging` module, not Powertools' Logger: importing Powertools costs about
40 ms of a cold start (its package `__init__` loads Logger, Metrics and Tracer together) against
about 5 ms for `logging`, and the line we need is a dozen lines of formatter. Powertools is imported
only on Lambda, at the end of the first invocation, to write CloudWatch EMF metrics; on SCF the same
counters go out as one structured `metrics` line.

Secrets never reach here: callers pass identifiers only, and any field whose name says it holds a
credential is masked anyway.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from handler.outcomes import SKIP_OUTCOMES

SERVICE = "batch-autoretry"
NAMESPACE = "BatchAutoretry"

# What the parts count (left) and the metric operators see (right). Every metric is sent on every
# invocation, zeros included, so that an alarm on "no data" means "the function did not run".
METRICS: dict[str, str] = {
    "notices.enqueued": "Notices",
    "retries": "Retries",
    "skips": "Skips",
    "api.throttled": "Throttles",
    "ledger.errors": "LedgerErrors",
    "ledger.forgot": "LedgerForgot",
    "notify.sent": "NotificationsSent",
    "notify.failed": "NotificationsFailed",
    "failures.refailed_same_end_time": "RefailedSameEndTime",
    "input.rejected": "BadInput",
    "auth.refused": "Unauthorized",
    "events.ignored": "IgnoredEvents",  # Batch events not acted on (not a job failure)
    "events.foreign_region": "ForeignRegion",  # refused: a region not in AUTORETRY_REGION
}
SKIPS_BY_REASON = "SkipsByReason"
_SECRET_WORDS = ("token", "secret", "password", "signature", "authorization", "credential")


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


class _StdoutHandler(logging.Handler):
    """Writes to whatever `sys.stdout` is now (a test may have replaced it since the first line)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def _logger() -> logging.Logger:
    logger = logging.getLogger(SERVICE)
    if not logger.handlers:
        h = _StdoutHandler()
        h.setFormatter(_JsonFormatter())
        logger.addHandler(h)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in fields.items()}


def _reason_label(fields: dict[str, Any]) -> str:
    """A bounded label for a skip: the policy rule when the policy said no, else the outcome."""
    outcome = str(fields.get("outcome") or "unknown")
    label = str(fields.get("rule") or "policy") if outcome == "skipped" else outcome
    return label[:64]


@dataclass
class Observer:
    """Logs decisions and events as JSON lines and counts for metrics. `correlation_id` ties the
    lines of one invocation together (the push message id, else the platform's request id);
    `platform` ("scf" or "aws") decides how `flush_metrics` writes."""

    correlation_id: str | None = None
    counters: Counter[str] = field(default_factory=Counter)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    quiet: bool = False
    platform: str = "scf"
    skip_reasons: Counter[str] = field(default_factory=Counter)

    def _emit(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if not self.quiet:
            line = {"correlation_id": self.correlation_id, **_masked(fields)}
            _logger().log(level, message, extra={"fields": line})

    def decision(self, **fields: Any) -> None:
        """One line per decision: job, failure key, rule, reason, outcome."""
        self.decisions.append(fields)
        outcome = str(fields.get("outcome", "unknown"))
        self.count(f"decision.{outcome}")
        if outcome in SKIP_OUTCOMES:
            self.count("skips")
            self.skip_reasons[_reason_label(fields)] += 1
        self._emit(logging.INFO, "decision", fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit(logging.ERROR, message, fields)

    def count(self, metric: str, value: int = 1) -> None:
        self.counters[metric] += value

    def metric_values(self) -> dict[str, int]:
        return {name: int(self.counters.get(counter, 0)) for counter, name in METRICS.items()}

    def flush_metrics(self) -> None:
        """Write this invocation's metrics: CloudWatch EMF on Lambda, one JSON line on SCF."""
        if self.quiet:
            return
        if self.platform == "aws":
            try:
                _write_emf(self.metric_values(), dict(self.skip_reasons))
            except Exception as e:  # metrics must never change what the delivery is answered
                self._emit(logging.ERROR, "metrics not written", {"error": f"{type(e).__name__}: {e}"})
        else:
            self._emit(logging.INFO, "metrics", {"namespace": NAMESPACE,
                                                 "metrics": self.metric_values(),
                                                 "skips_by_reason": dict(self.skip_reasons)})
        self.skip_reasons.clear()
        for counter in METRICS:
            self.counters.pop(counter, None)


def _write_emf(values: dict[str, int], skip_reasons: dict[str, int]) -> None:
    # Imported here: Powertools costs ~40 ms to import, which SCF never pays and Lambda pays once
    # per instance, after the first answer is computed.
    from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric

    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()
    for reason, value in sorted(skip_reasons.items()):
        with single_metric(name=SKIPS_BY_REASON, unit=MetricUnit.Count, value=value,
                           namespace=NAMESPACE, default_dimensions={"service": SERVICE}) as metric:
            metric.add_dimension(name="reason", value=reason or "unknown")
