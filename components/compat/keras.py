"""vocdet's workarounds of Keras internals, each behind a check of the Keras release it was tested on.

1. Multi-replica training (`DISTRIBUTED_TESTED`, `check_distributed`). Two corrections make
   training on N replicas (MirroredStrategy, or MultiWorkerMirroredStrategy) take the step one
   device would take on the same global batch. Keras 3.6 sums the replicas' gradients without
   scaling, so each replica's loss must be its share of the global loss:

   - the RetinaNet's loss divides by the positive anchors of the global batch, all-reduced with
     `sum_over_replicas` (`compat.keras_cv.GloballyNormalisedLoss`), where KerasCV divides by
     each replica's own count;
   - `clip_globally` clips the all-reduced gradient by `global_clipnorm`, overriding the
     optimizer's private `_clip_gradients`, where Keras clips each replica's partial gradient
     before the sum.

   And `MultiReplicaTraining` overrides the Keras 3.6 trainer's private `_maybe_symbolic_build`
   and reads its private `_collective_all_reduce_multi_worker`, for MultiWorkerMirroredStrategy
   (keras-team/keras#20585, keras-team/keras#20329). keras-team/keras#20609 (Keras 3.8) changes the premise (Keras then scales each
   replica's loss itself): under another Keras the corrections would scale the step twice or not
   at all. The check runs where the model is built, and only with more than one replica: on one
   replica the corrections do nothing, so a Keras upgrade never stops single-device training.

2. The atomic training backup (`BACKUP_TESTED`, `backup_and_restore`). Keras 3.6's
   BackupAndRestore writes its weights file in place, so a kill during the write leaves a file
   that cannot be read, and the resume fails (keras-team/keras#20463; Keras 3.7 adds
   `double_checkpoint`, keras-team/keras#20465). On 3.6, `AtomicBackupAndRestore` overrides the
   private `_save_model`; elsewhere Keras' own `double_checkpoint=True` is used.
"""

from __future__ import annotations

import json

import keras
import tensorflow as tf

from vocdet.components import compat

# The Keras releases the multi-replica corrections were tested on (prefixes: "3.6." is 3.6.x).
DISTRIBUTED_TESTED = ("3.6.",)
# The Keras releases whose BackupAndRestore writes in place and has no double_checkpoint.
BACKUP_TESTED = ("3.6.",)


def check_distributed(num_replicas: int, version: str | None = None) -> None:
    """Raises `compat.UntestedVersion` when training on several replicas under a Keras outside `DISTRIBUTED_TESTED`.

    `version` defaults to the installed Keras. On one replica it never raises.
    """
    if num_replicas <= 1:
        return
    compat.check_tested(
        "Keras",
        version,
        DISTRIBUTED_TESTED,
        workaround="multi-replica loss and clipping correction (components/compat/keras.py)",
        issue="keras-team/keras#20609",
        test="tests/test_trainer_distribution.py",
        constant="compat.keras.DISTRIBUTED_TESTED",
        alternative=f"train on one replica ({num_replicas} replicas would not take one device's step)",
    )


def sum_over_replicas(value):
    """`value` summed over all replicas (itself outside a distribution)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def clip_globally(optimizer_class: type[keras.optimizers.Optimizer]) -> type[keras.optimizers.Optimizer]:
    """`optimizer_class` with `global_clipnorm` applied to the gradient summed over replicas.

    Overrides Keras 3.6's private `Optimizer._clip_gradients`; on one replica it is Keras' own.
    """

    class GloballyClipped(optimizer_class):
        def _clip_gradients(self, grads):
            context = tf.distribute.get_replica_context()
            if not self.global_clipnorm or context is None or context.num_replicas_in_sync == 1:
                return super()._clip_gradients(grads)
            replicas = context.num_replicas_in_sync
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            clipped, _ = tf.clip_by_global_norm(total, self.global_clipnorm)
            # Keras sums the replicas' gradients next: each contributes 1/replicas of the clipped total.
            return [gradient / replicas for gradient in clipped]

    GloballyClipped.__name__ = optimizer_class.__name__
    return GloballyClipped


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Keras 3.6's own test for a multi-worker strategy (its private `_collective_all_reduce_multi_worker`).

    Imported here, only with more than one replica and after `check_distributed`: one replica is
    never multi-worker, and a Keras that moved the function does not break single-device training.
    """
    if strategy.num_replicas_in_sync <= 1:
        return False
    check_distributed(strategy.num_replicas_in_sync)
    from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker

    return _collective_all_reduce_multi_worker(strategy)


class MultiReplicaTraining:
    """A keras.Model mixin: Keras 3.6's train step and symbolic build, fixed for MultiWorkerMirroredStrategy.

    Keras 3.6 cannot average a multi-worker step's scalar outputs (keras-team/keras#20585), nor
    build the model on a nested distributed batch (keras-team/keras#20329, dictionary inputs). Put it before the Keras model class.
    """

    def train_step(self, data):
        logs = super().train_step(data)
        if is_multi_worker(self.distribute_strategy):
            # Keras 3.6 averages a multi-worker step's outputs with strategy.reduce("MEAN",
            # axis=0), which needs an axis to average over: give each scalar one.
            logs = {name: keras.ops.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.6 builds the model on one distributed batch that it first averages over
        # replicas with strategy.reduce; MultiWorkerMirroredStrategy cannot reduce a nested
        # batch (keras-team/keras#20329). This replica's own part has the same structure.
        if iterator is not None and self._distribute_strategy is not None:
            for _, batches in iterator.enumerate_epoch():
                data_batch = tf.nest.map_structure(self._local_part, next(batches))
                break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def _local_part(self, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return self.distribute_strategy.experimental_local_results(value)[0]
        return value


def backup_and_restore(directory: str, version: str | None = None) -> keras.callbacks.BackupAndRestore:
    """Keras' BackupAndRestore into `directory`, whose backup a kill during the write cannot make unreadable.

    On a Keras of `BACKUP_TESTED`, `AtomicBackupAndRestore`; elsewhere Keras' own
    `double_checkpoint=True`, and `compat.UntestedVersion` where Keras has neither.
    """
    version = version or keras.__version__
    if compat.is_tested(version, BACKUP_TESTED):
        return AtomicBackupAndRestore(backup_dir=directory)
    try:
        return keras.callbacks.BackupAndRestore(backup_dir=directory, double_checkpoint=True)
    except TypeError:  # fail loudly: a Keras this module does not know
        raise compat.untested(
            "Keras",
            version,
            BACKUP_TESTED,
            workaround="atomic BackupAndRestore (components/compat/keras.py)",
            issue="keras-team/keras#20463",
            test="tests/test_trainer_distribution.py",
            constant="compat.keras.BACKUP_TESTED",
            alternative="use a Keras whose BackupAndRestore has double_checkpoint (keras-team/keras#20465)",
        ) from None


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras 3.6's BackupAndRestore, writing each file to a temporary name and renaming it into place.

    Overrides Keras' private `_save_model` (3.6: weights to `_weights_path`, then the epoch to
    `_training_metadata_path`); `backup_and_restore` uses it for `BACKUP_TESTED` only
    (keras-team/keras#20463).
    """

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        partial_weights = self._weights_path + ".partial.weights.h5"
        self.model.save_weights(filepath=partial_weights, overwrite=True)
        tf.io.gfile.rename(partial_weights, self._weights_path, overwrite=True)
        partial_metadata = self._training_metadata_path + ".partial"
        with tf.io.gfile.GFile(partial_metadata, "w") as handle:
            handle.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        tf.io.gfile.rename(partial_metadata, self._training_metadata_path, overwrite=True)
