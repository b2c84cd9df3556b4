"""What the benchmarks share: scratch copies of the project, image corpora, timed processes."""

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fruit_pipeline.contracts import IMAGE_SUFFIXES

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


@dataclass
class Measure:
    seconds: float
    peak_rss_mib: float
    output: str
    # Peak resident memory of each kind of process: driver, jvm, python workers.
    peak_by_kind_mib: dict[str, float]


def build_corpus(source: Path, size: int, dest: Path, start: int = 0) -> Path:
    """Copy size images from source round-robin, under their class folders (numbered from start)."""
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"no images under {source}")
    for index in range(start, start + size):
        image = images[index % len(images)]
        target = dest / image.parent.name / f"{index:06d}_{image.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
    return dest


def tree_rss_bytes(root_pid: int) -> dict[str, int]:
    """Resident memory of a process and its descendants, from /proc, by kind of process."""
    totals = {"driver": 0, "jvm": 0, "workers": 0}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            kind = "jvm" if b"java" in command else "workers" if b"pyspark" in command else "driver"
            if "VmRSS:" in status:
                totals[kind] += int(status.split("VmRSS:")[1].split()[0]) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return totals


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> Measure:
    """Run a command; wall time and the peak RSS of its process tree, sampled every 0.1 s."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    peak = 0
    peak_by_kind: dict[str, int] = {}
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not finished.is_set():
            totals = tree_rss_bytes(process.pid)
            peak = max(peak, sum(totals.values()))
            for kind, rss in totals.items():
                peak_by_kind[kind] = max(peak_by_kind.get(kind, 0), rss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    finished.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    by_kind = {kind: rss / 2**20 for kind, rss in peak_by_kind.items()}
    return Measure(seconds, peak / 2**20, output, by_kind)
