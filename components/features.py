"""Feature keys shared by ExampleGen, Transform, Trainer and Evaluator.

Raw examples use TensorFlow Datasets' `voc` layout exactly (its features:
https://www.tensorflow.org/datasets/catalog/voc, defined in tensorflow-datasets
4.9.6 `tensorflow_datasets/object_detection/voc.py`), so examples written by
tfds and by our VOCdevkit converter are interchangeable. Transformed examples carry the
boxes in the model's `bounding_box_format`, flattened four values per object.
"""

# Raw (tfds `voc`) features.
IMAGE = "image"
FILENAME = "image/filename"
BBOX = "objects/bbox"  # relative ymin, xmin, ymax, xmax (KerasCV "rel_yxyx")
LABEL = "objects/label"
IS_DIFFICULT = "objects/is_difficult"
IS_TRUNCATED = "objects/is_truncated"
POSE = "objects/pose"
LABELS = "labels"
LABELS_NO_DIFFICULT = "labels_no_difficult"

RAW_BOUNDING_BOX_FORMAT = "rel_yxyx"

# Transformed features.
IMAGE_HEIGHT = "image_height"
IMAGE_WIDTH = "image_width"
BOXES = "boxes"  # in the configured bounding_box_format, 4 floats per object
CLASSES = "classes"
DIFFICULT = "difficult"


# The serving model's contract beyond its detections (components/trainer/serving.py): the score to
# cut at, an output of both signatures, and the tuning record, a file in the SavedModel's
# `assets.extra/` (TF Serving's folder for files it does not load).
RECOMMENDED_MIN_SCORE = "recommended_min_score"
ASSETS_EXTRA_DIR = "assets.extra"
TUNING_FILE = "vocdet_tuning.json"
