"""The fitted conversion model and its exact Shapley credit, against brute force and known answers."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from core.attribution import datadriven, fitted
from core.attribution.journey_features import summarize
from core.attribution.simulate import simulate
from core.pathtable import PathTable

from .conftest import random_table


def _random_model(form: fitted.ModelForm, n: int, seed: int) -> fitted.FittedModel:
    rng = np.random.default_rng(seed)
    if form.link == "noisy_or":
        main = rng.uniform(0.0, 0.08, n)
        count = rng.uniform(0.0, 0.03, n) if form.counts else np.zeros(n)
        intercept = 0.02
    else:
        main = rng.normal(0, 0.8, n)
        count = rng.normal(0, 0.3, n) if form.counts else np.zeros(n)
        intercept = -2.0
    first = rng.normal(0, 0.7, n) if form.roles else np.zeros(n)
    last = rng.normal(0, 0.7, n) if form.roles else np.zeros(n)
    pair = None
    if form.pairs:
        pair = np.triu(rng.normal(0, 0.4, (n, n)), 1)
        pair = pair + pair.T
    return fitted.FittedModel(form, n, intercept, main, count, first, last, pair)


def _restricted_prob(model: fitted.FittedModel, path: list[int], keep: set[int]) -> float:
    """p(path with only the channels in ``keep``), by predicting a one-path table (p(no touch) if empty)."""
    sub = [c for c in path if c in keep]
    if not sub:
        return model.baseline
    names = tuple(str(i) for i in range(model.n_channels))
    one = PathTable(names, np.array([0, len(sub)]), np.array(sub, dtype=np.int32), np.ones(1), np.zeros(1), np.zeros(1))
    return float(model.predict(summarize(one))[0])


def _textbook_shapley(model, path):
    players = list(dict.fromkeys(path))
    n = len(players)
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for r in range(n):
            for s in itertools.combinations(others, r):
                w = factorial(r) * factorial(n - r - 1) / factorial(n)
                total += w * (_restricted_prob(model, path, set(s) | {p}) - _restricted_prob(model, path, set(s)))
        out[p] = total
    return out


def _credit_by_path(model, paths):
    """(summary, [(path, {channel: credit}, predicted probability), ...]) of `datadriven.path_shapley`
    over the given paths of 5 channels."""
    table = PathTable(tuple(str(i) for i in range(5)), np.cumsum([0] + [len(p) for p in paths]),
                      np.concatenate(paths).astype(np.int32), np.ones(len(paths)), np.zeros(len(paths)), np.zeros(len(paths)))
    s = summarize(table)
    phi, p = datadriven.path_shapley(model, s)
    out = []
    for i, path in enumerate(paths):
        k = int(s.k[i])
        out.append((path, dict(zip(s.chans[i, :k].tolist(), phi[i, :k].tolist())), p[i]))
    return s, out


FORMS = [fitted.ModelForm("noisy_or"), fitted.ModelForm("noisy_or", counts=True),
         fitted.ModelForm("noisy_or", counts=True, roles=True), fitted.ModelForm("logit", counts=True),
         fitted.ModelForm("logit", counts=True, pairs=True)]


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_path_shapley_equals_textbook_enumeration(form):
    model = _random_model(form, 5, seed=3)
    paths = [[0, 1, 0, 2], [3], [4, 2, 2, 1, 0], [1, 3, 1], [2, 4]]
    _, per_path = _credit_by_path(model, paths)
    for path, got, prob in per_path:
        assert got == pytest.approx(_textbook_shapley(model, path), abs=1e-12)
        assert prob == pytest.approx(_restricted_prob(model, path, set(path)))
        assert sum(got.values()) == pytest.approx(prob - model.baseline)  # efficiency


@pytest.mark.parametrize("form", [FORMS[0], FORMS[4]], ids=["noisy_or", "logit+pairs"])
def test_lattice_engine_equals_per_path_engine(form, monkeypatch):
    table = random_table(5, n_paths=80, n_channels=6, max_len=6)
    s = summarize(table)
    model = _random_model(form, 6, seed=9)
    lattice = datadriven.credit(model, s)
    monkeypatch.setattr(datadriven, "MAX_SHAPLEY_CHANNELS", 0)  # force the per-path engine
    rows = datadriven.credit(model, s)
    np.testing.assert_allclose(lattice.conversions, rows.conversions, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lattice.value, rows.value, rtol=1e-10, atol=1e-10)
    assert lattice.baseline_conversions == pytest.approx(rows.baseline_conversions)


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_credit_plus_baseline_is_every_conversion_and_a_dummy_gets_nothing(form):
    table = random_table(8, n_paths=60, n_channels=5, max_len=5)
    model = _random_model(form, 5, seed=1)
    model = fitted.FittedModel(model.form, 5, model.intercept, np.r_[model.main[:4], 0.0], np.r_[model.count[:4], 0.0],
                               np.r_[model.first[:4], 0.0], np.r_[model.last[:4], 0.0],
                               None if model.pair is None else model.pair * (np.arange(5)[:, None] < 4) * (np.arange(5)[None, :] < 4))
    res = datadriven.credit(model, summarize(table))
    assert res.conversions.sum() + res.baseline_conversions == pytest.approx(table.total_conversions)
    assert res.value.sum() + res.baseline_value == pytest.approx(table.total_value)
    if not form.roles:  # without roles a channel with no coefficient changes nothing, so gets nothing
        assert res.conversions[4] == pytest.approx(0.0, abs=1e-12)


def test_noisy_or_fit_recovers_a_known_model():
    sim = simulate(6, 400_000, seed=4)
    s = summarize(sim.paths)
    m = fitted.fit(s, fitted.ModelForm("noisy_or", counts=True))
    assert m.converged
    assert m.baseline == pytest.approx(sim.baseline, abs=0.003)
    zero = sim.paths.channels.index(sim.zero_channel)
    assert m.main[zero] < 0.003  # the channel without effect
    # first-touch hazards -log(1 - q) of the channels that work, within a few thousandths
    np.testing.assert_allclose(np.delete(m.main, zero), np.delete(-np.log1p(-sim.effects), zero), atol=0.006)


def test_fit_uses_weights_not_rows():
    table = random_table(2, n_paths=50, n_channels=4)
    doubled = table.with_counts(table.conversions * 2, table.value * 2, table.nulls * 2)
    form = fitted.ModelForm("noisy_or", counts=True, penalty=1e-6)
    a, b = fitted.fit(summarize(table), form), fitted.fit(summarize(doubled), form)
    np.testing.assert_allclose(a.main, b.main, atol=1e-4)
    # and splitting a path's journeys over two identical rows changes nothing
    split = PathTable.from_sequences([table.path(i) for i in range(table.n_paths)] * 2,
                                     np.r_[table.conversions, table.conversions] / 2, None,
                                     np.r_[table.nulls, table.nulls] / 2, aggregate=False)
    c = fitted.fit(summarize(split), form)
    np.testing.assert_allclose(a.main, c.main, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"link": "probit"}, "link must be"), ({"link": "logit", "roles": True}, "noisy-OR link only"),
     ({"link": "noisy_or", "pairs": True}, "logit link only"), ({"penalty": 0.0}, "positive"),
     ({"penalty": float("nan")}, "positive")],
    ids=["unknown-link", "roles-need-noisy-or", "pairs-need-logit", "zero-penalty", "nan-penalty"],
)
def test_form_rejects_contradictions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fitted.ModelForm(**kwargs)


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_model_round_trips_through_json(form):
    import json

    m = _random_model(form, 4, seed=2)
    back = fitted.FittedModel.from_dict(json.loads(json.dumps(m.to_dict())))
    s = summarize(random_table(1, n_paths=20, n_channels=4))
    np.testing.assert_allclose(back.predict(s), m.predict(s), rtol=1e-12)


def test_journey_split_matches_the_path_engine():
    model = _random_model(FORMS[2], 4, seed=5)
    chans, shares, p, base = datadriven.journey_split(model, np.array([2, 0, 2, 3]))
    ref = _textbook_shapley(model, [2, 0, 2, 3])
    assert dict(zip(chans.tolist(), (shares * p).tolist())) == pytest.approx(ref, abs=1e-12)
    assert shares.sum() + base == pytest.approx(1.0)


def test_per_path_work_guard():
    s = summarize(random_table(3, n_paths=30, n_channels=12, max_len=12))
    model = _random_model(fitted.ModelForm("noisy_or", counts=True), 12, seed=0)
    old = datadriven.MAX_PATH_WORK
    try:
        datadriven.MAX_PATH_WORK = 10
        with pytest.raises(datadriven.ShapleyTooCostly, match="too many distinct channels"):
            datadriven.credit(model, s)
    finally:
        datadriven.MAX_PATH_WORK = old


# ------------------------------------------------------------------ channels without a measured effect
def test_roles_pass_over_channels_without_a_measured_effect():
    # channel 0 has no measured effect: the first/last touch goes to the first/last touch of another channel
    paths = [[0, 1, 2, 0], [0], [2, 0, 1], [1, 0]]
    table = PathTable(("z", "a", "b"), np.cumsum([0] + [len(p) for p in paths]), np.concatenate(paths).astype(np.int32),
                      np.ones(4), np.zeros(4), np.zeros(4))
    s = summarize(table)
    first, last = s.role_holders(np.array([False, True, True]))
    assert first.tolist() == [1, -1, 2, 1]
    assert last.tolist() == [2, -1, 1, 1]
    assert [x.tolist() for x in s.role_holders(None)] == [[0, 0, 2, 1], [0, 0, 1, 0]]


def test_shapley_with_unmeasured_channels_equals_textbook_enumeration_and_gives_them_nothing():
    form = fitted.ModelForm("noisy_or", counts=True, roles=True)
    base = _random_model(form, 5, seed=3)
    measured = np.array([True, False, True, True, False])
    off = ~measured
    # an unmeasured channel has no coefficients; its role multipliers are left non-zero on purpose: they must not act
    model = fitted.FittedModel(form, 5, base.intercept, np.where(off, 0.0, base.main), np.where(off, 0.0, base.count),
                               base.first + 0.5, base.last - 0.5, None, True, measured)
    paths = [[1, 0, 2, 1], [4, 3, 1], [1], [4, 2, 2, 1, 0], [3, 1, 4, 0]]
    s, per_path = _credit_by_path(model, paths)
    for path, got, prob in per_path:
        assert got == pytest.approx(_textbook_shapley(model, path), abs=1e-12)
        assert got.get(1, 0.0) == 0.0 and got.get(4, 0.0) == 0.0  # no effect, and no role taken from others
        # the path predicts as if their touches were not there
        assert prob == pytest.approx(_restricted_prob(model, path, {0, 2, 3}))
    res = datadriven.credit(model, s)
    assert res.conversions[off] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert res.conversions.sum() + res.baseline_conversions == pytest.approx(len(paths))  # one conversion per path


def test_effect_z_tells_the_channel_without_effect_from_the_others():
    sim = simulate(6, 200_000, variant="order_dependent", seed=4)
    s = summarize(sim.paths)
    plain = fitted.fit(s, fitted.ModelForm("noisy_or"))
    z = fitted.effect_z(s, plain)
    # per channel set (the design's rows) the information adds up to the same z-scores as per path
    np.testing.assert_allclose(fitted.effect_z(fitted.design(s, plain.form).rows, plain), z, rtol=1e-9)
    zero = sim.paths.channels.index(sim.zero_channel)
    assert z[zero] < fitted.MEASURED_EFFECT_Z
    assert np.all(np.delete(z, zero) > fitted.MEASURED_EFFECT_Z)
    measured = fitted.measured_channels(s)
    assert measured.tolist() == [i != zero for i in range(6)]
    for form in (fitted.ModelForm("noisy_or", counts=True, roles=True, penalty=10.0), fitted.ModelForm("logit", counts=True, pairs=True)):
        m = fitted.fit(s, form, measured=measured)
        assert m.main[zero] == 0.0 and m.count[zero] == 0.0
        assert m.pair is None or not m.pair[zero].any()
        assert np.all(m.main[measured] != 0.0)


def test_no_measured_channel_keeps_every_channel():
    s = summarize(random_table(2, n_paths=12, n_channels=4))
    assert fitted.measured_channels(s, z=1e9).all()


def test_a_popular_channel_without_effect_takes_neither_role_nor_credit():
    # Order-dependent journeys: a popular channel without effect often holds the first touch. Were it a
    # role holder, it would take the introducer's role from the channel after it (and the fit would give
    # it an effect to make up for that); with roles only for measured channels it is credited nothing.
    from core.attribution.incremental import fit_data_driven

    sim = simulate(15, 300_000, variant="order_dependent", seed=6)
    zero = sim.paths.channels.index(sim.zero_channel)
    inc = fit_data_driven(sim.paths, seed=6)
    assert inc.model.form.roles
    assert not inc.model.measured[zero]
    res = inc.credit()
    share = res.conversions / res.conversions.sum()
    assert share[zero] == 0.0
    assert np.abs(share - sim.truth_shares).sum() <= 0.03
    # the same form with every channel holding roles: the channel without effect gets an effect (negative here: it
    # takes roles from the channels after it), which would cost the channels conversions; credit is never negative,
    # so those stay with the baseline and are counted
    every = fitted.fit(inc.summary, inc.model.form)
    assert every.main[zero] != 0.0
    loose = datadriven.credit(every, inc.summary)
    assert loose.negative_conversions > 0.005 * loose.conversions.sum() and np.all(loose.conversions >= 0)
