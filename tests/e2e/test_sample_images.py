"""`fruit-images` against a local folder and against a local stand-in of GitHub's contents API."""

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from fruit_pipeline.apps.tools.sample_images import main
from tests.support.images import encode, fruit

CLASSES = ["Apple Golden 1", "Banana", "Lemon", "Mango", "Pear Kaiser", "Raspberry"]


@pytest.fixture
def repository(tmp_path) -> Path:
    """A Fruits-360 layout: Test/<class>/<n>_100.jpg, 3 images a class, and a stray README."""
    for index, label in enumerate(CLASSES):
        for number in range(3):
            path = tmp_path / "repo" / "Test" / label / f"{number}_100.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(fruit(seed=index * 10 + number), "JPEG"))
        (tmp_path / "repo" / "Test" / label / "README.md").write_text("not an image")
    return tmp_path / "repo"


@pytest.fixture
def contents_api(repository):
    """Serves /contents/<folder> listings like GitHub's API, and /raw/<file> downloads."""

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            route, _, rest = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
            if route == "raw":
                return super().do_GET()
            folder = repository / rest
            if not folder.is_dir():
                self.send_error(404)
                return None
            base = f"http://127.0.0.1:{self.server.server_port}"
            listing = [
                {
                    "name": child.name,
                    "type": "dir" if child.is_dir() else "file",
                    "download_url": f"{base}/raw/{quote(child.relative_to(repository).as_posix())}",
                }
                for child in sorted(folder.iterdir())
            ]
            body = json.dumps(listing).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None

        def translate_path(self, path):
            return str(repository / unquote(urlsplit(path).path).removeprefix("/raw/"))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/contents"
    server.shutdown()


def images_in(folder: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.jpg"))) for d in sorted(folder.iterdir())}


def test_download_takes_the_named_classes(contents_api, repository, tmp_path):
    dest = tmp_path / "images"
    code = main(
        ["--api", contents_api, "--dest", str(dest), "--per-class", "2"]
        + ["--classes", "Apple Golden 1", "Lemon"]
    )
    assert code == 0
    assert images_in(dest) == {"Apple Golden 1": 2, "Lemon": 2}
    downloaded = dest / "Apple Golden 1" / "0_100.jpg"
    assert downloaded.read_bytes() == (repository / "Test/Apple Golden 1/0_100.jpg").read_bytes()


def test_download_spreads_the_default_class_count_over_the_list(contents_api, tmp_path):
    dest = tmp_path / "images"
    assert main(["--api", contents_api, "--dest", str(dest), "--class-count", "3"]) == 0
    assert images_in(dest) == {"Apple Golden 1": 3, "Lemon": 3, "Pear Kaiser": 3}


def test_an_unknown_class_is_refused_with_the_list(contents_api, tmp_path, caplog):
    code = main(["--api", contents_api, "--dest", str(tmp_path), "--classes", "Durian"])
    assert code == 1
    assert "unknown classes ['Durian']" in caplog.text
    assert "Raspberry" in caplog.text


def test_copy_from_a_local_folder_keeps_the_class_folders(test1_images, tmp_path):
    dest = tmp_path / "images"
    assert main(["--from", str(test1_images), "--dest", str(dest), "--per-class", "2"]) == 0
    assert images_in(dest) == {"apple": 2, "lemon": 2, "mango": 2, "raspberry": 2}


def test_copy_from_a_missing_folder_says_so(tmp_path, caplog):
    assert main(["--from", str(tmp_path / "nowhere"), "--dest", str(tmp_path / "x")]) == 1
    assert "no such folder" in caplog.text


def test_copy_takes_the_named_classes_or_a_count_of_them(repository, tmp_path, caplog):
    source, dest = repository / "Test", tmp_path / "images"
    arguments = ["--from", str(source), "--per-class", "1"]
    assert main([*arguments, "--dest", str(dest), "--classes", "Banana", "Mango"]) == 0
    assert images_in(dest) == {"Banana": 1, "Mango": 1}
    assert main([*arguments, "--dest", str(tmp_path / "three"), "--class-count", "3"]) == 0
    assert images_in(tmp_path / "three") == {"Apple Golden 1": 1, "Lemon": 1, "Pear Kaiser": 1}
    assert main([*arguments, "--dest", str(tmp_path / "x"), "--classes", "Durian"]) == 1
    assert "unknown classes ['Durian']" in caplog.text


def test_copy_refuses_a_split_and_names_the_folder_to_give(repository, tmp_path, caplog):
    code = main(["--from", str(repository), "--dest", str(tmp_path / "x"), "--split", "Test"])
    assert code == 1
    assert f"--from {repository / 'Test'}" in caplog.text
    assert not (tmp_path / "x").exists()
