"""Costs are written one way everywhere: totals, rows, detail, estimate, job page, chart, export."""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from tests.interactions_factory import make_interactions, make_one
from wagtail_llm_actions.charts import Day, render_calls_and_cost
from wagtail_llm_actions.formatting import export_cost, format_cost

REPORT_URL = "/admin/llm-actions/report/"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (Decimal("0"), "$0.00"),
        (Decimal("0E-8"), "$0.00"),
        (Decimal("0.00000042"), "$0.00000042"),
        (Decimal("0.0004213"), "$0.000421"),
        (Decimal("0.0123456"), "$0.0123"),
        (Decimal("0.5"), "$0.50"),
        (Decimal("0.99961"), "$1.00"),
        (Decimal("12.345"), "$12.35"),
        (Decimal("1234.5"), "$1,234.50"),
        ("0.001", "$0.001"),
    ],
)
def test_format_cost_uses_three_significant_digits_below_a_dollar(value, shown):
    assert format_cost(value) == shown


@pytest.mark.parametrize(
    ("value", "exported"),
    [
        (None, ""),
        (Decimal("0E-8"), "0"),
        (Decimal("0.00042000"), "0.00042"),
        (Decimal("4.2E-7"), "0.00000042"),
        (Decimal("12.50000000"), "12.5"),
    ],
)
def test_export_cost_is_exact_and_never_scientific(value, exported):
    assert export_cost(value) == exported


def test_template_filter():
    html = Template("{% load llm_actions_tags %}{{ a|llm_cost }} {{ b|llm_cost:'unknown' }}")
    assert html.render(Context({"a": Decimal("0.000420"), "b": None})) == "$0.00042 unknown"


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def costly(superuser, post, action):
    return [
        make_one(action=action, page=post, user=superuser, cost=Decimal(cost))
        for cost in ("0.00042000", "0E-8")
    ]


def test_report_rows_totals_and_detail_share_the_format(admin_client, costly):
    html = admin_client.get(REPORT_URL).content.decode()
    cells = re.findall(r'<td class="llm-num">(\$[^<]*)</td>', html)
    assert sorted(cells) == ["$0.00", "$0.00042"]
    assert 'data-total="cost">$0.00042<' in html
    for interaction, shown in zip(costly, ("$0.00042", "$0.00"), strict=True):
        url = reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
        assert f"<dd>{shown}</dd>" in admin_client.get(url).content.decode()


def test_csv_and_xlsx_export_zero_as_0(admin_client, costly):
    body = b"".join(admin_client.get(REPORT_URL + "?export=csv").streaming_content).decode()
    costs = sorted(row["Cost (USD)"] for row in csv.DictReader(io.StringIO(body)))
    assert costs == ["0", "0.00042"]

    response = admin_client.get(REPORT_URL + "?export=xlsx")
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = list(sheet.values)
    column = values[0].index("Cost (USD)")
    assert sorted(row[column] for row in values[1:]) == [0, 0.00042]


# -- chart ---------------------------------------------------------------------------------------


def days(*spec):
    start = datetime.date(2026, 3, 1)
    return [
        Day(date=start + datetime.timedelta(days=i), calls=calls, cost=Decimal(cost))
        for i, (calls, cost) in enumerate(spec)
    ]


def bars(svg: str) -> list[dict]:
    return [
        {k: float(v) if k in ("x", "width", "height") else v for k, v in attrs}
        for attrs in (
            re.findall(r'(x|width|height|data-date|data-calls)="([^"]*)"', rect)
            for rect in re.findall(r"<rect [^>]*>", svg)
        )
    ]


def test_chart_of_one_day_draws_one_narrow_bar_and_one_date():
    svg = str(render_calls_and_cost(days((5, "0.002"))))
    (bar,) = bars(svg)
    assert bar["width"] <= 40  # not the whole 612px plot
    assert 44 < bar["x"] and bar["x"] + bar["width"] < 720 - 64
    assert svg.count('data-axis="date"') == 1
    assert 'data-axis="cost-max">$0.002<' in svg


def test_chart_with_zero_cost_draws_no_cost_scale():
    svg = str(render_calls_and_cost(days((3, "0"), (4, "0E-8"))))
    assert 'data-has-cost="false"' in svg
    assert "$1.00" not in svg and 'data-axis="cost-max"' not in svg
    assert "llm-chart__line" not in svg and "llm-chart__dot" not in svg
    assert len(bars(svg)) == 2


def test_chart_draws_gaps_as_empty_days_on_a_continuous_axis(admin_client, post, action):
    noon = timezone.now().replace(hour=12, minute=0)
    for days_ago in (0, 4):
        make_interactions(
            2, action=action, page=post, start=noon - datetime.timedelta(days=days_ago)
        )
    html = admin_client.get(REPORT_URL).content.decode()
    svg = html[html.index('<svg class="llm-chart"') :]
    svg = svg[: svg.index("</svg>")]
    drawn = bars(svg)
    assert [b["data-calls"] for b in drawn] == ["2", "0", "0", "0", "2"]
    xs = [b["x"] for b in drawn]
    steps = {round(b - a, 1) for a, b in zip(xs, xs[1:], strict=False)}
    assert len(steps) == 1  # evenly spaced: the empty days keep their place
    assert all(b["height"] == 0 for b in drawn[1:4])
    assert svg.count('data-axis="date"') == 2
