"""The column contract: names of the table's columns and of the fitted models' columns.

Plain names, no Spark: the service and the export read them without pyspark.
"""

# Input rows: the 1280 floats of an image's embedding as an array, and the same as an ML vector;
# its colour histogram (fruit_pipeline.core.colour) likewise; what a classifier takes, assembled.
FEATURES = "features"
VECTOR = "vector"
COLOUR = "colour"
COLOUR_VECTOR = "colour_vector"
DESCRIPTORS = "descriptors"
# The feature model that made a row: its weights file's SHA-256 (null: random), its engine and
# the framing of its input.
WEIGHTS_SHA256 = "weights_sha256"
ENGINE = "engine"
# The engine whose features come from the quantized model (fruit_pipeline.core.quantization):
# its rows' `weights_sha256` is that model's own.
INT8_ENGINE = "onnxruntime-int8"
FRAMING = "framing"
# Classes of the feature model's own ImageNet head, the prior on the classifier's answers.
IMAGENET_CLASSES = 1000
# Views of a photo (fruit_pipeline.core.augmentation) that train learns from beside the photo:
# their embeddings and colour histograms, and the settings that drew them (`none`: no views).
VIEWS = "views"
VIEW_COLOURS = "view_colours"
AUGMENTATION = "augmentation"
# A table or export that records no framing (fruit_pipeline.parameters.Framing) was made
# before framing was chosen: its photos were squashed.
UNRECORDED_FRAMING = "squash"
# The table's array column behind each vector column.
ARRAY_OF_VECTOR = {VECTOR: FEATURES, COLOUR_VECTOR: COLOUR}
# The standardization and PCA stages (fruit_pipeline.spark.pca).
INFORMATIVE = "informative"
SCALED = "scaled"
COMPONENTS = "components"
# The classifier (train pipeline): `label` is what it learns, the fruit or the variety
# (`train.label_level`); the other of the two is kept beside it.
LABEL = "label"
FRUIT = "fruit"
VARIETY = "variety"
LABEL_INDEX = "label_index"
PREDICTION_INDEX = "prediction_index"
PREDICTED_LABEL = "predicted_label"
RAW_PREDICTION = "rawPrediction"
# The image files every input folder is listed for (lower case; conf/base/globals.yml's
# `image_files` glob says the same to Spark): phones send HEIC, the web PNG and WebP.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
# A file's row, column by column with its Spark SQL type: the file, its label and its version
# (Spark's binaryFile columns: a new size or modification time is a changed file), what describes
# the image and its views, the feature model that described it and what drew the views. The
# features table's rows are these.
FILE_VERSION = {"length": "long", "modificationTime": "timestamp"}
SOURCE_FILE = {"path": "string", LABEL: "string"} | FILE_VERSION
DESCRIPTION = {
    FEATURES: "array<float>",
    COLOUR: "array<float>",
    VIEWS: "array<array<float>>",
    VIEW_COLOURS: "array<array<float>>",
}
FEATURE_MODEL = {
    WEIGHTS_SHA256: "string",
    ENGINE: "string",
    FRAMING: "string",
    AUGMENTATION: "string",
}
TABLE_ROW = SOURCE_FILE | DESCRIPTION | FEATURE_MODEL


def ddl(columns: dict[str, str]) -> str:
    """Columns as Spark's DDL schema string ("path string, label string, ...")."""
    return ", ".join(f"{name} {kind}" for name, kind in columns.items())


# The folder rule, .../[<split folder>/]<label folder>/<file>: the folder that holds a file is its
# label, the one above it may say its split. Regular expressions on a file's path (group 1).
LABEL_FOLDER = r"([^/]+)/[^/]+$"
SPLIT_FOLDER = r"([^/]+)/[^/]+/[^/]+$"
# The folder above that, for a file under a split folder.
FOLDER_ABOVE_SPLIT = r"([^/]+)/[^/]+/[^/]+/[^/]+$"
# Where an image comes from (a data set, a shop, the web): the folder that holds its label folder
# (or its split folder), e.g. `fruits-360-95` or `grocery-train`. Metrics are given per source.
IMAGE_SOURCE = "source"
# The label folder and file name together: what names an image wherever the images live.
LABELLED_FILE = r"([^/]+/[^/]+)$"
# Which images train, choose and test the classifier.
SPLIT = "split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
