"""Exact money: ISO 4217 currencies, Decimal amounts and the integer minor units stored in the database."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from .errors import InvalidInput

# The largest amount one expense may have, in major units. Anything above is a typo or an attack,
# and keeping it far below 2**63 minor units means sums over millions of rows cannot overflow.
MAX_AMOUNT = Decimal("1000000000")

if TYPE_CHECKING:
    from iso4217 import Currency


@cache  # valid codes only (a lookup that raises is not cached): a few hundred at most
def _currency(code: str) -> Currency:
    from iso4217 import Currency  # reads its table from XML: not on the server's start-up path

    return Currency(code)


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO 4217 code, or raise ``InvalidInput`` naming what is accepted."""
    candidate = code.strip().upper()
    try:
        currency = _currency(candidate)
    except ValueError:
        raise InvalidInput(
            f"unknown currency {code!r}; use a three-letter ISO 4217 code such as USD, EUR, GBP or JPY"
        ) from None
    if currency.exponent is None:
        raise InvalidInput(f"currency {candidate} is not a spendable currency (it has no minor unit)")
    return currency.code


@cache
def minor_digits(currency: str) -> int:
    """How many decimal places the currency has: 2 for USD, 0 for JPY, 3 for KWD."""
    exponent = _currency(currency).exponent
    assert exponent is not None, "normalize_currency() refuses currencies without a minor unit"
    return exponent


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Convert a positive amount to integer minor units, refusing anything inexact or out of range."""
    if not amount.is_finite():
        raise InvalidInput(f"amount must be a finite number, not {amount}")
    if amount <= 0:
        raise InvalidInput(f"amount must be greater than zero, not {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidInput(f"amount {amount} is too large; the most one expense may be is {MAX_AMOUNT:,}")
    digits = minor_digits(currency)
    # Work on the exact digits: Decimal arithmetic would round to 28 significant digits first.
    sign, coefficient, exponent = amount.as_tuple()
    assert isinstance(exponent, int) and sign == 0  # finite and positive, checked above
    while exponent < 0 and coefficient and coefficient[-1] == 0:  # 12.300 has only two decimals
        coefficient, exponent = coefficient[:-1], exponent + 1
    if exponent + digits < 0:
        allowed = "no decimals" if digits == 0 else f"at most {digits} decimal place{'s' if digits > 1 else ''}"
        raise InvalidInput(f"amount {amount} has too many decimals: {currency} allows {allowed}")
    return int("".join(map(str, coefficient)) + "0" * (exponent + digits))


def from_minor_units(minor: int, currency: str) -> Decimal:
    """The exact Decimal for a stored amount, with the currency's number of decimals (1230 USD -> 12.30)."""
    return Decimal(minor).scaleb(-minor_digits(currency))


def format_amount(minor: int, currency: str) -> str:
    """A stored amount as a plain decimal string with the currency's minor digits: "12.30", "500", "1.250".
    Integer arithmetic (the same text as formatting :func:`from_minor_units`): every row of a page is shown."""
    digits = minor_digits(currency)
    if not digits:
        return str(minor)
    whole, part = divmod(abs(minor), 10**digits)
    return f"{'-' if minor < 0 else ''}{whole}.{part:0{digits}d}"
