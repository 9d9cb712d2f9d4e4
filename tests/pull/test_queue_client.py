"""The data-flow client: where it connects, how it signs, what the emulated queue refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from emulator import Emulator
from handler.cmq import QueueClient, QueueError, QueueSettings, endpoint_for, sign, string_to_sign
from handler.gateway import Credentials

from .conftest import QUEUE


def test_scf_reads_the_queue_over_the_vpc_address_and_elsewhere_over_the_public_one() -> None:
    on_scf = QueueSettings.from_env({"AUTORETRY_QUEUE": "q1", "TENCENTCLOUD_RUNENV": "SCF",
                                     "AUTORETRY_REGION": "ap-shanghai,ap-guangzhou"})
    assert on_scf.url == "http://sh.mqadapter.cmq.tencentyun.com"
    on_aws = QueueSettings.from_env({"AUTORETRY_QUEUE": "q1", "AWS_LAMBDA_FUNCTION_NAME": "f"})
    assert on_aws.url == "https://cmq-gz.public.tencenttdmq.com"
    forced = QueueSettings.from_env({"AUTORETRY_QUEUE": "q1", "AUTORETRY_QUEUE_NETWORK": "public",
                                     "TENCENTCLOUD_RUNENV": "SCF", "AUTORETRY_REGION": "ap-beijing"})
    assert forced.url == "https://cmq-bj.public.tencenttdmq.com"


def test_an_explicit_endpoint_wins_and_takes_its_scheme_from_the_network() -> None:
    env = {"AUTORETRY_QUEUE": "q1", "AUTORETRY_QUEUE_ENDPOINT": "gz.mqadapter.cmq.tencentyun.com:8080",
           "AUTORETRY_QUEUE_NETWORK": "vpc"}
    assert QueueSettings.from_env(env).url == "http://gz.mqadapter.cmq.tencentyun.com:8080"
    env["AUTORETRY_QUEUE_ENDPOINT"] = "https://cmq-gz.public.tencenttdmq.com:9443"
    assert QueueSettings.from_env(env).url == "https://cmq-gz.public.tencenttdmq.com:9443"


@pytest.mark.parametrize("env, phrase", [
    ({}, "AUTORETRY_QUEUE=''"),
    ({"AUTORETRY_QUEUE": "9starts-with-a-digit"}, "expected a queue name"),
    ({"AUTORETRY_QUEUE": "q1", "AUTORETRY_REGION": "xx-nowhere"}, "set AUTORETRY_QUEUE_ENDPOINT"),
    ({"AUTORETRY_QUEUE": "q1", "AUTORETRY_QUEUE_NETWORK": "lan"}, "expected vpc or public"),
    ({"AUTORETRY_QUEUE": "q1", "AUTORETRY_QUEUE_ENDPOINT": "ftp://x"}, "expected host[:port]"),
])
def test_bad_queue_settings_name_the_variable(env: dict[str, str], phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        QueueSettings.from_env(env)


def test_endpoint_for_knows_the_documented_region_codes() -> None:
    assert endpoint_for("ap-chengdu", "vpc") == "http://cd.mqadapter.cmq.tencentyun.com"
    assert endpoint_for("ap-hongkong", "public") == "https://cmq-hk.public.tencenttdmq.com"


def test_signature_is_base64_hmac_sha256_over_method_host_path_and_sorted_parameters() -> None:
    text = string_to_sign("POST", "cmq-gz.public.tencenttdmq.com", "/v2/index.php",
                          {"queueName": "q", "Action": "BatchReceiveMessage", "Nonce": 7})
    assert text == ("POSTcmq-gz.public.tencenttdmq.com/v2/index.php"
                    "?Action=BatchReceiveMessage&Nonce=7&queueName=q")
    for method, digest in (("HmacSHA256", hashlib.sha256), ("HmacSHA1", hashlib.sha1)):
        expected = base64.b64encode(hmac.new(b"k", text.encode(), digest).digest()).decode()
        assert sign("k", text, method) == expected


def test_temporary_role_credentials_are_sent_with_their_token(queue: Emulator) -> None:
    queue.cmq.send(QUEUE, "x")
    role = QueueClient(queue.url, QUEUE, credentials=lambda: Credentials(
        *next(iter(queue.secrets.items())), token="session-token"))
    assert [m.body for m in role.receive()] == ["x"]


def test_a_request_signed_too_long_ago_is_refused(queue: Emulator) -> None:
    queue.cmq.send(QUEUE, "x")
    stale = QueueClient(queue.url, QUEUE, credentials=lambda: Credentials(*next(iter(queue.secrets.items()))),
                        clock=lambda: time.time() - 600)
    with pytest.raises(QueueError, match="expired"):
        stale.receive()


def test_an_unknown_queue_is_an_error_not_an_empty_queue(queue: Emulator) -> None:
    other = QueueClient(queue.url, "no-such-queue",
                        credentials=lambda: Credentials(*next(iter(queue.secrets.items()))))
    with pytest.raises(QueueError) as missing:
        other.receive()
    assert missing.value.code == 4440


def test_without_credentials_nothing_is_sent(queue: Emulator) -> None:
    client = QueueClient(queue.url, QUEUE, credentials=lambda: None)
    with pytest.raises(QueueError, match="no_credentials"):
        client.receive()
    assert queue.cmq.dataflow_calls == []
