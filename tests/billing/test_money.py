"""billing.money: the one place amounts are rounded (pure, no Django)."""

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest

from billing.money import RATE_PLACES, minor_unit, quantize_rate, round_money

D = Decimal


@pytest.mark.parametrize(
    ("amount", "minor_units", "rounding", "expected"),
    [
        # ties: HALF_UP goes away from zero, HALF_EVEN to the even neighbour
        ("0.125", 2, ROUND_HALF_UP, "0.13"),
        ("0.125", 2, ROUND_HALF_EVEN, "0.12"),
        ("0.135", 2, ROUND_HALF_EVEN, "0.14"),
        ("-0.125", 2, ROUND_HALF_UP, "-0.13"),  # symmetric: a discount mirrors its charge
        ("-0.125", 2, ROUND_HALF_EVEN, "-0.12"),
        ("0.124999", 2, ROUND_HALF_UP, "0.12"),
        # JPY has no minor unit
        ("2.5", 0, ROUND_HALF_UP, "3"),
        ("2.5", 0, ROUND_HALF_EVEN, "2"),
        ("1234.49", 0, ROUND_HALF_UP, "1234"),
        # KWD has three
        ("0.0125", 3, ROUND_HALF_UP, "0.013"),
        ("0.0125", 3, ROUND_HALF_EVEN, "0.012"),
        ("15.4255", 3, ROUND_HALF_UP, "15.426"),
        # already exact: only the exponent changes
        ("7", 2, ROUND_HALF_UP, "7.00"),
        ("10.1", 3, ROUND_HALF_UP, "10.100"),
    ],
)
def test_round_money(amount: str, minor_units: int, rounding: str, expected: str) -> None:
    result = round_money(D(amount), minor_units=minor_units, rounding=rounding)
    assert result == D(expected)
    assert str(result) == expected  # same exponent too: JPY '3', KWD '0.013'


def test_round_money_default_is_half_up() -> None:
    assert round_money(D("0.005"), minor_units=2) == D("0.01")


def test_negative_zero_is_normalised() -> None:
    assert str(round_money(D("-0.001"), minor_units=2)) == "0.00"


def test_round_money_refuses_floats_and_unknown_modes() -> None:
    with pytest.raises(TypeError):
        round_money(0.125, minor_units=2)  # type: ignore[arg-type]  # a float on purpose: refused
    with pytest.raises(ValueError, match="not allowed"):
        round_money(D("0.125"), minor_units=2, rounding=ROUND_DOWN)
    with pytest.raises(ValueError, match="minor_units"):
        round_money(D("1"), minor_units=5)
    with pytest.raises(ValueError, match="finite"):
        round_money(D("NaN"), minor_units=2)


def test_quantize_rate_keeps_six_places() -> None:
    assert RATE_PLACES == 6
    assert str(quantize_rate(D("0.0025"))) == "0.002500"
    assert quantize_rate(D(1) / D(3)) == D("0.333333")
    assert quantize_rate(D("0.0000005")) == D("0.000001")  # HALF_UP
    assert quantize_rate(D("0.0000005"), rounding=ROUND_HALF_EVEN) == D("0.000000")


def test_minor_unit() -> None:
    assert minor_unit(0) == D("1")
    assert minor_unit(2) == D("0.01")
    assert minor_unit(3) == D("0.001")
    with pytest.raises(TypeError):
        minor_unit(True)  # a bool is an int to mypy: minor_unit refuses it at run time
