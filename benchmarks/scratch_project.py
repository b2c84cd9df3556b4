"""A scratch copy of the project for the benchmarks: settings, configuration, no data yet."""

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def new_project(root: Path) -> Path:
    """A copy of the project's settings and base configuration with its own data folder."""
    root.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    return root
