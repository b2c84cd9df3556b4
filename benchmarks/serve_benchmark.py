"""Load on fruit-serve: real photos from concurrent clients on 127.0.0.1, bounded in count and time.

Starts `fruit-serve` in a trained project, sends `--requests` photos (round-robin over a folder
of real images) from `--clients` concurrent clients, stops after `--max-seconds` at the latest,
and prints requests/second, latency percentiles and errors.

    python benchmarks/serve_benchmark.py --project . --images ../shared/data/fruits-360/sample/Test
"""

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(project: Path, port: int, extra: list[str], log: Path) -> subprocess.Popen:
    """fruit-serve in the project folder, its log to a file; returns once /health answers."""
    command = [str(Path(sys.executable).parent / "fruit-serve"), "--port", str(port), *extra]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=project, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"fruit-serve stopped: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("fruit-serve did not answer /health within 120 s")


def load(url: str, photos: list[bytes], requests: int, clients: int, max_seconds: float) -> dict:
    """Send the requests from the clients; latencies of the answered ones, errors counted."""
    tickets = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        with httpx.Client(timeout=30) as session:
            while time.monotonic() < deadline:
                with lock:
                    ticket = next(tickets)
                if ticket >= requests:
                    return
                photo = photos[ticket % len(photos)]
                start = time.perf_counter()
                try:
                    response = session.post(f"{url}/predict", files={"file": ("p.jpg", photo)})
                    failed = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as error:
                    failed = type(error).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    (errors.append(failed) if failed else latencies.append(elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="a trained project")
    parser.add_argument("--images", type=Path, required=True, help="a folder of real photos")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--server-args", default="", help="extra fruit-serve options")
    args = parser.parse_args()
    photos = [path.read_bytes() for path in sorted(args.images.rglob("*.jpg"))]
    if not photos:
        raise SystemExit(f"no .jpg photos under {args.images}")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="serve_benchmark_")) / "fruit-serve.log"
    server = start_server(args.project.resolve(), port, args.server_args.split(), log)
    try:
        url = f"http://127.0.0.1:{port}"
        load(url, photos, min(50, args.requests), args.clients, args.max_seconds)  # warm-up
        result = load(url, photos, args.requests, args.clients, args.max_seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = np.asarray(result["latencies"]) * 1000
    answered = len(latencies)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if answered else (np.nan,) * 3
    print(
        f"machine: {os.cpu_count()} cores; {args.clients} clients; photos of {len(photos)} files; "
        f"server options: {args.server_args or '-'}"
    )
    print(
        f"{answered} answered, {len(result['errors'])} errors of {args.requests} requests in "
        f"{result['seconds']:.1f} s: {answered / result['seconds']:.1f} requests/s; latency "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms"
    )
    if result["errors"]:
        print(f"errors: {sorted(set(result['errors']))}")


if __name__ == "__main__":
    main()
