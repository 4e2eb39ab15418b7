"""The ground floor's codes: one definition, and the copies still spelled out elsewhere agree."""

import dynamics
from dynamics import classify, plot, solve
from dynamics.types import Outcome, Status


def test_status_codes_are_the_ones_every_dataset_uses():
    assert [int(s) for s in Status] == [0, 1, 2]
    assert Status.labels() == ("ok", "max_steps", "nonfinite") == solve.STATUS_NAMES
    assert (solve.STATUS_OK, solve.STATUS_MAX_STEPS, solve.STATUS_NONFINITE) == (0, 1, 2)


def test_outcome_labels_agree_with_the_collapse_rule_and_the_plots():
    assert [int(o) for o in Outcome] == [0, 1, 2, 3]
    assert Outcome.labels() == ("non-collapsed", "collapsed", "undecided", "failed")
    assert Outcome.labels() == classify.OUTCOME_NAMES == plot.OUTCOME_LABELS


def test_the_package_exports_the_vocabulary_from_one_place():
    from dynamics import flow, types

    for name in ("State", "Variant", "Hyper", "VARIANTS"):
        assert getattr(dynamics, name) is getattr(types, name) is getattr(flow, name)
