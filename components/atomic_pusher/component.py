"""TFX's Pusher with the atomic executor (`executor.Executor`); same spec, inputs and outputs.

TFX deprecates `Pusher(custom_executor_spec=...)` ("please customize component directly"): this
subclass is that customisation. Its node id defaults to the class name, so the pipeline gives it
TFX's own, `.with_id("Pusher")`, and node ids (and the runs' history) stay the same.
"""

from __future__ import annotations

from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from vocdet.components.atomic_pusher import executor


class AtomicPusher(Pusher):
    """Pusher whose pushes are atomic, versioned in TF Serving's layout and pruned (see `push`)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
