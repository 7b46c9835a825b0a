"""The Trainer's RetinaNet, one concept a module, as KerasHub's `keras_hub/src/models/retinanet/`.

- `backbones`: the ResNet and CSPDarkNet backbones, by name (light: configuration lists the names);
- `anchors`: the anchor generator (3 scales x 3 aspect ratios on P3-P7);
- `label_encoder`: ground-truth boxes to per-anchor training targets;
- `feature_pyramid`: the pyramid (P3-P7) on the backbone's features;
- `prediction_head`: the classification and box heads run on every pyramid level;
- `detector`: the RetinaNet that puts them together (`build_retinanet`).

The optimizer and the learning-rate schedule are `trainer.optimization`. What overrides KerasCV or
Keras internals is in `vocdet.components.compat`, behind checks of the releases it was tested on.
"""
