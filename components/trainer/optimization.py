"""How the Trainer optimizes the RetinaNet: losses, optimizer, learning-rate schedule, clipping.

The KerasCV guide's recipe: focal and smooth-L1 losses, SGD with momentum and `global_clipnorm`,
a stepped warm-up then 10x drops. `train.optimizer="adam"` and `train.lr_schedule="plateau"` are
vocdet's alternatives for short CPU runs. The optimizer clips the gradient summed over replicas
(`compat.keras.clip_globally`), so N replicas take one device's step.
"""

from __future__ import annotations

import keras

from vocdet.components.compat import keras as keras_compat

# The guide's stepped warm-up: fractions of the peak rate up to warmup/4, warmup/2, warmup.
_WARMUP_FRACTIONS = (0.001, 0.25, 0.5)


def _warmup_boundaries(warmup_steps: int) -> list[int]:
    warmup = max(1, warmup_steps)
    return [warmup // 4, warmup // 2, warmup]


def warmup_learning_rate(peak: float, warmup_steps: int, step: int) -> float:
    """The warm-up's rate at `step` (the peak once warm-up is over)."""
    for boundary, fraction in zip(_warmup_boundaries(warmup_steps), _WARMUP_FRACTIONS):
        if step <= boundary:
            return peak * fraction
    return peak


def learning_rate_schedule(train_config, global_batch_size: int, total_steps: int):
    """The guide's shape: a stepped warm-up, then 10x drops at `decay_at` of training."""
    peak = train_config.learning_rate(global_batch_size)
    boundaries = _warmup_boundaries(train_config.warmup_steps)
    boundaries += [max(boundaries[-1] + 1, int(f * total_steps)) for f in train_config.decay_at]
    values = [peak * f for f in _WARMUP_FRACTIONS] + [peak] + [peak * 0.1 ** (i + 1) for i in range(len(train_config.decay_at))]
    # PiecewiseConstantDecay needs strictly increasing boundaries.
    for index in range(1, len(boundaries)):
        boundaries[index] = max(boundaries[index], boundaries[index - 1] + 1)
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries=boundaries, values=values)


def compile_retinanet(model, train_config, global_batch_size: int, total_steps: int) -> None:
    """Focal + smooth-L1 losses, and the guide's SGD with momentum and global_clipnorm.

    `train.optimizer="adam"` trades the guide's SGD for Adam, which trains a
    randomly initialised backbone much faster in the few hundred steps a CPU
    demo can afford. With `lr_schedule="plateau"` the rate is a plain float
    that the warm-up and ReduceLROnPlateau callbacks set (see callbacks.py).
    """
    if train_config.lr_schedule == "plateau":
        learning_rate = warmup_learning_rate(train_config.learning_rate(global_batch_size), train_config.warmup_steps, 0)
    else:
        learning_rate = learning_rate_schedule(train_config, global_batch_size, total_steps)
    if train_config.optimizer == "adam":
        optimizer = keras_compat.clip_globally(keras.optimizers.Adam)(
            learning_rate=learning_rate, global_clipnorm=train_config.global_clipnorm
        )
    else:
        optimizer = keras_compat.clip_globally(keras.optimizers.SGD)(
            learning_rate=learning_rate, momentum=train_config.momentum, global_clipnorm=train_config.global_clipnorm
        )
    model.compile(
        optimizer=optimizer, classification_loss="focal", box_loss="smoothl1", jit_compile=train_config.jit_compile
    )
