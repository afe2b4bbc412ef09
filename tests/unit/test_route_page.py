"""The route report's page: whatever the data names, it renders as text and the page runs nothing."""

from hyper.api.messages import RouteResult
from hyper.reports.route_report import RoutedPair, RouteReport, render_html

SCRIPT = "<script>alert(1)</script>"


def test_names_from_the_data_are_escaped_and_the_page_forbids_scripts():
    route = RouteResult.model_validate({
        "warnings": [SCRIPT], "ppm_target": SCRIPT, "n_forced_human": 0, "route_id": "0" * 32, "strategy": "random",
        "n_instances": 1, "n_human": 1, "n_skipped_rows": 0, "n_by_source": {SCRIPT: 1}, "budget_fraction": 1.0,
        "total_cost": 1.0, "interval_level": 0.9, "ppm_version": SCRIPT, "budget_curve": [], "assignments": []})
    page = render_html(RouteReport(route, SCRIPT, [], [], [], [RoutedPair(SCRIPT, SCRIPT, 0.1, SCRIPT, None)],
                                   [SCRIPT]))
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
