"""Tools around the pipeline: `predict` (a pushed model on images), `backbone_weights` (an ImageNet
backbone as a local weights file) and `sample_weights` (re-trains the shipped `sample` checkpoint)."""
