"""The feature pyramid (P3-P7) RetinaNet builds on the backbone's P3-P5 features.

KerasCV's pyramid, `model.pyramid_filters` wide instead of its fixed 256: the pyramid and the
heads run at every position of P3 (stride 8), and on a CPU most of a small RetinaNet's time goes
there. The narrowing replaces KerasCV's own layers, so it is `compat.keras_cv.NarrowFeaturePyramid`.
"""

from __future__ import annotations

from vocdet.components.compat import keras_cv as keras_cv_compat


def build_feature_pyramid(model_config) -> keras_cv_compat.NarrowFeaturePyramid:
    """KerasCV's RetinaNet feature pyramid, `model_config.pyramid_filters` channels wide."""
    return keras_cv_compat.NarrowFeaturePyramid(filters=model_config.pyramid_filters)
