"""What a TDMQ-CMQ HTTP subscription hands the function through SCF's API Gateway trigger."""

from __future__ import annotations

import json
from typing import Any

from emulator import Emulator
from handler.commands.serve import apigw_event


def failure_push(emu: Emulator, job_id: str, msg_id: str | None = None) -> dict[str, Any]:
    """The API Gateway event carrying the push of a JOB_FAILED notice for this job (a forged one
    if the job has not failed). Every duplicate of a message carries the same message id, as the
    topic's do."""
    msg_id = msg_id or f"msg-{job_id}"
    notice = emu.notice(job_id, "JOB_FAILED")
    notice["Events"][0]["Batch"]["JobState"] = "FAILED"
    envelope = {"TopicOwner": 1250000000, "topicName": "batch-events", "subscriptionName": "s",
                "msgId": msg_id, "msgBody": json.dumps(notice), "publishTime": 1}
    return apigw_event("POST", "/events", {"Content-Type": "text/plain", "x-cmq-message-id": msg_id},
                       json.dumps(envelope).encode())
