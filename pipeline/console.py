"""What a vocdet command prints: progress lines (component start and finish, vocdet's own messages), unless verbose."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

# Lifecycle lines from TFX's runner that make good progress output.
_PROGRESS = re.compile(r"Component \S+ is (running|finished)")


def quiet_logging(verbose: bool) -> None:
    """Progress lines only (component start/finish, our own messages), unless verbose."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        logging.basicConfig(level=logging.INFO)
        return
    # TensorFlow's C++ start-up lines (CUDA factories, CPU features) are not errors of ours.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Libraries reset the warning filters as they import (Google's FutureWarnings, Keras'
    # UserWarnings): drop the warnings where they are shown instead.
    warnings.filterwarnings("ignore")
    warnings.showwarning = lambda *args, **kwargs: None
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    # vocdet's own modules log under their package names; TFX logs through absl.
    handler.addFilter(
        lambda record: record.name.startswith("vocdet.")
        or record.levelno >= logging.ERROR
        or bool(_PROGRESS.search(record.getMessage()))
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    absl_handler = absl_logging.get_absl_handler()
    absl_handler.setLevel(logging.CRITICAL + 1)
    logging.getLogger("absl").handlers[:] = []
    logging.getLogger("absl").propagate = True
