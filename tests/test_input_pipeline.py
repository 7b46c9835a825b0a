"""The Trainer's per-example augmentation: boxes follow the objects, colours never move boxes."""

import numpy as np
import pytest

import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow)
import tensorflow as tf
from vocdet.components.compat import keras_cv as keras_cv_compat
from vocdet.components.trainer import input_pipeline
from vocdet.pipeline import config as config_lib

# Two solid objects on black, in xywh pixels: a red one and a green one.
OBJECTS = {0: (40, 30, 120, 60), 1: (200, 90, 60, 90)}
COLOURS = {0: (255, 0, 0), 1: (0, 255, 0)}


def _example(height=200, width=300) -> dict:
    image = np.zeros((height, width, 3), np.float32)
    for class_id, (x, y, w, h) in OBJECTS.items():
        image[y : y + h, x : x + w] = COLOURS[class_id]
    return {
        "images": tf.constant(image),
        "bounding_boxes": {
            "boxes": tf.constant([OBJECTS[0], OBJECTS[1]], tf.float32),
            "classes": tf.constant([0.0, 1.0]),
        },
    }


def _in_tf_data(function, example):
    """`function(example)` as the Trainer runs it: inside a tf.data map (graph mode)."""
    return next(iter(tf.data.Dataset.from_tensors(example).map(function)))


def _then_padded(transform, max_boxes):
    """`transform`, then the example as the Trainer batches it: (image, dense boxes)."""

    def apply(example):
        example = transform(example)
        return example["images"], input_pipeline.dense_boxes(example["bounding_boxes"], max_boxes)

    return apply


def _iou(box, mask) -> float:
    """IoU of an xywh box with the pixels of a boolean mask."""
    x, y, w, h = box
    drawn = np.zeros_like(mask)
    drawn[int(round(y)) : int(round(y + h)), int(round(x)) : int(round(x + w))] = True
    return (drawn & mask).sum() / (drawn | mask).sum()


def _assert_boxes_on_objects(images, boxes, classes):
    """Each valid box covers the pixels of its object's colour (IoU >= 0.9)."""
    valid = classes >= 0
    assert valid.sum() >= 1
    for box, class_id in zip(boxes[valid], classes[valid].astype(int)):
        channel = 0 if class_id == 0 else 1
        mask = images[..., channel] > 128
        assert _iou(box, mask) >= 0.9, (class_id, box)


@pytest.mark.parametrize("seed", range(6))
def test_training_augmentation_moves_boxes_with_their_objects(seed):
    config = config_lib.demo().with_overrides({"train": {"rand_augment_magnitude": 0.0}})
    tf.random.set_seed(seed)
    augment = input_pipeline.training_augmentation(config.model, config.train)
    images, dense = _in_tf_data(_then_padded(augment, config.model.max_boxes), _example())
    images = images.numpy()
    assert images.shape == (config.model.image_size, config.model.image_size, 3)
    assert dense["boxes"].shape == (config.model.max_boxes, 4)
    _assert_boxes_on_objects(images, dense["boxes"].numpy(), dense["classes"].numpy())


def test_eval_resizing_keeps_boxes_on_objects():
    config = config_lib.demo()
    resizing = input_pipeline.eval_resizing(config.model)
    images, boxes = _in_tf_data(_then_padded(resizing, config.model.max_boxes), _example())
    images = images.numpy()
    assert images.shape == (config.model.image_size, config.model.image_size, 3)
    # The 300x200 image fills the width (resized to whole pixels); the padding is at the bottom.
    scale = config.model.image_size / 300
    np.testing.assert_allclose(boxes["boxes"].numpy()[0], np.array(OBJECTS[0]) * scale, atol=0.5)
    _assert_boxes_on_objects(images, boxes["boxes"].numpy(), boxes["classes"].numpy())


@pytest.mark.parametrize("height, width", [(200, 300), (500, 419)])
def test_training_geometry_without_jitter_is_the_eval_geometry(height, width):
    """No train/serve skew: at jitter_scale (1, 1) a training example is the eval example, or its mirror."""
    config = config_lib.demo().with_overrides({"train": {"rand_augment_magnitude": 0.0, "jitter_scale": [1.0, 1.0]}})
    augment = input_pipeline.training_augmentation(config.model, config.train)
    resizing = input_pipeline.eval_resizing(config.model)

    def boxes_of(layer):
        return lambda example: input_pipeline.dense_boxes(layer(example)["bounding_boxes"], 4)["boxes"]

    expected = _in_tf_data(boxes_of(resizing), _example(height, width)).numpy()[:2]
    mirrored = expected.copy()
    # Flipped before the resize: mirrored within the image, the padding still right and bottom.
    mirrored[:, 0] = width * config.model.image_size / max(height, width) - expected[:, 0] - expected[:, 2]
    for seed in range(4):
        tf.random.set_seed(seed)
        trained = _in_tf_data(boxes_of(augment), _example(height, width)).numpy()[:2]
        assert np.allclose(trained, expected, atol=1.0) or np.allclose(trained, mirrored, atol=1.0), (trained, expected)


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_lean_flip_equals_keras_cv_random_flip(mode):
    """Same seed, same flips of images and boxes as the KerasCV layer it replaces, batched or not."""
    import keras_cv

    images = tf.random.uniform((6, 20, 30, 3), 0, 255, seed=1)
    boxes = {"boxes": tf.constant([[[2.0, 3.0, 10.0, 5.0]]] * 6), "classes": tf.ones((6, 1))}
    ours = keras_cv_compat.LeanRandomFlip(mode=mode, bounding_box_format="xywh", seed=7)
    theirs = keras_cv.layers.RandomFlip(mode=mode, bounding_box_format="xywh", seed=7)
    for inputs in ({"images": images, "bounding_boxes": boxes}, _example()):
        expected, actual = _in_tf_data(theirs, inputs), _in_tf_data(ours, inputs)
        np.testing.assert_array_equal(actual["images"], expected["images"])
        for key in ("boxes", "classes"):
            np.testing.assert_array_equal(
                input_pipeline._dense_tensors(actual["bounding_boxes"])[key],
                input_pipeline._dense_tensors(expected["bounding_boxes"])[key],
            )
    flipped = _in_tf_data(ours, {"images": images, "bounding_boxes": boxes})["images"].numpy()
    assert any(not np.array_equal(a, b) for a, b in zip(flipped, images.numpy()))


def test_colour_stage_changes_images_and_never_boxes():
    """The guide's RandAugment (geometric=False) applied to images alone: boxes are untouched."""
    tf.random.set_seed(0)
    colour = input_pipeline.colour_stage(magnitude=0.25)
    example = _example()
    # Mid-range, graded colours, so that every colour operation has something to change
    # (pure black, red and green already have full contrast and survive some of them).
    gradient = np.linspace(40, 180, 300, dtype=np.float32)[None, :, None]
    example["images"] = example["images"] * 0.25 + gradient  # within 0-255
    changed = 0
    for _ in range(10):
        out = _in_tf_data(colour, example)
        np.testing.assert_array_equal(out["bounding_boxes"]["boxes"], example["bounding_boxes"]["boxes"])
        np.testing.assert_array_equal(out["bounding_boxes"]["classes"], example["bounding_boxes"]["classes"])
        assert out["images"].shape == example["images"].shape
        changed += int(not np.allclose(out["images"], example["images"]))
    assert changed >= 3  # rate 0.5, two operations per image


def test_dense_boxes_drops_invalid_boxes_pads_and_cuts():
    boxes = {
        "boxes": tf.constant([[0, 0, 5, 5], [1, 1, 5, 5], [2, 2, 5, 5]], tf.float32),
        "classes": tf.constant([3.0, -1.0, 7.0]),  # the middle box was cropped away
    }
    padded = _in_tf_data(lambda b: input_pipeline.dense_boxes(b, max_boxes=4), boxes)
    np.testing.assert_array_equal(padded["classes"], [3, 7, -1, -1])
    np.testing.assert_array_equal(padded["boxes"][1], [2, 2, 5, 5])
    np.testing.assert_array_equal(padded["boxes"][2], [-1, -1, -1, -1])
    cut = _in_tf_data(lambda b: input_pipeline.dense_boxes(b, max_boxes=1), boxes)
    np.testing.assert_array_equal(cut["classes"], [3])
