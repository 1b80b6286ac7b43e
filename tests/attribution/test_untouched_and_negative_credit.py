"""Two rules every model keeps, found on a public journey table ("attribution data": customer_id, time,
interaction impression / conversion, conversion, conversion_value, channel):

* conversions with no touch in their window (the ``(no touch)`` pseudo path) are ``(no touch)``'s under
  every model, and the models are fitted on the other journeys: inside Markov's normalized removal effects
  the pseudo channel gave 175 of its 278 conversions to real channels;
* no channel earns negative credit: where touches lower the fitted chance of converting (converting
  journeys end at the conversion, the others run on), the rate game and the conversion model credited
  minus hundreds of conversions and left more than the total to the baseline.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.attribution import run_attribution
from core.attribution.compare import explain_journey
from core.attribution.markov import markov_attribution
from core.attribution.shapley import shapley_rate
from core.pathtable import NO_TOUCH, PathTable

MODELS = ["first", "last", "linear", "position", "markov", "shapley", "shapley_rate", "data_driven"]


def _with_untouched() -> PathTable:
    # 60 converting and 140 null journeys over a, b, c; 25 conversions had no touch at all
    return PathTable.from_strings(
        ["a > b", "b > c", "a", "c", "b", "a > c > b", NO_TOUCH],
        [20, 12, 9, 6, 8, 5, 25],
        [200.0, 120.0, 90.0, 60.0, 80.0, 50.0, 250.0],
        [30, 25, 40, 20, 15, 10, 0],
    )


def test_untouched_conversions_are_no_touchs_under_every_model_and_the_rest_is_fitted_without_them():
    table = _with_untouched()
    res = run_attribution(table, models=MODELS, evaluate=False)
    wide = res.table.pivot(index="channel", columns="model", values="conversions")
    for model in MODELS:
        assert wide.loc[NO_TOUCH, model] == pytest.approx(25.0), model
        baseline = res.details["data_driven"]["baseline_conversions"] if model == "data_driven" else 0.0
        assert wide[model].sum() + baseline == pytest.approx(table.total_conversions), model
        assert (wide[model] >= 0).all(), model
    assert res.table.pivot(index="channel", columns="model", values="value").loc[NO_TOUCH, "markov"] == pytest.approx(250.0)
    # Markov on the touched journeys alone gives the channels what the run gives them
    touched = table.subset(~table.no_touch_paths())
    assert NO_TOUCH not in touched.channels and touched.total_conversions == 60
    alone = markov_attribution(touched)
    for channel, credit in zip(touched.channels, alone.conversions):
        assert wide.loc[channel, "markov"] == pytest.approx(credit, rel=1e-12)
    assert res.details["no_touch"]["conversions"] == 25.0
    # ... and its share of the 25 untouched conversions is not what the old normalization gave
    whole = markov_attribution(table)
    assert whole.conversions[table.channels.index(NO_TOUCH)] < 24.0, "a pseudo channel inside the chain loses credit"


def test_a_journey_without_touch_is_no_touchs_in_the_drill_down():
    res = run_attribution(_with_untouched(), models=MODELS, evaluate=False)
    split = explain_journey(res, [NO_TOUCH])
    assert set(split["model"]) == set(MODELS) and (split["channel"] == NO_TOUCH).all() and (split["share"] == 1.0).all()


def _touches_that_lower_conversion() -> PathTable:
    # b's journeys convert far less often than a's alone: adding b lowers the rate (a negative value)
    return PathTable.from_strings(
        ["a", "a > b", "b", "c", "a > c", "b > c"],
        [40, 4, 2, 10, 12, 1],
        [400.0, 40.0, 20.0, 100.0, 120.0, 10.0],
        [60, 96, 98, 90, 88, 99],
    )


def test_the_rate_game_never_credits_minus_conversions():
    table = _touches_that_lower_conversion()
    res = shapley_rate(table)
    b = table.channels.index("b")
    assert res.shapley_values[b] < 0, "the game gives b a negative value"
    assert res.negative_conversions > 0  # and says what the cut kept from it
    assert np.all(res.conversions >= 0)
    assert res.conversions.sum() == pytest.approx(table.total_conversions, rel=1e-12)  # still every conversion, shared
    assert np.all(res.value >= 0) and res.value.sum() == pytest.approx(table.total_value, rel=1e-12)


def test_the_conversion_model_never_credits_minus_conversions_and_says_how_much_it_kept_back():
    table = _touches_that_lower_conversion()
    res = run_attribution(table, models=["data_driven"], seed=3)
    dd = res.details["data_driven"]
    credit = res.table.set_index("channel")["conversions"]
    assert (credit >= 0).all()
    assert 0 <= dd["baseline_conversions"] <= table.total_conversions + 1e-9
    assert dd["baseline_conversions"] + credit.sum() == pytest.approx(table.total_conversions, rel=1e-9)
    assert dd["negative_conversions"] >= 0


def test_the_bootstrap_resamples_untouched_conversions_as_no_touchs():
    table = _with_untouched()
    res = run_attribution(table, models=["linear", "markov", "shapley_rate"], bootstrap=40, seed=2, evaluate=False)
    nt = res.table[res.table["channel"] == NO_TOUCH].set_index("model")
    assert (nt["conversions"] == 25.0).all()
    assert (nt["conversions_low"] < 25.0).all() and (nt["conversions_high"] > 25.0).all()  # Poisson resampling of 25
    touched = res.table[res.table["channel"] != NO_TOUCH]
    assert (touched["conversions_low"] >= 0).all()
