"""docs/deploy.md's Lambda paths (C: queue pull, D: ALB push) run as written: their `sh` blocks are
taken from the document itself and run in bash, in the checkout, against moto's AWS server (the
real AWS CLI, the real `osls deploy`, `python -m handler ledger init` on the stack's own DynamoDB
table) and the emulator's CAM and TDMQ APIs (`python -m handler deploy key`, `wire`). Then what the
commands left is checked: the SSM parameters are exactly the ones the deployed stack names, the key
stored is the sub-user's that C1 made (and the emulator takes it), the ledger's identity in its
table is the one the stack is given, and the subscription points where the stack listens.

Only what a user fills in or points elsewhere is substituted: the AWS endpoint and credentials
(moto's), the Tencent endpoint and key (the emulator's), and path D's VPC and subnets (moto's
default ones). A block of C or D the test does not run must be listed in NOT_RUN with its reason.
The commands rebuild node_modules/ and .serverless/ in the checkout (`make package`, as documented),
and C1 writes the key file there, which C2 removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.local import end_group, free_port, wait_port
from emulator import Emulator
from handler import secrets
from handler.ledger import Ledger
from handler.ledger.dynamodb import DynamoStore

from ..conftest import SECRET_ID, SECRET_KEY
from .test_deploy_key import USER, signs

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
PATH_C, PATH_D = "## C. Lambda: queue pull", "## D. Lambda: ALB (push)"
REGION, STACK, PREFIX = "us-east-1", "batch-autoretry-prod", "/batch-autoretry/prod/"
NOT_RUN: dict[str, str] = {}
KEY_FILE = ROOT / "tencent-key.json"  # C1 writes it, C2 stores and removes it
TEARDOWN = "C6"
# moto 5.2.5 leaves a stack's Outputs as they were when it executes a change set (osls deploys by
# change sets), where CloudFormation evaluates them for the new template: path D reads one. So the
# server runs with its change-set execution followed by what moto's own UpdateStack does for them.
MOTO_SERVER = """
import sys
from moto.cloudformation.models import CloudFormationBackend
from moto.server import main

executed = CloudFormationBackend.execute_change_set

def execute_change_set(self, change_set_name, stack_name=None):
    executed(self, change_set_name, stack_name)
    for change_set in self.change_sets.values():
        if change_set_name in (change_set.change_set_id, change_set.change_set_name):
            change_set.stack._parse_template()
            change_set.stack.output_map = change_set.stack._create_output_map()

CloudFormationBackend.execute_change_set = execute_change_set
main(sys.argv[1:])
"""


def steps(heading: str) -> dict[str, list[str]]:
    """The section's `sh` blocks by step: the last `**C<n>.` label before each (the section's
    letter where it numbers none)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end > 0 else None]
    found: dict[str, list[str]] = {}
    for block in re.finditer(r"```sh\n(.*?)```", section, re.S):
        labels = re.findall(r"\*\*([A-D]\d)\.", section[:block.start()])
        found.setdefault(labels[-1] if labels else heading[3], []).append(block[1])
    return found


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """moto's AWS server, in a process of its own, on a free port."""
    for tool in ("aws", "node", "npx"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed: docs/deploy.md's Lambda commands need it")
    port = free_port()
    with (tmp_path / "moto.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-c", MOTO_SERVER, "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        end_group(server)


@pytest.fixture
def shell(moto_server: str, emu: Emulator, tmp_path: Path) -> dict[str, str]:
    """A user's shell: the virtualenv's `python` first on PATH, their key for Tencent (the
    emulator's) exported as section 2 says, their AWS credentials (moto's), nothing of ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_", "AWS_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_PAGER": "",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "AUTORETRY_TDMQ_ENDPOINT": emu.endpoint, "AUTORETRY_TDMQ_PROTOCOL": "http",
        "AUTORETRY_DEPLOY_ENDPOINT": emu.endpoint, "AUTORETRY_DEPLOY_PROTOCOL": "http",
        "SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off",
    })
    return env


@pytest.fixture
def key_file() -> Iterator[Path]:
    """The file C1 writes in the checkout: none before (C1 would refuse it), none left after."""
    if KEY_FILE.exists():
        pytest.fail(f"{KEY_FILE} exists in the checkout: C1 would not write over it")
    try:
        yield KEY_FILE
    finally:
        KEY_FILE.unlink(missing_ok=True)


def run(blocks: list[str], env: dict[str, str]) -> str:
    script = "set -euo pipefail\n" + "\n".join(blocks)
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, f"{script}\n--- exit {done.returncode}\n" \
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def client(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name=REGION).client(service, endpoint_url=endpoint)


def parameters(endpoint: str) -> dict[str, dict[str, Any]]:
    ssm = client(endpoint, "ssm")
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    return {n: ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"] for n in names}


def function_environments(endpoint: str) -> dict[str, dict[str, str]]:
    return {f["FunctionName"]: f["Environment"]["Variables"]
            for f in client(endpoint, "lambda").list_functions()["Functions"]}


def stack_template(endpoint: str) -> str:
    body = client(endpoint, "cloudformation").get_template(StackName=STACK)["TemplateBody"]
    return body if isinstance(body, str) else json.dumps(body)


def assert_the_key_stored_is_c1s(endpoint: str, emu: Emulator, key_file: Path) -> None:
    """The key's parameter holds the key of the sub-user C1 made, which the emulator takes; C2 left
    no copy of it in the checkout."""
    user = emu.cam.user(USER)
    assert user is not None and user.console_login == 0
    stored = json.loads(parameters(endpoint)[f"{PREFIX}tencent-key"]["Value"])
    assert stored == {"SecretId": user.secret_id, "SecretKey": user.secret_key}
    assert signs(emu, user.secret_id, user.secret_key) == "ok"
    assert not key_file.exists()


def assert_the_stack_reads_what_the_docs_stored(endpoint: str) -> dict[str, dict[str, Any]]:
    """The parameters are exactly those the deployed stack names; the identity its functions are
    given is the one in their ledger's table; the key's parameter reads as the function reads it."""
    stored = parameters(endpoint)
    assert {n: p["Type"] for n, p in stored.items()} == {
        f"{PREFIX}tencent-key": "SecureString", f"{PREFIX}auth-token": "String",
        f"{PREFIX}ledger-id": "String"}
    envs = function_environments(endpoint)
    assert sorted(envs) == [f"{STACK}-events", f"{STACK}-pull", f"{STACK}-sweep"]
    template = stack_template(endpoint)
    named = set(re.findall(r"\{\{resolve:ssm:([^}:]+)\}\}", template))
    named |= {env["AUTORETRY_TENCENT_KEY_PARAM"] for env in envs.values()}
    assert named == set(stored), "the stack names parameters the docs did not create, or the reverse"
    # The role may read the key's parameter, by the name the docs stored it under.
    role = json.loads(template)["Resources"]["IamRoleLambdaExecution"]["Properties"]
    (reads,) = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]
                if "ssm:GetParameter" in s["Action"]]
    assert [r["Fn::Join"][1][-1] for r in reads["Resource"]] == [f"{PREFIX}tencent-key"]
    for env in envs.values():
        # The second deploy put the reference back: no function runs without the identity.
        assert env["AUTORETRY_LEDGER_ID"] == f"{{{{resolve:ssm:{PREFIX}ledger-id}}}}"
        assert env["AUTORETRY_AUTH_TOKEN"] == f"{{{{resolve:ssm:{PREFIX}auth-token}}}}"
    (store_url,) = {env["AUTORETRY_STORE"] for env in envs.values()}
    store = DynamoStore(f"{store_url}?region={REGION}", client=client(endpoint, "dynamodb"))
    identity = Ledger(store).identity()
    assert identity is not None and identity == stored[f"{PREFIX}ledger-id"]["Value"]
    (key_param,) = {env["AUTORETRY_TENCENT_KEY_PARAM"] for env in envs.values()}
    function_env = {secrets.PARAM_VAR: key_param}
    secrets.forget()
    try:
        assert secrets.load_tencent_key(function_env, client=client(endpoint, "ssm"))
    finally:
        secrets.forget()
    assert function_env[secrets.ID_VAR].startswith("AKID") and function_env[secrets.KEY_VAR]
    return stored


def test_path_c_as_documented_stores_what_the_stack_reads_and_tears_it_all_down(
        moto_server: str, emu: Emulator, shell: dict[str, str], key_file: Path) -> None:
    c = steps(PATH_C)
    assert sorted(c) == ["C1", "C2", "C3", "C4", TEARDOWN], sorted(c)
    for step, why in NOT_RUN.items():
        print(f"{step} not run: {why}")
    run([b for step in ("C1", "C2", "C3", "C4") if step not in NOT_RUN for b in c[step]], shell)

    assert_the_key_stored_is_c1s(moto_server, emu, key_file)
    assert_the_stack_reads_what_the_docs_stored(moto_server)
    # C4 subscribed the queue the deployed functions pull.
    (sub,) = emu.cmq.subscriptions.values()
    queues = {env["AUTORETRY_QUEUE"] for env in function_environments(moto_server).values()}
    assert (sub.topic, sub.protocol, {sub.endpoint}) == ("batch-events", "queue", queues)

    (user,) = emu.cam.users.values()
    run(c[TEARDOWN], shell)
    stacks = client(moto_server, "cloudformation").list_stacks()["StackSummaries"]
    assert [s["StackName"] for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"] == []
    assert client(moto_server, "dynamodb").list_tables()["TableNames"] == []
    assert parameters(moto_server) == {}
    # The key is gone with its sub-user and policy: the emulator no longer takes it.
    assert emu.cam.users == {} and emu.cam.policies == {}
    assert signs(emu, user.secret_id, user.secret_key) == "AuthFailure.SecretIdNotFound"


def test_path_d_as_documented_subscribes_the_albs_url_with_the_stored_token(
        moto_server: str, emu: Emulator, shell: dict[str, str], key_file: Path) -> None:
    c, d = steps(PATH_C), steps(PATH_D)
    assert sorted(d) == ["D"], sorted(d)
    text = DOC.read_text(encoding="utf-8")
    assert "C1\N{EN DASH}C3 apply" in text[text.index(PATH_D):], "path D no longer builds on C1-C3"
    ec2 = client(moto_server, "ec2")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"], key=lambda s: s["AvailabilityZone"])[:2]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    mine = {"vpc-…": vpc["VpcId"], "subnet-…,subnet-…": ",".join(s["SubnetId"] for s in subnets)}
    blocks = []
    for block in d["D"]:
        for placeholder, value in mine.items():
            assert placeholder in block, f"path D no longer asks for {placeholder}"
            block = block.replace(placeholder, value)
        blocks.append(block)
    run(c["C1"] + c["C2"] + c["C3"] + blocks, shell)

    assert_the_key_stored_is_c1s(moto_server, emu, key_file)
    stored = assert_the_stack_reads_what_the_docs_stored(moto_server)
    (alb,) = client(moto_server, "elbv2").describe_load_balancers()["LoadBalancers"]
    assert (alb["Scheme"], alb["VpcId"]) == ("internet-facing", vpc["VpcId"])
    outputs = client(moto_server, "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0][
        "Outputs"]
    url = {o["OutputKey"]: o["OutputValue"] for o in outputs}["AlbEventsUrl"]
    assert url == f"http://{alb['DNSName']}/events"
    # The push reaches the ALB's URL with the token the events function is given.
    (sub,) = emu.cmq.subscriptions.values()
    token = stored[f"{PREFIX}auth-token"]["Value"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert (sub.topic, sub.protocol, sub.endpoint) == ("batch-events", "http", f"{url}?token={token}")
