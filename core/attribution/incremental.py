"""The fitted conversion model of one path table, ready for both models that use it.

`fit_data_driven` chooses the model's form by cross-validation (`core.attribution.evaluate`), fits it
on every journey and keeps what the data-driven credit, the rate game's shrinkage prior and the
bootstrap need, so a run fits it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from core.attribution import datadriven, fitted, shrinkage
from core.attribution.evaluate import Evaluation, cross_validate
from core.attribution.journey_features import PathSummary, summarize
from core.pathtable import PathTable


@dataclass(eq=False)
class IncrementalFit:
    """The chosen form fitted on all journeys, with its cross-validated evaluation."""

    summary: PathSummary
    evaluation: Evaluation
    model: fitted.FittedModel
    design: fitted.Design

    def credit(self) -> datadriven.DataDrivenCredit:
        return datadriven.credit(self.model, self.summary)

    def refit(self, conversions: np.ndarray, value: np.ndarray, nulls: np.ndarray) -> datadriven.DataDrivenCredit:
        """Credit after refitting the chosen form to resampled counts (warm-started; the form is kept)."""
        s = self.summary.with_counts(conversions, nulls, value)
        return datadriven.credit(fitted.fit(s, self.model.form, self.model, prepared=self.design, precise=False), s)

    def rate_prior(self) -> shrinkage.RatePrior:
        return shrinkage.rate_prior(self.model, self.summary)

    def details(self, res: datadriven.DataDrivenCredit, channels) -> dict:
        """JSON-ready description of the fit (stored with a run; the drill-down rebuilds the model from it)."""
        m = self.model
        measured = np.ones(len(channels), dtype=bool) if m.measured is None else m.measured
        coef = {"channel": list(channels), "effect_measured": [bool(x) for x in measured], "effect": m.main.tolist()}
        if m.form.counts:
            coef["per_log_touch"] = m.count.tolist()
        if m.form.roles:
            coef["first_touch_multiplier"] = np.exp(m.first).tolist()
            coef["last_touch_multiplier"] = np.exp(m.last).tolist()
        return {
            "form": m.form.name,
            "form_description": m.form.describe(),
            "baseline_rate": res.baseline_rate,
            "baseline_conversions": res.baseline_conversions,
            "baseline_value": res.baseline_value,
            "incremental_conversions": float(res.conversions.sum()),
            "negative_conversions": float(res.negative_conversions),
            "converged": m.converged,
            "channels": list(channels),
            "unmeasured_channels": [c for c, on in zip(channels, measured) if not on],
            "model": m.to_dict(),
            "coefficients": coef,
        }


def fit_data_driven(paths: PathTable, *, seed: int = 0, folds: int | None = None,
                    progress: Callable[[float, str], None] | None = None) -> IncrementalFit:
    """Cross-validate the forms, then fit the chosen one on every journey."""
    report = progress or (lambda f, m: None)
    s = summarize(paths)
    kwargs = {} if folds is None else {"folds": folds}
    ev = cross_validate(paths, s, seed=seed, progress=lambda f, m: report(0.9 * f, m), **kwargs)
    if ev.form is None:  # too few conversions to fit on every fold: the simplest form, said so
        form = fitted.candidate_forms(paths.n_channels)[0]
        ev = replace(ev, form=form, notes=[*ev.notes, f"no form could be cross-validated on this data (too few "
                                           f"conversions per fold); the simplest form is used: {form.describe()}"])
    report(0.9, f"fitting {ev.form.name} on every journey")
    # the channels with a measured effect, on every journey (unless the evaluation wants every channel)
    prepared = fitted.design(s, ev.form, fitted.measured_channels(s) if ev.measured_only else None)
    model = fitted.fit(s, ev.form, ev.fold_models.get(ev.form), prepared=prepared)
    report(1.0, "conversion model fitted")
    return IncrementalFit(s, ev, model, prepared)
