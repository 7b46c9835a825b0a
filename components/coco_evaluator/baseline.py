"""Which model a candidate is compared with: the latest blessed model other than the candidate.

TFX's `LatestBlessedModelStrategy` resolves before the Trainer runs. When the Trainer is then a
cache hit, its model *is* the latest blessed model, the evaluation compares it with itself, and the
changed baseline input makes TFX re-run the evaluation and push the same model again. This
strategy resolves after the Trainer and leaves the candidate out: a rerun with nothing changed
sees the same inputs as the run it repeats, and TFX serves the CocoEvaluator and the Pusher from
its cache; a new candidate is compared with the model it would replace.

It reads the blessing properties CocoEvaluator writes, which are TFX Evaluator's
(`blessed`, `current_model_id`), and skips a model `vocdet rollback` withdrew (`components.withdrawal`):
after a rollback, the model served again is the baseline.

Without `candidate` it is the Trainer's warm start (`train.warm_start`): the latest blessed model that
is not withdrawn. It replaces TFX's `LatestBlessedModelStrategy` there, which knows no withdrawn mark.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.common import resolver

from vocdet.components import withdrawal

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


class LatestBlessedBaselineStrategy(resolver.ResolverStrategy):
    """Resolves `model`/`model_blessing` to the latest blessed, not withdrawn model not among `candidate`.

    `candidate` is optional (the warm start has none).

    Example:
      Resolver(
          strategy_class=LatestBlessedBaselineStrategy,
          model=Channel(type=Model),
          model_blessing=Channel(type=ModelBlessing),
          candidate=trainer.outputs["model"],
      )
    """

    def resolve_artifacts(self, store, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        candidates = list(input_dict.get(CANDIDATE_KEY) or [])
        candidate_ids = {artifact.id for artifact in candidates}
        blessing_by_model = {
            blessing.get_int_custom_property("current_model_id"): blessing
            for blessing in input_dict[MODEL_BLESSING_KEY]
            if blessing.get_int_custom_property("blessed") == 1
        }
        blessed = [
            model
            for model in input_dict[MODEL_KEY]
            if model.id in blessing_by_model and model.id not in candidate_ids and not withdrawal.is_withdrawn(model)
        ]
        result = {MODEL_KEY: [], MODEL_BLESSING_KEY: []}
        if CANDIDATE_KEY in input_dict:
            result[CANDIDATE_KEY] = candidates
        if blessed:
            newest = max(blessed, key=lambda model: model.id)
            result[MODEL_KEY] = [newest]
            result[MODEL_BLESSING_KEY] = [blessing_by_model[newest.id]]
        return result
