from vocdet.components.coco_evaluator import blessing


def test_first_model_is_judged_on_the_threshold_alone():
    assert blessing.decide("coco/AP", 0.31, 0.3, None, 0.01).blessed
    assert not blessing.decide("coco/AP", 0.29, 0.3, None, 0.01).blessed


def test_regression_beyond_tolerance_is_not_blessed():
    decision = blessing.decide("coco/AP", 0.40, 0.3, baseline_value=0.45, max_regression=0.01)
    assert not decision.blessed
    assert any("regresses" in reason for reason in decision.reasons)


def test_small_dip_within_tolerance_and_improvement_are_blessed():
    assert blessing.decide("coco/AP", 0.445, 0.3, baseline_value=0.45, max_regression=0.01).blessed
    assert blessing.decide("coco/AP", 0.50, 0.3, baseline_value=0.45, max_regression=0.01).blessed
