"""Trainer module: KerasCV RetinaNet model, tf.data input, serving export, run_fn.

Light (no TensorFlow import), so that the pipeline can read what the Trainer records.
"""

# In the model_run artefact: the final losses and throughput, the schedule and the starting weights (run_fn).
TRAINING_RECORD_FILE = "training.json"
