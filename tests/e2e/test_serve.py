"""The classifier export against the Spark model; fruit-serve: API, bad input, a real browser."""

import dataclasses
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel

from fruit_pipeline.apps.serve.app import ServiceOptions, create_app, load_service
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.core.images import decode_image
from fruit_pipeline.pipelines.predict.nodes import OFFSETS, calibrated_probabilities
from fruit_pipeline.pipelines.train.nodes import unknown_threshold
from fruit_pipeline.spark.imagenet_prior import prior_offsets
from fruit_pipeline.spark.ml_stages import stage
from fruit_pipeline.spark.pca import as_vectors
from tests.support.helpers import SAMPLE, WEIGHTS_FILE, local_path, read_features
from tests.support.images import bad_files, encode, fruit

EXPORT = Path("data/06_models/classifier_export.json")
MODEL_CACHE = Path("data/06_models/feature_model_cache")
CHROMIUM = Path("/usr/bin/chromium")


def sample_test_images() -> list[Path]:
    return sorted((SAMPLE / "Test").rglob("*.jpg"))


@pytest.fixture(scope="module")
def trained(trained_sample_project):
    project, _ = trained_sample_project
    return project, ExportedClassifier.load(str(project / EXPORT))


@pytest.fixture(scope="module")
def scored_test_images(spark, trained):
    """The Spark pipeline's (calibrated) probabilities for the test images with the ImageNet
    prior, as predict computes them, and the answer they give, with the images' features."""
    project, export = trained
    assert export.prior is not None
    features = read_features(spark, project)
    test = features.where(features.path.contains("/Test/"))
    classifier = PipelineModel.load(str(project / "data/06_models/classifier"))
    columns = stage(classifier, LogisticRegressionModel).numClasses
    probabilities = calibrated_probabilities(export.temperature, with_prior=True)
    scored = (
        classifier.transform(as_vectors(test))
        .withColumn(OFFSETS, prior_offsets(export.prior, columns))
        .select("path", "label", probabilities.alias("p"))
        .toPandas()
    )
    scored["predicted_label"] = [export.labels[np.argmax(p)] for p in scored["p"]]
    return scored.merge(test.select("path", "features", "colour").toPandas(), on="path")


def test_the_export_gives_the_spark_models_probabilities(trained, scored_test_images):
    _, export = trained
    features = np.hstack(
        [np.stack(scored_test_images[name]).astype(np.float64) for name in export.descriptors]
    )
    expected = np.stack(scored_test_images["p"])
    assert len(features) == 135
    np.testing.assert_allclose(export.probabilities(features), expected, rtol=0, atol=1e-6)
    labels = [export.labels[i] for i in export.probabilities(features).argmax(axis=1)]
    assert labels == list(scored_test_images["predicted_label"])


def test_the_export_names_its_feature_model_and_metrics(trained):
    _, export = trained
    assert export.feature_model["weights"] == "imagenet"
    assert export.feature_model["engine"] == "onnxruntime"
    assert export.feature_model["framing"] == export.framing == "pad"
    assert len(export.feature_model["weights_sha256"]) == 64
    # An export made before framing was recorded learnt from squashed photos.
    unrecorded = {k: v for k, v in export.feature_model.items() if k != "framing"}
    assert dataclasses.replace(export, feature_model=unrecorded).framing == "squash"
    assert export.metrics["accuracy"] >= 0.98
    assert 0 <= export.metrics["expected_calibration_error"] < 0.1
    assert sorted(export.labels) == ["apple", "lemon", "mango", "raspberry"]


def test_the_unknown_answer_on_the_test_images_is_what_the_metrics_say(trained, scored_test_images):
    project, export = trained
    metrics = json.loads((project / "data/08_reporting/classification_metrics.json").read_text())
    selection = json.loads((project / "data/08_reporting/classifier_selection.json").read_text())
    assert export.unknown_threshold == selection["unknown_threshold"]
    assert export.temperature == selection["temperature"]
    top = np.stack(scored_test_images["p"]).max(axis=1)
    correct = (scored_test_images["label"] == scored_test_images["predicted_label"]).to_numpy()
    answered = top >= export.unknown_threshold
    assert metrics["unknown_answer"]["answered_share"] == pytest.approx(answered.mean())
    assert metrics["unknown_answer"]["answered_accuracy"] == pytest.approx(correct[answered].mean())


def test_unknown_threshold_on_a_known_case():
    top = np.array([0.99, 0.95, 0.9, 0.8, 0.6, 0.5])
    correct = np.array([True, True, True, True, False, True])
    result = unknown_threshold(top, correct, keep_correct=0.8)
    # 5 correct answers, 80 % of them is 4: the fourth highest correct probability.
    assert result["threshold"] == 0.8
    assert result["answered_share"] == pytest.approx(4 / 6)
    assert result["answered_accuracy"] == 1.0
    assert result["accuracy_without_threshold"] == pytest.approx(5 / 6)


def service_options(project: Path, **changes) -> ServiceOptions:
    options = ServiceOptions(
        export=str(project / EXPORT),
        weights=None,
        model_cache=str(project / MODEL_CACHE),
        max_image_pixels=25_000_000,
        max_upload_bytes=2**20,
        top=3,
        threads=1,
    )
    return dataclasses.replace(options, **changes)


FACTS = {"lemon": "Lemons are rich in vitamin C."}


@pytest.fixture(scope="module")
def service(trained):
    project, _ = trained
    return load_service(service_options(project), FACTS)


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


def upload(client, content: bytes, field: str = "file", name: str = "photo.jpg"):
    return client.post("/predict", files={field: (name, content, "image/jpeg")})


def test_a_photo_gets_its_label_the_top_candidates_and_a_fact(client):
    lemon = next(path for path in sample_test_images() if path.parent.name == "lemon")
    response = upload(client, lemon.read_bytes())
    assert response.status_code == 200
    answer = response.json()
    assert answer["label"] == "lemon"
    assert answer["top"][0] == {"label": "lemon", "probability": answer["probability"]}
    assert len(answer["top"]) == 3
    assert answer["probability"] >= answer["top"][1]["probability"]
    assert answer["fact"] == FACTS["lemon"]
    assert answer["model"]["feature_model"]["engine"] == "onnxruntime"


# A 12-megapixel JPEG as a phone stores it; a HEIC smaller (its encoder takes minutes at 12 MP).
@pytest.mark.parametrize(("image_format", "size"), [("JPEG", (3024, 4032)), ("HEIF", (600, 800))])
def test_a_phone_photo_in_jpeg_or_heic_gets_its_fruit(client, image_format, size):
    lemon = next(path for path in sample_test_images() if path.parent.name == "lemon")
    # A portrait shot stored as landscape pixels with EXIF orientation 6.
    stored = Image.open(lemon).resize(size).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = encode(stored, image_format, exif=exif.tobytes(), quality=90)
    answer = upload(client, photo, name=f"IMG_0001.{image_format.lower()}").json()
    assert answer["top"][0]["label"] == "lemon", answer


def test_the_service_frames_a_photo_as_its_export_says(service, client):
    lemon = next(path for path in sample_test_images() if path.parent.name == "lemon")
    # A shelf: the lemon at one end of a wide photo, which squashing would stretch tenfold.
    wide = Image.new("RGB", (1000, 100), (90, 60, 40))
    wide.paste(Image.open(lemon), (0, 0))
    photo = encode(wide, "PNG")

    def probabilities(framing: str) -> np.ndarray:
        pixels = decode_image(photo, feature_model.INPUT_SIZE, 25_000_000, framing)
        embedding = service.predict_features(pixels[np.newaxis].astype(np.float32))[0]
        descriptors = service.classifier.descriptor_vector(embedding, pixels)
        return service.classifier.probabilities(descriptors[np.newaxis])[0]

    top = upload(client, photo, name="shelf.png").json()["top"]
    answered = np.array([candidate["probability"] for candidate in top])
    order = [service.classifier.labels.index(candidate["label"]) for candidate in top]
    framed, squashed = probabilities(service.classifier.framing), probabilities("squash")
    np.testing.assert_allclose(answered, framed[order], rtol=0, atol=1e-6)
    # The answer is sure either way: the framings differ in the log-probabilities of the others.
    assert np.abs(np.log(framed) - np.log(squashed)).max() > 1.0


def test_the_service_gives_the_spark_models_answer_for_a_photo(client, scored_test_images):
    # The service decodes the file and embeds it itself: same label, probability within 1e-4.
    for row in scored_test_images.iloc[::9].itertuples():
        answer = upload(client, local_path(row.path).read_bytes()).json()
        assert answer["top"][0]["label"] == row.predicted_label
        assert answer["probability"] == pytest.approx(max(row.p), abs=1e-4)


def test_health_docs_and_the_page(client):
    health = client.get("/health").json()
    assert health["ready"] is True
    assert health["model"]["labels"] == 4
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/").text
    assert 'accept="image/*"' in page
    assert 'capture="environment"' in page


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_bad_files_get_a_422_with_their_reason(client, name):
    content, word = bad_files()[name]
    response = upload(client, content)
    assert response.status_code == 422
    assert word in response.json()["error"]


def test_bad_requests_get_4xx_json_errors(client):
    no_body = client.post("/predict")
    assert no_body.status_code == 422
    assert "multipart form field 'file'" in no_body.json()["error"]
    wrong_field = upload(client, encode(fruit(), "JPEG"), field="image")
    assert wrong_field.status_code == 422
    assert "multipart form field 'file'" in wrong_field.json()["error"]
    too_large = upload(client, b"\xff" * (2**20 + 1))
    assert too_large.status_code == 413
    assert "upload larger than 1048576 bytes" in too_large.json()["error"]

    def streamed():
        for _ in range(20):
            yield b"\xff" * 2**16

    # No Content-Length: the limit counts the bytes as they arrive.
    chunked = client.post(
        "/predict", content=streamed(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert chunked.status_code == 413
    assert "upload larger than" in chunked.json()["error"]


def test_below_the_threshold_the_answer_is_unknown_with_its_candidates(trained):
    project, _ = trained
    service = load_service(service_options(project), FACTS)
    unsure = dataclasses.replace(
        service, classifier=dataclasses.replace(service.classifier, unknown_threshold=1.01)
    )
    answer = upload(TestClient(create_app(unsure)), sample_test_images()[0].read_bytes()).json()
    assert answer["label"] is None
    assert answer["fact"] is None
    assert len(answer["top"]) == 3


def test_weights_other_than_the_trained_ones_are_refused(trained, tmp_path):
    project, _ = trained
    other = tmp_path / "other.h5"
    shutil.copy(WEIGHTS_FILE.with_name(WEIGHTS_FILE.stem + "_no_top.h5"), other)
    with pytest.raises(SystemExit, match="not those the classifier was trained with"):
        load_service(service_options(project, weights=str(other)), FACTS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What the serving install has none of: the service needs no Spark, no Java, no TensorFlow.
# kedro-viz too: its web stack is a laptop's (the spark extra), not the service's.
NOT_SERVING = ["pyspark", "delta", "tensorflow", "keras", "tf2onnx", "kedro_viz"]
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def serving_install(tmp_path_factory) -> Path:
    """A fresh venv with the project's base install, as the README gives it for serving."""
    venv = tmp_path_factory.mktemp("serving") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "-c", str(REPOSITORY / "constraints.txt"), str(REPOSITORY)], check=True
    )
    return venv


@pytest.fixture(scope="module")
def server(trained, serving_install, tmp_path_factory):
    """`fruit-serve` as a user starts it from the serving install, in the trained project's
    folder, on a free port, with no Java on the PATH."""
    project, _ = trained
    # The converted model in the project's cache, as a user's `kedro run` in that folder leaves
    # it: a serving install has no TensorFlow to convert it with.
    feature_model.onnx_feature_model("imagenet", str(project / MODEL_CACHE))
    port = free_port()
    command = [str(serving_install / "bin" / "fruit-serve"), "--port", str(port)]
    log = tmp_path_factory.mktemp("server") / "fruit-serve.log"
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "JAVA_HOME", "SPARK_HOME", "VIRTUAL_ENV"}
    }
    environment["PATH"] = str(serving_install / "bin")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--max-upload-mb", "1"],
            cwd=project,
            env=environment,
            stdout=output,
            stderr=output,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    if process.poll() is not None:
        pytest.fail(f"fruit-serve stopped: {log.read_text()[-3000:]}")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_the_serving_install_has_no_spark_and_no_tensorflow(serving_install):
    python = serving_install / "bin" / "python"
    probe = "import importlib.util as u, sys; print([n for n in sys.argv[1:] if u.find_spec(n)])"
    found = subprocess.run(
        [str(python), "-c", probe, *NOT_SERVING], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


def test_the_service_answers_without_spark_or_tensorflow(server):
    # The server runs from the serving install: start-up and answers need none of NOT_SERVING.
    photo = next(path for path in sample_test_images() if path.parent.name == "lemon")
    response = httpx.post(f"{server}/predict", files={"file": ("lemon.jpg", photo.read_bytes())})
    assert response.status_code == 200
    assert response.json()["top"][0]["label"] == "lemon"
    assert httpx.get(f"{server}/health").json()["ready"] is True


def test_bad_requests_from_several_clients_never_take_the_server_down(server):
    good = [(path.read_bytes(), path.parent.name) for path in sample_test_images()[::12]]
    bad = [content for content, _ in bad_files().values()] + [b"", b"\xff" * (2**20 + 10)]
    requests = [("good", item) for item in good] + [("bad", item) for item in bad] * 3
    order = np.random.default_rng(0).permutation(len(requests))

    def send(kind_and_item):
        kind, item = kind_and_item
        content = item[0] if kind == "good" else item
        response = httpx.post(
            f"{server}/predict", files={"file": ("x.jpg", io.BytesIO(content))}, timeout=60
        )
        return kind, item, response

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, [requests[i] for i in order]))
    for kind, item, response in results:
        if kind == "good":
            assert response.status_code == 200
            assert response.json()["top"][0]["label"] == item[1]
        else:
            assert 400 <= response.status_code < 500
            assert response.json()["error"]
    assert httpx.get(f"{server}/health").json()["ready"] is True


def test_the_page_in_a_real_browser_names_a_photo(server, tmp_path):
    if not CHROMIUM.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs Debian's chromium for this test.")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    mango = next(path for path in sample_test_images() if path.parent.name == "mango")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(server)
        page.set_input_files("#photo", str(mango))
        page.wait_for_selector("#answer", state="visible", timeout=30_000)
        label = page.inner_text("#label")
        confidence = page.inner_text("#confidence")
        candidates = page.locator("#top li").count()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert label == "mango"
    assert confidence.startswith("Confidence ")
    assert candidates == 3
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_load_benchmark_runs_and_prints_its_figures(trained):
    project, _ = trained
    result = subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "benchmarks" / "serve_benchmark.py"),
            "--project",
            str(project),
            "--images",
            str(SAMPLE / "Test"),
            "--requests",
            "40",
            "--clients",
            "4",
            "--max-seconds",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "40 answered, 0 errors of 40 requests" in result.stdout
    assert re.search(r"requests/s; latency p50 \d+ ms, p95 \d+ ms", result.stdout)
