"""Evaluator for detection: COCO metrics with pycocotools, and model blessing."""
