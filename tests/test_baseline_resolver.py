"""The Evaluator's baseline: the latest blessed model other than the candidate."""

from tfx.types import standard_artifacts

from vocdet.components.coco_evaluator.baseline import (
    CANDIDATE_KEY,
    MODEL_BLESSING_KEY,
    MODEL_KEY,
    LatestBlessedBaselineStrategy,
)


def _model(artifact_id):
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(artifact_id, model_id, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = artifact_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _resolve(models, blessings, candidate):
    result = LatestBlessedBaselineStrategy().resolve_artifacts(
        None, {MODEL_KEY: models, MODEL_BLESSING_KEY: blessings, CANDIDATE_KEY: candidate}
    )
    return [m.id for m in result[MODEL_KEY]], [b.id for b in result[MODEL_BLESSING_KEY]]


def test_a_cached_candidate_is_not_its_own_baseline():
    models = [_model(1), _model(5)]
    blessings = [_blessing(2, 1, True), _blessing(6, 5, True)]
    # Model 5 is both the newest blessed model and this run's (cached) candidate.
    assert _resolve(models, blessings, [models[1]]) == ([1], [2])


def test_the_newest_blessed_model_wins_and_unblessed_ones_are_skipped():
    models = [_model(1), _model(3), _model(5), _model(7)]
    blessings = [_blessing(2, 1, True), _blessing(4, 3, True), _blessing(6, 5, False)]
    assert _resolve(models, blessings, [models[3]]) == ([3], [4])


def test_nothing_blessed_yet_gives_no_baseline():
    models = [_model(1)]
    assert _resolve(models, [_blessing(2, 1, False)], [models[0]]) == ([], [])
    assert _resolve(models, [], models) == ([], [])
