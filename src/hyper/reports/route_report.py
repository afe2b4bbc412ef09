"""A route explained, as one offline HTML page: the budget curve with its interval, the PPM's
skill, which features are over- and under-represented among the human-routed pairs (the
paper's per-tag analysis), the judge's confidence in both groups, and a sample of routed pairs
with their gains. Pictures are inline SVG and styles inline CSS: the page loads nothing."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass

import numpy as np

from hyper.api.messages import RouteResult


@dataclass(frozen=True)
class FeatureShare:
    feature: str
    human: float  # share of the human-routed pairs carrying it
    dataset: float  # share of all routed pairs carrying it


@dataclass(frozen=True)
class RoutedPair:
    id: str
    route: str
    gain: float
    prompt: str
    judge_confidence: float | None


@dataclass(frozen=True)
class RouteReport:
    route: RouteResult  # with its budget curve
    best_budget_verdict: str
    shares: list[FeatureShare]  # every feature that some pair carries
    confidence_human: list[float]
    confidence_ai: list[float]
    sample: list[RoutedPair]
    notes: list[str]  # what a reader must know first, e.g. the route no longer reproduces


def feature_shares(feature_names: list[str], bits: np.ndarray, human: np.ndarray) -> list[FeatureShare]:
    present = np.asarray(bits.any(axis=0))
    in_human = bits[human].mean(axis=0) if human.any() else np.zeros(bits.shape[1])
    overall = bits.mean(axis=0)
    return [FeatureShare(name, float(in_human[k]), float(overall[k]))
            for k, name in enumerate(feature_names) if present[k]]


def best_budget_verdict(points: list[dict], best: float) -> str:
    """The best budget, unless the curve is flat within its intervals: then no budget is
    predicted to be better than another, and saying "best" would claim what the PPM cannot."""
    values = [p["predicted"] for p in points]
    at_best = next(p for p in points if p["budget_fraction"] == best)
    halfwidth = (at_best["upper"] - at_best["lower"]) / 2
    spread = max(values) - min(values)
    if spread <= halfwidth:
        return (f"no best budget: the prediction moves by {spread:.4f} across budgets, less than "
                f"the half-width of its interval ({halfwidth:.4f})")
    close = [p["budget_fraction"] for p in points if p["predicted"] >= at_best["lower"]]
    return (f"best budget {best:.0%} (predicted {at_best['predicted']:.4f} [{at_best['lower']:.4f}, "
            f"{at_best['upper']:.4f}]); the predictions from {min(close):.0%} to {max(close):.0%} lie "
            "within its interval")


def _svg(draw) -> str:
    buffer = io.StringIO()
    draw(buffer)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML prolog and doctype


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if any(header) else ''}<tbody>{body}</tbody></table>"


def _share_rows(shares: list[FeatureShare]) -> list[list[str]]:
    return [[html.escape(s.feature), f"{s.human:.1%}", f"{s.dataset:.1%}", f"{s.human - s.dataset:+.1%}"]
            for s in shares]


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.warn{background:#fff3cd;padding:.6em;border:1px solid #e0c060}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}svg{max-width:100%;height:auto}
.small{color:#666;font-size:.85em}"""


def _models(route: RouteResult) -> list[list[str]]:
    """What predicted the route and routed it, with its skill."""
    rows = []
    errors, skill = route.error_model_skill, route.ppm_skill
    if errors is not None:
        rows.append(["error model", f"{html.escape(route.error_model)}/{html.escape(route.error_model_version)}: "
                                    f"cross-validated AUC {errors.auc.mean:.2f} [{errors.auc.ci_low:.2f}, "
                                    f"{errors.auc.ci_high:.2f}], calibration error {errors.calibration_error.mean:.3f}"
                                    f" over {errors.n_pairs} pairs"])
    if skill is not None:
        rows.append(["PPM", f"{html.escape(route.ppm_version)}: cross-validated Spearman {skill.spearman:.2f} "
                            f"[{skill.ci_low:.2f}, {skill.ci_high:.2f}] over {skill.n_runs} runs"
                            + ("" if skill.ci_low > 0 else " <b>(no demonstrated skill: the interval includes 0)</b>")])
    if route.routing_gain is not None:
        gain = route.routing_gain
        rows.append(["gain vs random", f"{gain.mean:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}] label accuracy "
                                       "(cross-fitted on the error model's history)"])
    return rows


def _predicted(route: RouteResult) -> str:
    if route.predicted_score is None or route.predicted_lower is None or route.predicted_upper is None:
        return "nothing: no model has learnt this judge's errors yet"
    return (f"{html.escape(route.ppm_target)} {route.predicted_score:.4f} [{route.predicted_lower:.4f}, "
            f"{route.predicted_upper:.4f}] at {route.interval_level:.0%}")


def _summary(route: RouteResult, verdict: str, notes: list[str]) -> str:
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in route.warnings + notes)
    routed = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(route.n_by_source.items()))
    rows = [["route", html.escape(route.route_id)],
            ["strategy", f"{html.escape(route.strategy)} -> {html.escape(route.strategy_chosen)}: "
                         f"{html.escape(route.strategy_reason)}"],
            ["pairs", f"{route.n_instances} ({routed})"],
            ["budget", f"{route.budget_fraction:.1%} of the dataset (cost {route.total_cost:g})"],
            ["predicted", _predicted(route)], *_models(route), ["budget curve", html.escape(verdict)]]
    return warnings + _table([], rows)


# The page runs nothing and loads nothing: text, inline CSS and inline SVG only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render_html(report: RouteReport, top: int = 15) -> str:
    from hyper.reports.plots import plot_budget_curve, plot_confidence_histograms  # matplotlib: only when drawing

    route = report.route
    points = [p.model_dump() for p in route.budget_curve]
    curve = "<p>No model predicts this route's score: no curve.</p>" if not points else _svg(
        lambda out: plot_budget_curve(points, route.optimal_budget_fraction or 0.0, out,
                                      f"route {route.route_id[:8]}: {route.strategy}", route.ppm_target,
                                      report.best_budget_verdict.startswith("best"), image_format="svg"))
    by_lift = sorted(report.shares, key=lambda s: s.human - s.dataset)
    confidence = ("<p>No judge confidence in the data for these pairs.</p>"
                  if not (report.confidence_human or report.confidence_ai) else
                  _svg(lambda out: plot_confidence_histograms(report.confidence_human, report.confidence_ai, out)))
    sample = _table(["id", "route", "gain", "judge confidence", "prompt"], [
        [html.escape(p.id), html.escape(p.route), f"{p.gain:+.5f}",
         "" if p.judge_confidence is None else f"{p.judge_confidence:.2f}", html.escape(p.prompt[:300])]
        for p in report.sample])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>Route {html.escape(route.route_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Why these pairs go to humans: route {html.escape(route.route_id[:8])}</h1>
{_summary(route, report.best_budget_verdict, report.notes)}
<h2>Predicted {html.escape(route.ppm_target)} against budget</h2>{curve}
<h2>Features of the human-routed pairs against the dataset</h2>
<p class="small">The share of the human-routed pairs that carry each feature, against its share in the whole
dataset: the routing's per-tag profile (which tags the PPM expects to gain most from human labels).</p>
<div class="grid"><div><b>Most over-represented</b>{_table(["feature", "human", "dataset", "difference"],
                                                        _share_rows(by_lift[::-1][:top]))}</div>
<div><b>Most under-represented</b>{_table(["feature", "human", "dataset", "difference"],
                                          _share_rows(by_lift[:top]))}</div></div>
<h2>The judge's confidence in both groups</h2>{confidence}
<h2>A sample of routed pairs</h2>{sample}
</body></html>
"""
