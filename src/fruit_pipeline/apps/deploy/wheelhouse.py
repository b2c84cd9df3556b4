"""A wheelhouse for the cluster's nodes: every wheel the project needs, so they install with no
index (private subnets have no internet). The nodes run Amazon Linux 2023 (glibc 2.34), x86_64,
CPython 3.11: the wheels are chosen for that platform, whatever machine stages them. The base
install only: pyspark is EMR's own, and no node converts the weights (`fruit-deploy package` does:
apps.deploy.model_cache), so none needs the keras extra's TensorFlow."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Amazon Linux 2023's glibc is 2.34: every manylinux tag up to it runs there. pip does not infer
# the older tags from the newest one, so each is named (with the legacy aliases of 2.17, 2.12, 2.5).
NODE_GLIBC_MINOR = 34
NODE_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(NODE_GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
NODE_PYTHON_VERSION = "3.11"
NODE_ABI = "cp311"
# Installed without its dependencies over EMR's own Spark (its pyspark would shadow EMR's).
WITHOUT_DEPENDENCIES = ("delta-spark",)


class WheelhouseError(RuntimeError):
    """A dependency has no wheel the nodes can install."""


def build_wheelhouse(project_wheel: Path, constraints: Path, dest: Path) -> list[Path]:
    """Download (or build, for pure-Python source releases) every wheel the nodes install."""
    dest.mkdir(parents=True, exist_ok=True)
    for source in _source_only_requirements(project_wheel, constraints):
        _pip("wheel", "--no-deps", "--wheel-dir", str(dest), "-c", str(constraints), source)
    built = [wheel for wheel in dest.glob("*.whl") if not wheel.name.endswith("-none-any.whl")]
    if built:
        names = ", ".join(wheel.name for wheel in built)
        raise WheelhouseError(
            f"{names}: built for this machine, not for the nodes ({NODE_PLATFORMS[0]})"
        )
    for_the_nodes = [
        "--only-binary=:all:",
        *(option for platform in NODE_PLATFORMS for option in ("--platform", platform)),
        "--python-version",
        NODE_PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        NODE_ABI,
        "--find-links",
        str(dest),
        "--dest",
        str(dest),
        "-c",
        str(constraints),
    ]
    _pip("download", *for_the_nodes, str(project_wheel))
    _pip("download", *for_the_nodes, "--no-deps", *WITHOUT_DEPENDENCIES)
    return sorted(dest.glob("*.whl"))


def _source_only_requirements(project_wheel: Path, constraints: Path) -> list[str]:
    """The requirements (name==version) that PyPI serves as source releases only."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            "-c",
            str(constraints),
            str(project_wheel),
        )
        resolved = json.loads(report.read_text())["install"]
    return [
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in resolved
        if not item["download_info"]["url"].endswith(".whl")
    ]


def _pip(*arguments: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *arguments], check=True
    )
