"""How costs are written, everywhere: totals, rows, detail pages, estimates, chart, export.

One rule: dollars and cents from one dollar up (``$1,234.50``), three significant digits
below (``$0.0123``, ``$0.000420``→``$0.00042``), ``$0.00`` for zero and a dash for unknown.
Exports get the exact stored value in plain notation (``0.00042``, ``0``), never ``0E-8``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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
    return f"{sign}${abs(rounded):,f}"


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


__all__ = ["format_cost", "export_cost", "export_cost_number", "round_cost"]
