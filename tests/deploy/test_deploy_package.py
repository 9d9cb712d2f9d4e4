"""The deploy extra (requirements-deploy.txt: the SCF, CAM and TDMQ SDK packages) is the deployer's
tool, never part of the function: deploy/scf/build.py's zip holds none of it."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from . import test_scf_package

ROOT = Path(__file__).resolve().parents[2]
built = test_scf_package.built  # the zip deploy/scf/build.py builds (a module-scoped fixture)
DEPLOY_SDKS = ("scf", "cam", "tdmq")


def test_the_deploy_extra_is_pinned_and_installed_with_the_dev_requirements() -> None:
    pins = re.findall(r"^tencentcloud-sdk-python-(\w+)==[\d.]+$",
                      (ROOT / "requirements-deploy.txt").read_text(), re.M)
    assert sorted(pins) == sorted(DEPLOY_SDKS)
    assert "-r requirements-deploy.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert not re.search(r"tencentcloud-sdk-python-(scf|cam|tdmq)\b",
                         (ROOT / "requirements.txt").read_text())


def test_the_function_zip_holds_no_deploy_sdk(built: Path) -> None:
    names = zipfile.ZipFile(built).namelist()
    # The function's own SDK product is there, under the names a deploy SDK would have.
    assert any(n.startswith("tencentcloud/batch/") for n in names)
    assert any(n.startswith("tencentcloud_sdk_python_batch-") for n in names)
    for product in DEPLOY_SDKS:
        assert not any(n.startswith(f"tencentcloud/{product}/") for n in names), product
        assert not any(n.startswith(f"tencentcloud_sdk_python_{product}-") for n in names), product
