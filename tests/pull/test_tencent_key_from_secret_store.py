"""On Lambda the Tencent key (for the queue pull and the Batch API) comes from SSM or Secrets Manager,
named by the deployment, read once per cold start (moto stands in for AWS)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import secrets
from handler.gateway import credentials_from_env

KEY = {"SecretId": "AKIDfromssm0001", "SecretKey": "s3cret-value-never-logged"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    secrets.forget()
    with mock_aws():
        yield
    secrets.forget()


def ssm() -> Any:
    import boto3

    return boto3.client("ssm", region_name="us-east-1")


def test_ssm_securestring_key_reaches_the_gateways_credential_reader(aws: None) -> None:
    ssm().put_parameter(Name="/batch-autoretry/prod/tencent-key", Type="SecureString",
                        Value=json.dumps(KEY))
    env = {"AUTORETRY_TENCENT_KEY_PARAM": "/batch-autoretry/prod/tencent-key"}
    assert secrets.load_tencent_key(env) is True
    creds = credentials_from_env(env)
    assert creds is not None and (creds.secret_id, creds.secret_key) == (KEY["SecretId"], KEY["SecretKey"])


def test_key_is_read_once_per_cold_start(aws: None) -> None:
    ssm().put_parameter(Name="/k", Type="SecureString", Value=json.dumps(KEY))
    env = {"AUTORETRY_TENCENT_KEY_PARAM": "/k"}
    secrets.load_tencent_key(env)
    ssm().delete_parameter(Name="/k")
    assert secrets.load_tencent_key(env) is True  # a warm invocation does not ask again
    secrets.forget()
    with pytest.raises(secrets.SecretUnavailable, match="cannot read SSM parameter /k: ParameterNotFound"):
        secrets.load_tencent_key(dict(env))


def test_secrets_manager_secret_works_the_same(aws: None) -> None:
    import boto3

    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="batch-autoretry/tencent-key", SecretString=json.dumps(KEY))
    env = {"AUTORETRY_TENCENT_KEY_SECRET": "batch-autoretry/tencent-key"}
    assert secrets.load_tencent_key(env) is True
    assert env["TENCENTCLOUD_SECRET_ID"] == KEY["SecretId"]


def test_a_value_that_is_not_a_key_is_refused_without_showing_it(aws: None) -> None:
    ssm().put_parameter(Name="/k", Type="SecureString", Value="AKIDplain:s3cret-value-never-logged")
    with pytest.raises(secrets.SecretUnavailable) as refused:
        secrets.load_tencent_key({"AUTORETRY_TENCENT_KEY_PARAM": "/k"})
    assert "s3cret" not in str(refused.value) and "AKIDplain" not in str(refused.value)
    assert "expected JSON" in str(refused.value)


def test_nothing_named_means_nothing_read_and_boto3_never_imported() -> None:
    code = ("import sys; from handler import secrets; env = {}; "
            "print(secrets.load_tencent_key(env), env, 'boto3' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "False {} False"
