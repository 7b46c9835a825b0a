"""Code that runs inside the pipeline's components: module files and custom executors.

KerasCV needs `tf.keras` to be Keras 3. TensorFlow Transform, when imported
first, sets TF_USE_LEGACY_KERAS=1 (Keras 2), after which KerasCV picks its
Keras 2 backend and fails. So before anything here imports TensorFlow, the
variable is pinned to Keras 3 unless the user set it; TF Transform then uses
the `tf_keras` package for its own layers, as it supports. The container
image sets it too (docker/Dockerfile).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
