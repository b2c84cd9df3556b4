"""Studio frames and real photos in one images root: each row's views, the sources, the metrics."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.core.imagenet_prior import read_head
from tests.support.helpers import GROCERY, TEST1, WEIGHTS_FILE, new_project, read_features, run

pytestmark = pytest.mark.shared

# The grocery photos of the fruits Test1's studio frames show, every 10th of each folder.
GROCERY_FRUITS = ("Apple", "Lemon", "Mango")
PHOTO_STEP = 10
COPIES = 4


def images_root(folder: Path) -> Path:
    """`studio/` (Test1's 20 frames, linked) and `grocery/` (a slice of the grocery photos)."""
    folder.mkdir()
    os.symlink(TEST1, folder / "studio")
    for fruit in GROCERY_FRUITS:
        (folder / "grocery" / fruit).mkdir(parents=True)
        for photo in sorted((GROCERY / fruit).glob("*.jpg"))[::PHOTO_STEP]:
            os.symlink(photo, folder / "grocery" / fruit / photo.name)
    return folder


@pytest.fixture(scope="module")
def project(spark, tmp_path_factory) -> tuple[Path, Path]:
    if not GROCERY.is_dir():
        pytest.skip(f"needs the real grocery-store photos at {GROCERY}")
    images = images_root(tmp_path_factory.mktemp("sources") / "images")
    root = new_project(tmp_path_factory.mktemp("real_photos"))
    run(root, "featurize", images_root=str(images))
    run(root, "train")
    return root, images


def test_real_photos_get_their_views_and_studio_frames_none(spark, project):
    root, images = project
    summary = json.loads((root / "data/08_reporting/featurize_summary.json").read_text())
    assert summary["augmentation"].startswith(f"crops {COPIES}, seed 0")
    rows = read_features(spark, root).select("path", "views", "view_colours").collect()
    photos = sum(1 for _ in (images / "grocery").rglob("*.jpg"))
    assert len(rows) == photos + 20 == summary["table_rows"]
    for row in rows:
        copies = COPIES if "/grocery/" in row["path"] else 0
        assert len(row["views"]) == len(row["view_colours"]) == copies
        assert all(len(view) == 1280 and np.isfinite(view).all() for view in row["views"])
    # Views are of the photo: close to it, not the same.
    photo = read_features(spark, root).where("path LIKE '%/grocery/%'").first()
    similarity = [
        np.dot(photo["features"], view) / (np.linalg.norm(photo["features"]) * np.linalg.norm(view))
        for view in photo["views"]
    ]
    assert all(0.5 < value < 0.9999 for value in similarity), similarity


def test_train_learns_from_the_views_and_reports_each_source(project):
    root, images = project
    metrics = json.loads((root / "data/08_reporting/classification_metrics.json").read_text())
    per_source = metrics["per_source"]
    assert set(per_source) <= {"studio", "grocery"}
    assert sum(figures["images"] for figures in per_source.values()) == metrics["test_images"]
    photos = sum(1 for _ in (images / "grocery").rglob("*.jpg"))
    tested = per_source.get("grocery", {"images": 0})["images"]
    # Every grocery photo on the training side brings its views; test photos come alone.
    assert metrics["training_rows"] == metrics["train_images"] + COPIES * (photos - tested)
    assert metrics["train_images"] + metrics["test_images"] == photos + 20


def test_train_answers_with_the_imagenet_head_of_its_weights(spark, project):
    root, _ = project
    export = ExportedClassifier.load(str(root / "data/06_models/classifier_export.json"))
    assert export.prior.beta == 0.5
    assert dict(zip(export.labels, export.prior.label_classes, strict=True)) == {
        "apple": (948,),
        "lemon": (951,),
        "mango": (),
        "raspberry": (),
    }
    head = read_head(str(WEIGHTS_FILE))
    np.testing.assert_array_equal(export.prior.head.kernel, head.kernel)
    metrics = json.loads((root / "data/08_reporting/classification_metrics.json").read_text())
    assert 0 < metrics["accuracy_without_imagenet_prior"] <= 1
    # The head knows real lemons and apples. Measured on these photos (5 lemons, 28 apples): the
    # lemons' mean q(lemon) 0.459 against q(apple) 0.001; the apples' q(apple) 0.303 against
    # q(lemon) 0.132.
    rows = read_features(spark, root).where("path LIKE '%/grocery/%'").select("path", "features")
    features = {fruit: [] for fruit in ("Lemon", "Apple")}
    for row in rows.collect():
        fruit = Path(row["path"]).parent.name
        if fruit in features:
            features[fruit].append(row["features"])
    q = {
        fruit: head.probabilities(np.asarray(rows)).mean(axis=0) for fruit, rows in features.items()
    }
    assert q["Lemon"][951] > 0.3 and q["Lemon"][951] > 50 * q["Lemon"][948]
    assert q["Apple"][948] > 1.5 * q["Apple"][951]


def test_a_run_with_other_views_is_refused_unless_refreshed(project):
    root, images = project
    with pytest.raises(ValueError, match="views .*full_refresh=true"):
        run(root, "featurize", images_root=str(images), featurize={"augment": {"copies": 2}})
