"""The withdrawn mark: a Model artifact that `vocdet rollback` took out of serving.

A rollback marks the models it replaces with the custom property `vocdet_withdrawn` (1) and says why
in `vocdet_withdrawn_reason`; rolling forward to one of them clears the mark (0). Every component
that picks a model respects it: the CocoEvaluator's baseline and the Trainer's warm start skip a
withdrawn model (`coco_evaluator.baseline`), and the Pusher refuses one (`atomic_pusher.executor`),
also when a rerun takes it from TFX's cache.

Light (no TFX import): the components and `vocdet.pipeline.operations` read the same names. Works
on TFX artefacts and on ML Metadata's `Artifact` protos alike.
"""

from __future__ import annotations

WITHDRAWN_PROPERTY = "vocdet_withdrawn"
WITHDRAWN_REASON_PROPERTY = "vocdet_withdrawn_reason"


def _proto(artifact):
    return getattr(artifact, "mlmd_artifact", artifact)


def is_withdrawn(artifact) -> bool:
    """True when `artifact` (a TFX Artifact or an ML Metadata Artifact proto) carries the mark."""
    properties = _proto(artifact).custom_properties
    return WITHDRAWN_PROPERTY in properties and properties[WITHDRAWN_PROPERTY].int_value == 1


def withdrawn_reason(artifact) -> str:
    properties = _proto(artifact).custom_properties
    return properties[WITHDRAWN_REASON_PROPERTY].string_value if WITHDRAWN_REASON_PROPERTY in properties else ""


def set_mark(artifact_proto, withdrawn: bool, reason: str) -> None:
    """Sets (or clears) the mark on an ML Metadata Artifact proto; the caller writes it back (`put_artifacts`)."""
    artifact_proto.custom_properties[WITHDRAWN_PROPERTY].int_value = int(withdrawn)
    artifact_proto.custom_properties[WITHDRAWN_REASON_PROPERTY].string_value = reason
