"""`fruit-deploy upload-images` against an S3 API server (moto on 127.0.0.1): files per second
with one request at a time and with the command's parallel uploads, in one run.

On a corpus of --size real images copied round-robin (class folders kept), each upload into a
fresh prefix of one bucket. moto is one local Python process: the ratio says what parallel
requests buy, the absolute rates say little about S3 over the internet.

    python benchmarks/upload_benchmark.py --source ../shared/data/fruits-360/sample/Training
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import boto3
from scratch_project import build_corpus

from fruit_pipeline.apps.deploy.commands import UPLOAD_WORKERS, Deployment
from fruit_pipeline.apps.deploy.settings import load_settings

PROJECT = Path(__file__).resolve().parents[1]
REGION = "eu-west-3"
BUCKET = "fruit-pipeline-upload-benchmark"


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the moto server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of class folders")
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    server, endpoint = start_moto()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "benchmark",
            "AWS_SECRET_ACCESS_KEY": "benchmark",
            "FRUIT_PIPELINE_BUCKET": BUCKET,
        }
    )
    try:
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        with tempfile.TemporaryDirectory(prefix="upload_benchmark_") as scratch:
            corpus = build_corpus(args.source, args.size, Path(scratch) / "images")
            megabytes = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file()) / 2**20
            print(f"{args.size} files, {megabytes:.1f} MiB, S3 API at {endpoint}")
            rates = {}
            for workers in (1, UPLOAD_WORKERS):
                settings = load_settings(PROJECT / "conf")
                images_root = f"s3://{BUCKET}/workers-{workers}/images"
                deployment = Deployment(replace(settings, images_root=images_root))
                started = time.perf_counter()
                uploaded, _ = deployment.upload_images(corpus, workers=workers)
                seconds = time.perf_counter() - started
                assert uploaded == args.size
                rates[workers] = args.size / seconds
                print(f"{workers:>2} at a time: {seconds:6.1f} s, {rates[workers]:6.0f} files/s")
            print(f"parallel / one at a time: {rates[UPLOAD_WORKERS] / rates[1]:.2f}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
