"""The withdrawn mark: the baseline and the warm start skip a withdrawn model (the Pusher's refusal and a
rollback's marks are tested with real runs in tests/test_operations_e2e.py)."""

from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from vocdet.components import withdrawal
from vocdet.components.coco_evaluator.baseline import (
    CANDIDATE_KEY,
    MODEL_BLESSING_KEY,
    MODEL_KEY,
    LatestBlessedBaselineStrategy,
)


def _model(artifact_id, withdrawn=False):
    model = standard_artifacts.Model()
    model.id = artifact_id
    if withdrawn:
        withdrawal.set_mark(model.mlmd_artifact, True, "rolled back to version 1")
    return model


def _blessing(artifact_id, model_id):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = artifact_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", 1)
    return blessing


def _resolve(models, blessings, **candidate):
    result = LatestBlessedBaselineStrategy().resolve_artifacts(
        None, {MODEL_KEY: models, MODEL_BLESSING_KEY: blessings, **candidate}
    )
    return [m.id for m in result[MODEL_KEY]], sorted(result)


def test_the_baseline_skips_a_withdrawn_model():
    models = [_model(1), _model(3, withdrawn=True), _model(5)]
    blessings = [_blessing(2, 1), _blessing(4, 3)]
    assert _resolve(models, blessings, **{CANDIDATE_KEY: [models[2]]}) == ([1], sorted([CANDIDATE_KEY, MODEL_BLESSING_KEY, MODEL_KEY]))


def test_the_warm_start_has_no_candidate_and_skips_a_withdrawn_model():
    models = [_model(1), _model(3, withdrawn=True)]
    blessings = [_blessing(2, 1), _blessing(4, 3)]
    assert _resolve(models, blessings) == ([1], sorted([MODEL_BLESSING_KEY, MODEL_KEY]))
    assert _resolve([_model(3, withdrawn=True)], [_blessing(4, 3)]) == ([], sorted([MODEL_BLESSING_KEY, MODEL_KEY]))


def test_a_cleared_mark_is_not_withdrawn():
    artifact = metadata_store_pb2.Artifact()
    assert not withdrawal.is_withdrawn(artifact)
    withdrawal.set_mark(artifact, True, "rolled back")
    assert withdrawal.is_withdrawn(artifact) and withdrawal.withdrawn_reason(artifact) == "rolled back"
    withdrawal.set_mark(artifact, False, "served again")
    assert not withdrawal.is_withdrawn(artifact)
