"""Which model a candidate is compared with: the latest blessed model other than the candidate.

TFX's `LatestBlessedModelStrategy` resolves before the Trainer runs. When the Trainer is then a
cache hit, its model *is* the latest blessed model, the evaluation compares it with itself, and the
changed baseline input makes TFX re-run the evaluation and push the same model again. This
strategy resolves after the Trainer and leaves the candidate out: a rerun with nothing changed
sees the same inputs as the run it repeats, and TFX serves the CocoEvaluator and the Pusher from
its cache; a new candidate is compared with the model it would replace.

It reads the blessing properties CocoEvaluator writes, which are TFX Evaluator's
(`blessed`, `current_model_id`).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.common import resolver

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


class LatestBlessedBaselineStrategy(resolver.ResolverStrategy):
    """Resolves `model`/`model_blessing` to the latest blessed model not among `candidate`.

    Example:
      Resolver(
          strategy_class=LatestBlessedBaselineStrategy,
          model=Channel(type=Model),
          model_blessing=Channel(type=ModelBlessing),
          candidate=trainer.outputs["model"],
      )
    """

    def resolve_artifacts(self, store, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        candidate_ids = {artifact.id for artifact in input_dict[CANDIDATE_KEY]}
        blessing_by_model = {
            blessing.get_int_custom_property("current_model_id"): blessing
            for blessing in input_dict[MODEL_BLESSING_KEY]
            if blessing.get_int_custom_property("blessed") == 1
        }
        blessed = [
            model
            for model in input_dict[MODEL_KEY]
            if model.id in blessing_by_model and model.id not in candidate_ids
        ]
        result = {MODEL_KEY: [], MODEL_BLESSING_KEY: [], CANDIDATE_KEY: list(input_dict[CANDIDATE_KEY])}
        if blessed:
            newest = max(blessed, key=lambda model: model.id)
            result[MODEL_KEY] = [newest]
            result[MODEL_BLESSING_KEY] = [blessing_by_model[newest.id]]
        return result
