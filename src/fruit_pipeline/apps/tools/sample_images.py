"""`fruit-images`: fill the images folder with a small Fruits-360 sample, downloaded or copied.

Downloads go through the GitHub contents API of the public Fruits-360 repository (one request
to list the classes, one per class, one per image); `--from DIR` copies a local folder instead,
for machines without internet. Defaults live in `conf/base/sample_images.yml`.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fruit_pipeline.config import config_loader
from fruit_pipeline.contracts import IMAGE_SUFFIXES

logger = logging.getLogger("fruit_pipeline.apps.tools.sample_images")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, then download or copy the sample."""
    settings = _settings()
    parser = argparse.ArgumentParser(prog="fruit-images", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="source", type=Path, help="copy this local folder instead of downloading"
    )
    parser.add_argument("--dest", type=Path, default=Path(settings["destination"]))
    # Without a value on the command line, a download takes conf's classes and class count, and
    # a copy every class folder of the source.
    parser.add_argument("--classes", nargs="+", help="class folders to take, by name")
    parser.add_argument("--class-count", type=int, help="that many classes spread over the list")
    parser.add_argument("--per-class", type=int, default=settings["per_class"])
    parser.add_argument("--split", help="Training or Test (downloads only)")
    parser.add_argument("--api", default=settings["repository_api"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.source:
            if args.split:
                raise ValueError(
                    f"--split chooses a folder of the download: with --from, name that folder "
                    f"itself (--from {args.source / args.split})"
                )
            written = copy_sample(
                args.source, args.dest, args.per_class, args.classes, args.class_count
            )
        else:
            split = args.split or settings["split"]
            available = sorted(
                entry["name"] for entry in _listing(args.api, split) if entry["type"] == "dir"
            )
            classes = choose_classes(
                available,
                args.classes or settings["classes"],
                args.class_count or settings["class_count"],
                f"the {split} split",
            )
            written = download_sample(args.api, split, classes, args.dest, args.per_class)
    except (OSError, ValueError) as error:
        logger.error("fruit-images: %s", error)
        return 1
    logger.info("%d images in %s", written, args.dest)
    return 0


def _settings() -> dict[str, Any]:
    conf_source = Path(os.environ.get("KEDRO_CONF_SOURCE", "conf"))
    return dict(config_loader(conf_source.resolve().parent)["sample_images"])


def copy_sample(
    source: Path,
    dest: Path,
    per_class: int | None,
    classes: list[str] | None = None,
    class_count: int | None = None,
) -> int:
    """Copy the image folders under source to dest (every class, or those asked for), at most
    per_class images from each."""
    if not source.is_dir():
        raise ValueError(f"--from {source}: no such folder")
    folders = sorted({path.parent for path in source.rglob("*") if _is_image(path)})
    if classes or class_count:
        available = sorted({folder.name for folder in folders})
        chosen = set(choose_classes(available, classes, class_count, f"--from {source}"))
        folders = [folder for folder in folders if folder.name in chosen]
    written = 0
    for folder in folders:
        for path in sorted(filter(_is_image, folder.iterdir()))[:per_class]:
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written += 1
    if not written:
        raise ValueError(f"--from {source}: no images ({' '.join(IMAGE_SUFFIXES)}) in it")
    return written


def choose_classes(
    available: list[str], classes: list[str] | None, class_count: int | None, where: str
) -> list[str]:
    """The asked classes, checked against the available ones, or class_count spread over them."""
    if classes:
        unknown = sorted(set(classes) - set(available))
        if unknown:
            raise ValueError(f"unknown classes {unknown}; {where} has: {available}")
        return list(classes)
    count = class_count or len(available)
    step = max(len(available) // count, 1)
    return available[::step][:count]


def download_sample(
    api: str, split: str, classes: list[str], dest: Path, per_class: int | None
) -> int:
    """Download at most per_class images of each class into dest/<class>/."""
    written = 0
    for label in classes:
        images = sorted(
            (
                entry
                for entry in _listing(api, f"{split}/{label}")
                if entry["type"] == "file" and _is_image(Path(entry["name"]))
            ),
            key=lambda entry: entry["name"],
        )[:per_class]
        (dest / label).mkdir(parents=True, exist_ok=True)
        for entry in images:
            with urllib.request.urlopen(entry["download_url"], timeout=60) as response:
                (dest / label / entry["name"]).write_bytes(response.read())
        logger.info("%s: %d images", label, len(images))
        written += len(images)
    return written


def _listing(api: str, folder: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{api.rstrip('/')}/{quote(folder)}")
    request.add_header("Accept", "application/vnd.github+json")
    # An unauthenticated client gets 60 API requests an hour; a token lifts that.
    if token := os.environ.get("GITHUB_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


if __name__ == "__main__":
    sys.exit(main())
