"""Resolver strategy: the newest blessed model other than the candidate.

TFX's ``LatestBlessedModelStrategy`` returns the newest blessed model, which
on a re-run with a cached Trainer is the candidate itself, so the Evaluator
would compare a model with itself (and re-run, because its baseline input
changed). This strategy also takes the candidate channel and skips it.
"""

from __future__ import annotations

from tfx.dsl.components.common import resolver

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


def pick_baseline(models: list, blessings: list, candidate_ids: set[int]) -> tuple[list, list]:
    """The newest model with a positive blessing that is not a candidate.

    Returns:
      ``([model], [blessing])``, or ``([], [])`` when there is none.
    """
    blessed = {
        b.get_int_custom_property("current_model_id"): b
        for b in blessings
        if b.get_int_custom_property("blessed") == 1
    }
    for model in sorted(models, key=lambda a: a.id, reverse=True):
        if model.id not in candidate_ids and model.id in blessed:
            return [model], [blessed[model.id]]
    return [], []


class PreviousBlessedModelStrategy(resolver.ResolverStrategy):
    """Inputs ``model``, ``model_blessing`` and ``candidate`` (the Trainer output)."""

    def resolve_artifacts(self, store, input_dict):
        del store
        candidates = input_dict.get(CANDIDATE_KEY, [])
        model, blessing = pick_baseline(
            input_dict.get(MODEL_KEY, []),
            input_dict.get(BLESSING_KEY, []),
            {a.id for a in candidates},
        )
        return {MODEL_KEY: model, BLESSING_KEY: blessing, CANDIDATE_KEY: candidates}
