"""Trainer module: KerasCV RetinaNet model, tf.data input, serving export, run_fn."""
