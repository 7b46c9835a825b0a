"""RetinaNet's anchors: 3 scales x 3 aspect ratios at every position of the pyramid levels P3-P7.

The heads predict one class vector and one box per anchor, so their widths follow
`ANCHORS_PER_LOCATION`; the label encoder matches ground-truth boxes to these anchors.
"""

from __future__ import annotations

import keras_cv

# 3 scales x 3 aspect ratios, as KerasCV's RetinaNet.
ANCHORS_PER_LOCATION = 9


def anchor_generator(bounding_box_format: str, anchor_size: float) -> keras_cv.layers.AnchorGenerator:
    """RetinaNet's anchors (3 scales x 3 aspect ratios on P3-P7), `anchor_size` x stride big.

    KerasCV's default is anchor_size=4 (32 px at stride 8); smaller inputs
    want smaller anchors, or small objects match no anchor and never train.
    """
    strides = [2**level for level in range(3, 8)]
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=bounding_box_format,
        sizes=[anchor_size * stride for stride in strides],
        aspect_ratios=[0.5, 1.0, 2.0],
        scales=[2**exponent for exponent in (0, 1 / 3, 2 / 3)],
        strides=strides,
        clip_boxes=True,
    )
