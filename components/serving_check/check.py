"""LOAD_AND_QUERY, locally: TFX InfraValidator's check without Docker or Kubernetes.

The candidate SavedModel is loaded with plain `tf.saved_model.load` in a fresh
Python process (nothing of this project imported, as a model server would)
and its `serving_default` signature is called on a few real images. The
outputs must have the documented names, shapes and ranges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_QUERY = r"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
images = [open(path, "rb").read() for path in sys.argv[2:]]
out = model.signatures["serving_default"](images=tf.constant(images))
print(json.dumps({key: list(value.shape) for key, value in out.items()} | {
    "num_detections_values": out["num_detections"].numpy().tolist(),
    "scores_in_range": bool(tf.reduce_all((out["detection_scores"] >= 0) & (out["detection_scores"] <= 1))),
}))
"""

REQUIRED_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "detection_class_names", "num_detections")


def load_and_query(saved_model_dir: str, encoded_images: list[bytes], timeout_seconds: int = 600) -> tuple[bool, str]:
    """(passed, reason) for one SavedModel queried with `encoded_images`."""
    with tempfile.TemporaryDirectory() as work:
        paths = []
        for index, encoded in enumerate(encoded_images):
            paths.append(os.path.join(work, f"{index}.img"))
            with open(paths[-1], "wb") as handle:
                handle.write(encoded)
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _QUERY, saved_model_dir, *paths],
                capture_output=True,
                text=True,
                timeout=timeout_seconds,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        except subprocess.TimeoutExpired:
            return False, f"loading and querying took longer than {timeout_seconds}s"
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"load or query failed: {last_line}"
    shapes = json.loads(completed.stdout.strip().splitlines()[-1])
    missing = [key for key in REQUIRED_OUTPUTS if key not in shapes]
    if missing:
        return False, f"serving signature lacks outputs {missing}"
    batch = len(encoded_images)
    if shapes["detection_boxes"][0] != batch or shapes["detection_boxes"][-1] != 4 or shapes["num_detections"] != [batch]:
        return False, f"unexpected output shapes {shapes}"
    if not shapes["scores_in_range"]:
        return False, "detection scores outside [0, 1]"
    return True, f"loaded in a fresh process and queried with {batch} images: detections {shapes['num_detections_values']}"
