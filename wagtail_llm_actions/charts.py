"""A small server-rendered SVG chart of calls and cost per day (no JavaScript, no CDN).

::

    series = daily_series(queryset)          # one grouped query
    svg = render_calls_and_cost(series)      # safe HTML: <svg>…</svg>
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db import connections
from django.db.models import Count, DateField, F, Func, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .formatting import format_cost

#: At most this many days are drawn: the most recent days of the filtered set.
MAX_DAYS = 60
#: Bars are never wider than this (one day is one bar, not the whole chart).
MAX_BAR_WIDTH = 36.0


@dataclass(frozen=True)
class Day:
    date: datetime.date
    calls: int
    cost: Decimal


def day_of(queryset: QuerySet, field: str = "created_at"):
    """An expression for the local date of ``field``.

    ``TruncDate`` is native SQL on PostgreSQL and MySQL, but on SQLite Django evaluates it
    with a Python function per row. When the current time zone is UTC (the stored zone),
    SQLite's own ``date()`` gives the same answer many times faster.
    """
    tz = timezone.get_current_timezone()
    if connections[queryset.db].vendor == "sqlite" and getattr(tz, "key", str(tz)) in {
        "UTC",
        "Etc/UTC",
    }:
        return Func(F(field), function="date", output_field=DateField())
    return TruncDate(field, tzinfo=tz)


def daily_series(queryset: QuerySet, max_days: int = MAX_DAYS) -> list[Day]:
    """Calls and cost per day for the latest ``max_days`` days with activity in ``queryset``.

    One grouped query. Days without calls between the first and last day are filled with
    zeros so the chart's x axis is continuous.
    """
    rows = list(
        queryset.order_by()
        .annotate(day=day_of(queryset))
        .values("day")
        .annotate(calls=Count("pk"), cost=Sum("cost"))
        .order_by("-day")[:max_days]
    )
    return series_from_days(rows, max_days)


def series_from_days(rows: list[dict], max_days: int = MAX_DAYS) -> list[Day]:
    """The chart's days from grouped rows (``day``, ``calls``, ``cost``), newest first."""
    rows = rows[:max_days]
    if not rows:
        return []
    by_day = {row["day"]: row for row in rows}
    last = rows[0]["day"]
    first = max(rows[-1]["day"], last - datetime.timedelta(days=max_days - 1))
    series = []
    day = first
    while day <= last:
        row = by_day.get(day)
        series.append(
            Day(
                date=day,
                calls=row["calls"] if row else 0,
                cost=Decimal(row["cost"] or 0) if row else Decimal(0),
            )
        )
        day += datetime.timedelta(days=1)
    return series


def render_calls_and_cost(series: list[Day], width: int = 720, height: int = 180) -> SafeString:
    """An SVG bar chart (calls) with a line (cost), sized by ``viewBox`` to fit its container.

    Bars are at most ``MAX_BAR_WIDTH`` wide, so one day is one bar, not the whole width, with
    one date under it. Days without calls are drawn as empty slots. The cost line and its
    axis are left out when nothing cost anything (no "$1.00" scale for zero).
    """
    if not series:
        return mark_safe("")  # noqa: S308  # nothing to draw
    left, right, top, bottom = 44, 64, 12, 28
    plot_w = width - left - right
    plot_h = height - top - bottom
    max_calls = max(day.calls for day in series) or 1
    max_cost = max(day.cost for day in series)
    has_cost = max_cost > 0
    slot = plot_w / len(series)
    bar_w = min(max(slot * 0.7, 1.0), MAX_BAR_WIDTH)

    def centre(i: int) -> float:
        return left + i * slot + slot / 2

    first, last = series[0].date, series[-1].date
    label = _chart_label(series)
    baseline = top + plot_h
    parts = [
        f'<svg class="llm-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{escape(label)}" data-days="{len(series)}" '
        f'data-has-cost="{"true" if has_cost else "false"}">',
        f"<title>{escape(label)}</title>",
        # axes
        f'<line x1="{left}" y1="{baseline}" x2="{left + plot_w}" y2="{baseline}" '
        f'class="llm-chart__axis" />',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" class="llm-chart__label" '
        f'data-axis="calls-max">{max_calls}</text>',
        f'<text x="{left - 6}" y="{baseline}" text-anchor="end" class="llm-chart__label">0</text>',
    ]
    if has_cost:
        parts.append(
            f'<text x="{left + plot_w + 6}" y="{top + 10}" class="llm-chart__label '
            f'llm-chart__cost" data-axis="cost-max">{escape(format_cost(max_cost))}</text>'
        )
    if len(series) == 1:
        parts.append(_x_label(centre(0), height - 8, first, "middle"))
    else:
        parts.append(_x_label(centre(0) - bar_w / 2, height - 8, first, "start"))
        parts.append(_x_label(centre(len(series) - 1) + bar_w / 2, height - 8, last, "end"))
    points = []
    for i, day in enumerate(series):
        x = centre(i) - bar_w / 2
        bar_h = plot_h * day.calls / max_calls
        y = baseline - bar_h
        tip = ngettext(
            "%(date)s: %(calls)s call, %(cost)s",
            "%(date)s: %(calls)s calls, %(cost)s",
            day.calls,
        ) % {
            "date": date_format(day.date, "DATE_FORMAT"),
            "calls": day.calls,
            "cost": format_cost(day.cost),
        }
        parts.append(
            f'<rect class="llm-chart__bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{bar_h:.1f}" data-date="{day.date.isoformat()}" '
            f'data-calls="{day.calls}"><title>{escape(tip)}</title></rect>'
        )
        if has_cost:
            cy = baseline - float(plot_h * day.cost / max_cost)
            points.append((centre(i), cy))
    if has_cost:
        if len(points) > 1:
            coords = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in points)
            parts.append(f'<polyline class="llm-chart__line" fill="none" points="{coords}" />')
        if len(points) <= 31:
            for cx, cy in points:
                parts.append(f'<circle class="llm-chart__dot" cx="{cx:.1f}" cy="{cy:.1f}" r="3" />')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  # every interpolated text is escaped


def _chart_label(series: list[Day]) -> str:
    """What the chart shows, in words (its accessible name and title)."""
    total_calls = sum(day.calls for day in series)
    total_cost = sum((day.cost for day in series), Decimal(0))
    return _("Calls and cost per day, %(start)s to %(end)s: %(calls)s calls, %(cost)s") % {
        "start": date_format(series[0].date, "SHORT_DATE_FORMAT"),
        "end": date_format(series[-1].date, "SHORT_DATE_FORMAT"),
        "calls": total_calls,
        "cost": format_cost(total_cost),
    }


def _x_label(x: float, y: float, day: datetime.date, anchor: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y}" text-anchor="{anchor}" class="llm-chart__label" '
        f'data-axis="date">{escape(date_format(day, "SHORT_DATE_FORMAT"))}</text>'
    )
