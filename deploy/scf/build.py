"""Build the Tencent SCF deployment package: the function's code, the entry file `index.py`, and
`pip install --target` of requirements.txt (runtime dependencies only) as wheels for SCF's Python
runtime (CPython 3.10, manylinux2014 x86_64), zipped reproducibly.

    python deploy/scf/build.py                  # -> build/scf/package/ and build/scf/batch-autoretry-scf.zip
    python deploy/scf/build.py --out DIR        # elsewhere

Needs pip and the package index (or pip's cache); no Tencent account. Prints the zip's size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNTIME_PYTHON = "3.10"  # SCF's newest Python runtime (API CreateFunction.Runtime "Python3.10")
PLATFORM = "manylinux2014_x86_64"  # SCF runs on x86_64 Linux with glibc 2.17
ZIP_NAME = "batch-autoretry-scf.zip"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # the same inputs give the same zip, byte for byte
_SKIP_DIRS = {"__pycache__", "bin"}


# What a runtime dependency needs only on an older Python, by the version below which it is needed.
# pip evaluates an environment marker against the interpreter that runs it, not --python-version, so
# redis's `async-timeout; python_full_version < "3.11.3"` is dropped when 3.11.7 builds for 3.10:
# named here, the zip has it.
BELOW: dict[tuple[int, ...], list[str]] = {(3, 11, 3): ["async-timeout==5.0.1"]}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def install_requirements(target: Path, python_version: str) -> None:
    needed = [req for below, reqs in BELOW.items() if _version(python_version) < below for req in reqs]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", str(target), "--requirement", str(ROOT / "requirements.txt"),
         *needed, "--only-binary=:all:", "--platform", PLATFORM, "--implementation", "cp",
         "--python-version", python_version, "--upgrade"],
        check=True,
    )


def stage(package: Path, python_version: str) -> None:
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    install_requirements(package, python_version)
    shutil.copytree(ROOT / "handler", package / "handler",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(HERE / "index.py", package / "index.py")


def _files(package: Path) -> list[Path]:
    found = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if path.is_file() and not (set(rel.parts[:-1]) & _SKIP_DIRS) and path.suffix != ".pyc":
            found.append(path)
    return found


def write_zip(package: Path, archive: Path) -> int:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path in _files(package):
            info = zipfile.ZipInfo(path.relative_to(package).as_posix(), _FIXED_TIME)
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes(), compresslevel=9)
        count = len(z.namelist())
    tmp.replace(archive)
    return count


def build(out: Path, python_version: str = RUNTIME_PYTHON) -> Path:
    package = out / "package"
    stage(package, python_version)
    archive = out / ZIP_NAME
    count = write_zip(package, archive)
    unzipped = sum(p.stat().st_size for p in _files(package))
    print(f"SCF package: {archive} {archive.stat().st_size / 1e6:.2f} MB zipped, "
          f"{unzipped / 1e6:.1f} MB unzipped, {count} files (CPython {python_version}, {PLATFORM})")
    return archive


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "scf")
    ap.add_argument("--python-version", default=RUNTIME_PYTHON)
    args = ap.parse_args(argv)
    build(args.out.resolve(), args.python_version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
