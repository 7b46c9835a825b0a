"""Evaluator for detection: COCO metrics with pycocotools, and model blessing.

Light (no TFX import), so that the Pusher can read what the blessing records.
"""

# ModelBlessing custom property: the id of the baseline model the candidate was compared with (absent: none).
BASELINE_MODEL_ID_PROPERTY = "baseline_model_id"
