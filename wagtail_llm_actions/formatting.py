"""How costs are written, everywhere: totals, rows, detail pages, estimates, chart, export.

One rule: dollars and cents from one dollar up (``$1,234.50``), three significant digits
below (``$0.0123``, ``$0.000420``→``$0.00042``), ``$0.00`` for zero and a dash for unknown.
Digits are grouped and separated as the active language writes them (Django's localisation:
``$1.234,50`` in German). A total over calls of which some have no known price says so
(``$1.20 + 14 calls at unknown price``): unknown is never added as zero.
Exports get the exact stored value in plain notation (``0.00042``, ``0``), never ``0E-8``.
Latency, rates and counts go through Django's number formatting too (:func:`format_ms`,
:func:`format_rate`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

#: Significant digits shown for amounts under one dollar.
SIGNIFICANT_DIGITS = 3
UNKNOWN = "—"


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return number if number.is_finite() else None


def round_cost(value) -> Decimal | None:
    """``value`` rounded for display: cents from $1 up, else 3 significant digits."""
    number = _decimal(value)
    if number is None:
        return None
    if not number:
        return Decimal("0.00")
    if abs(number) >= 1:
        return number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    exponent = number.adjusted() - SIGNIFICANT_DIGITS + 1  # e.g. 0.00042 -> -6
    rounded = number.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    if abs(rounded) >= 1:  # 0.9996 rounds up to a dollar
        return rounded.quantize(Decimal("0.01"))
    # at least cents, no trailing zeros past them: 0.500 -> 0.50, 0.0120 -> 0.012
    rounded = rounded.normalize()
    if rounded.as_tuple().exponent > -2:
        rounded = rounded.quantize(Decimal("0.01"))
    return rounded


def format_cost(value, *, unknown: str = UNKNOWN) -> str:
    """``$0.00042``, ``$12.35``, ``$1,234.50``, ``$0.00``; ``unknown`` for None."""
    rounded = round_cost(value)
    if rounded is None:
        return unknown
    sign = "-" if rounded < 0 else ""
    places = max(0, -rounded.as_tuple().exponent)
    digits = number_format(abs(rounded), decimal_pos=places, use_l10n=True, force_grouping=True)
    return f"{sign}${digits}"


def format_cost_total(value, unpriced: int = 0, *, unknown: str | None = None) -> str:
    """A sum of costs when ``unpriced`` of the calls summed have no known price.

    ``$1.20`` when every call has a price, ``$1.20 + 14 calls at unknown price`` when some
    have none, ``14 calls at unknown price`` when none has (never ``$0.00``), and
    ``unknown`` (default: "unknown") when there is no sum and no count.
    """
    unpriced = int(unpriced or 0)
    if not unpriced:
        if value is None:
            return _("unknown") if unknown is None else unknown
        return format_cost(value)
    calls = ngettext(
        "%(count)s call at unknown price", "%(count)s calls at unknown price", unpriced
    ) % {"count": number_format(unpriced, use_l10n=True, force_grouping=True)}
    number = _decimal(value)
    if not number:
        return calls
    return _("%(cost)s + %(calls)s") % {"cost": format_cost(number), "calls": calls}


def format_ms(value, *, unknown: str = UNKNOWN) -> str:
    """A latency in milliseconds: ``2,226 ms`` (grouped as the language does), dash if None."""
    if value is None or value == "":
        return unknown
    number = number_format(round(float(value)), use_l10n=True, force_grouping=True)
    return _("%(ms)s ms") % {"ms": number}


def format_rate(pages_per_second: float | None, *, unknown: str = UNKNOWN) -> str:
    """Pages a second, two decimals below ten, none above: ``0.25 pages/s``, ``15 pages/s``."""
    if not pages_per_second:
        return unknown
    places = 2 if pages_per_second < 10 else 0
    number = number_format(
        round(pages_per_second, places), decimal_pos=places, use_l10n=True, force_grouping=True
    )
    return _("%(rate)s pages/s") % {"rate": number}


def format_number(value) -> str:
    """A count grouped as the active language does (``12,345``; ``12.345`` in German)."""
    return number_format(int(value or 0), use_l10n=True, force_grouping=True)


def export_cost(value) -> str:
    """The exact cost for a spreadsheet, in plain notation: ``0.00042``, ``0``, ``""``."""
    number = _decimal(value)
    if number is None:
        return ""
    if not number:
        return "0"
    return f"{number.normalize():f}"


def export_cost_number(value) -> float | None:
    """The cost as a spreadsheet number (``0.0`` for zero, None when unknown)."""
    text = export_cost(value)
    return float(text) if text else None


__all__ = [
    "format_cost",
    "format_cost_total",
    "format_ms",
    "format_number",
    "format_rate",
    "export_cost",
    "export_cost_number",
    "round_cost",
]
