"""PPMs with known coefficients for tests: what a fit would store, without the runs."""

from __future__ import annotations

import numpy as np

from hyper.method.performance_models import LightGBMForm, PerformanceModel, QuadraticForm, Skill

SKILLED = Skill(0.8, 0.6, 0.9, 50)
UNSKILLED = Skill(0.1, -0.2, 0.4, 10)


def known_ppm(names: list[str], form: QuadraticForm | LightGBMForm, skill: Skill = SKILLED,
              residual: float = 0.01, target: str = "rm_accuracy") -> PerformanceModel:
    kind = "lightgbm" if isinstance(form, LightGBMForm) else (
        "linear" if form.quadratic is None else "quadratic")
    return PerformanceModel(kind, list(names), form, skill, np.full(skill.n_runs, residual), target)
