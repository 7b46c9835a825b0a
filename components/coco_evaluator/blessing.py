"""The blessing rule: an absolute threshold, and no regression against the baseline.

A model is blessed when its metric reaches `threshold` and, if a previously
blessed (baseline) model exists, the metric is not more than `max_regression`
below the baseline's on the same evaluation data. The first run has no
baseline and is judged on the threshold alone.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Decision:
    blessed: bool
    reasons: list[str]

    def to_dict(self) -> dict:
        return {"blessed": self.blessed, "reasons": self.reasons}


def decide(metric: str, value: float, threshold: float, baseline_value: float | None, max_regression: float) -> Decision:
    reasons = []
    blessed = True
    if value >= threshold:
        reasons.append(f"{metric} {value:.4f} >= threshold {threshold:.4f}")
    else:
        blessed = False
        reasons.append(f"{metric} {value:.4f} < threshold {threshold:.4f}")
    if baseline_value is None:
        reasons.append("no baseline: first blessed model of this pipeline")
    elif value >= baseline_value - max_regression:
        reasons.append(f"{metric} {value:.4f} vs baseline {baseline_value:.4f}: within tolerance {max_regression:.4f}")
    else:
        blessed = False
        reasons.append(f"{metric} {value:.4f} regresses from baseline {baseline_value:.4f} by more than {max_regression:.4f}")
    return Decision(blessed=blessed, reasons=reasons)
