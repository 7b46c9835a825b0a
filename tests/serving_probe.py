"""A script that loads a pushed SavedModel in a fresh process and runs it on one image, as TF Serving would."""


# Runs in a fresh interpreter: plain TensorFlow, no project code, as TF Serving would.
LOAD_AND_PREDICT = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
with open(sys.argv[2], "rb") as handle:
    image = handle.read()
out = model.signatures["serving_default"](images=tf.constant([image]))
n = int(out["num_detections"][0])
# The second signature, on the same image decoded here, must give the same detections.
decoded = tf.cast(tf.io.decode_image(image, channels=3), tf.float32)[tf.newaxis]
same = model.signatures["serving_images"](images=decoded)
agree = all(
    bool(tf.reduce_all(tf.abs(tf.cast(out[key], tf.float32) - tf.cast(same[key], tf.float32)) <= 1e-3))
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
)
print(json.dumps({
    "decoded_images_signature_agrees": agree,
    "num_detections": n,
    "boxes": out["detection_boxes"][0, :n].numpy().tolist(),
    "names": [name.decode() for name in out["detection_class_names"][0, :n].numpy()],
    "scores": out["detection_scores"][0, :n].numpy().tolist(),
    "recommended_min_score": float(out["recommended_min_score"][0]) if "recommended_min_score" in out else None,
    "recommended_min_score_of_decoded": float(same["recommended_min_score"][0]) if "recommended_min_score" in same else None,
}))
"""
