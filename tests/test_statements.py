"""Bank-statement parsing: real export layouts (tests/data/), every refusal with the question it asks, the
rows that are rejected one by one, fingerprints that make re-imports add nothing, and a round-trip property
over generated statements in every layout the parser claims to read."""

from __future__ import annotations

import csv
import io
import random
import re
import unicodedata
from dataclasses import astuple, dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from budget_mcp import statements
from budget_mcp.errors import InvalidInput
from budget_mcp.statements import (
    MAX_STATEMENT_BYTES,
    ColumnMapping,
    DateOrder,
    DecimalSeparator,
    ParsedStatement,
    RejectedRow,
    RowKind,
    SignConvention,
    StatementRow,
    parse_statement,
    statement_fingerprint,
)

DATA = Path(__file__).parent / "data"
D = date.fromisoformat
Row = tuple[int, str, str, str, str, str, str | None, str | None, str | None]


def parse(data: bytes | str, **options: object) -> ParsedStatement:
    options.setdefault("source", "checking")
    options.setdefault("default_currency", "EUR")
    return parse_statement(data, **options)  # type: ignore[arg-type]


def fixture(name: str, **options: object) -> ParsedStatement:
    return parse((DATA / name).read_bytes(), **options)


def rows(parsed: ParsedStatement) -> list[Row]:
    """Each row without its fingerprint; the amount as its exact digits (Decimal("4.5") == Decimal("4.50"))."""
    return [
        (r.line, r.spent_on.isoformat(), str(r.amount), r.kind, r.currency, r.description, r.merchant, r.category,
         r.notes)
        for r in parsed.rows
    ]  # fmt: skip


def refusal(data: bytes | str, **options: object) -> str:
    with pytest.raises(InvalidInput) as error:
        parse(data, **options)
    return str(error.value)


def one_amount(cell: str, **options: object) -> tuple[str, str, str]:
    """Amount, kind and currency of a one-row file whose amount cell is ``cell``."""
    options.setdefault("sign_convention", "negative_is_expense")
    options.setdefault("decimal_separator", ".")
    quoted = '"' + cell.replace('"', '""') + '"'
    parsed = parse(f"Date,Description,Amount\n2025-03-04,Shop,{quoted}\n", **options)
    assert parsed.rejected == (), parsed.rejected
    (row,) = parsed.rows
    return str(row.amount), row.kind, row.currency


def one_date(cell: str, **options: object) -> date:
    parsed = parse(f'Date,Description,Amount\n"{cell}",Shop,-1.00\n', **options)
    assert parsed.rejected == (), parsed.rejected
    return parsed.rows[0].spent_on


def rejection(amount_cell: str, **options: object) -> str:
    options.setdefault("sign_convention", "negative_is_expense")
    options.setdefault("decimal_separator", ".")
    quoted = '"' + amount_cell.replace('"', '""') + '"'
    parsed = parse(f"Date,Description,Amount\n2025-03-04,Shop,{quoted}\n2025-03-05,Shop,-1.00\n", **options)
    assert len(parsed.rows) == 1
    (rejected,) = parsed.rejected
    assert rejected.line == 2
    return rejected.reason


# --- real export layouts --------------------------------------------------------------------------------


def test_a_us_credit_card_export_reads_charges_as_expenses_and_payments_as_credits() -> None:
    parsed = fixture("us_credit_card.csv", default_currency="USD")
    assert (parsed.encoding, parsed.delimiter, parsed.header_line) == ("utf-8", ",", 1)
    assert parsed.header == ("Date", "Description", "Amount")
    assert parsed.mapping == ColumnMapping(date="Date", amount="Amount", description="Description")
    assert parsed.mapping_inferred
    assert (parsed.date_order, parsed.decimal_separator, parsed.sign_convention) == (
        "month_first",
        ".",
        "positive_is_expense",
    )
    assert rows(parsed) == [
        (2, "2025-03-02", "5.75", "expense", "USD", "STARBUCKS STORE 10432 SEATTLE WA", None, None, None),
        (3, "2025-03-03", "42.99", "expense", "USD", "AMAZON.COM*2K4LL7 AMZN.COM/BILL WA", None, None, None),
        (4, "2025-03-05", "87.12", "expense", "USD", "WHOLE FOODS MARKET #10234, AUSTIN TX", None, None, None),
        (5, "2025-03-14", "38.40", "expense", "USD", "SHELL OIL 57442", None, None, None),
        (6, "2025-03-15", "500.00", "credit", "USD", "PAYMENT - THANK YOU", None, None, None),
        (7, "2025-03-20", "12.99", "credit", "USD", "AMAZON.COM REFUND", None, None, None),
        (8, "2025-03-22", "1204.30", "expense", "USD", "DELTA AIR LINES", None, None, None),
        (9, "2025-03-28", "15.49", "expense", "USD", "NETFLIX.COM", None, None, None),
    ]
    assert parsed.rejected == ()


def test_a_uk_current_account_after_its_preamble_reads_paid_out_and_paid_in_as_two_columns() -> None:
    parsed = fixture("uk_current_account.csv", default_currency="EUR")  # the £ decides, not the default
    assert (parsed.delimiter, parsed.header_line, parsed.date_order, parsed.sign_convention) == (
        ",",
        5,
        "day_first",
        None,
    )
    assert parsed.mapping == ColumnMapping(date="Date", debit="Paid out", credit="Paid in", description="Description")
    assert rows(parsed) == [
        (6, "2025-03-01", "23.45", "expense", "GBP", "TESCO STORES 2231", None, None, None),
        (7, "2025-03-03", "38.00", "expense", "GBP", "THAMES WATER", None, None, None),
        (8, "2025-03-05", "2150.00", "credit", "GBP", "ACME LTD SALARY", None, None, None),
        (9, "2025-03-12", "6.20", "expense", "GBP", "PRET A MANGER", None, None, None),
        (10, "2025-03-18", "1100.00", "expense", "GBP", "RENT - FLAT 2", None, None, None),
        (11, "2025-03-21", "4.50", "credit", "GBP", "TESCO STORES 2231 REFUND", None, None, None),
        (12, "2025-03-25", "2.80", "expense", "GBP", "TFL TRAVEL CH", None, None, None),
    ]
    assert parsed.rejected == ()


def test_a_sparkasse_export_in_latin_1_with_decimal_commas_and_thousands_dots_is_read() -> None:
    parsed = fixture("sparkasse.csv", default_currency="USD")  # the Währung column decides
    assert (parsed.encoding, parsed.delimiter, parsed.date_order, parsed.decimal_separator) == (
        "latin-1",
        ";",
        "day_first",
        ",",
    )
    assert parsed.sign_convention == "negative_is_expense"
    assert parsed.mapping == ColumnMapping(
        date="Buchungstag",
        amount="Betrag",
        description="Verwendungszweck",
        merchant="Auftraggeber/Empfänger",
        currency="Währung",
        notes="Buchungstext",
    )
    assert rows(parsed) == [
        (2, "2025-03-03", "54.37", "expense", "EUR", "REWE SAGT DANKE 2025-03-01T18:22", "REWE Markt GmbH", None,
         "KARTENZAHLUNG"),
        (3, "2025-03-03", "86.00", "expense", "EUR", "Abschlag Strom März 2025", "Stadtwerke München", None,
         "LASTSCHRIFT"),
        (4, "2025-03-04", "4.80", "expense", "EUR", "Brötchen", "Bäckerei Müller", None, "KARTENZAHLUNG"),
        (5, "2025-03-14", "2845.12", "credit", "EUR", "Gehalt März 2025", "Muster GmbH", None, "GUTSCHRIFT"),
        (6, "2025-03-17", "1250.00", "expense", "EUR", "Miete April 2025", "Hausverwaltung Schmidt", None,
         "DAUERAUFTRAG"),
        (7, "2025-03-20", "39.95", "credit", "EUR", "Rücksendung Erstattung", "Zalando SE", None, "GUTSCHRIFT"),
        (8, "2025-03-28", "4.95", "expense", "EUR", "Kontoführungsentgelt", None, None, "ABSCHLUSS"),
    ]  # fmt: skip


def test_a_french_export_with_bom_negative_debits_and_space_thousands_is_read() -> None:
    parsed = fixture("french_bank.csv")
    assert (parsed.encoding, parsed.delimiter, parsed.decimal_separator, parsed.sign_convention) == (
        "utf-8-sig",
        ";",
        ",",
        None,
    )
    assert parsed.header[0] == "Date opération"  # no BOM left in the first cell
    assert parsed.mapping == ColumnMapping(date="Date opération", debit="Débit", credit="Crédit", description="Libellé")
    assert rows(parsed) == [
        (2, "2025-03-03", "23.45", "expense", "EUR", "CB CARREFOUR CITY 01/03", None, None, None),
        (3, "2025-03-05", "72.10", "expense", "EUR", "PRLV SEPA EDF CLIENTS PARTICULIERS", None, None, None),
        (4, "2025-03-10", "2450.00", "credit", "EUR", "VIR SEPA RECU /DE EMPLOYEUR SA /MOTIF SALAIRE MARS", None,
         None, None),
        (5, "2025-03-15", "3.90", "expense", "EUR", "CB BOULANGERIE PAUL 14/03", None, None, None),
        (6, "2025-03-18", "1050.00", "expense", "EUR", "PRLV SEPA LOYER", None, None, None),
        (7, "2025-03-22", "19.99", "credit", "EUR", "AVOIR CB FNAC 20/03", None, None, None),
    ]  # fmt: skip


def test_a_budget_app_tab_export_keeps_a_quoted_tab_and_newline_inside_one_description() -> None:
    parsed = fixture("budget_app.tsv", default_currency="GBP")
    assert (parsed.delimiter, parsed.date_order, parsed.sign_convention) == ("\t", "iso", "negative_is_expense")
    assert parsed.mapping == ColumnMapping(
        date="Date",
        amount="Amount",
        description="Description",
        merchant="Merchant",
        category="Category",
        currency="Currency",
        notes="Notes",
    )
    assert rows(parsed) == [
        (2, "2025-03-01", "4.50", "expense", "USD", "Flat white", "Blue Bottle Coffee", "Coffee", None),
        (3, "2025-03-02", "62.18", "expense", "USD", 'Weekly shop: milk, eggs and "good" bread', "Whole Foods",
         "Groceries", "receipt in email"),
        (5, "2025-03-04", "31.20", "expense", "EUR", "Ride to airport", "Uber", "Transport", "Lisbon trip"),
        (6, "2025-03-05", "3200.00", "credit", "USD", "Salary", "Acme Corp", "Income", None),
        (7, "2025-03-07", "1200", "expense", "JPY", "Ramen", "Ichiran", "Dining", "Tokyo"),
        (8, "2025-03-09", "59.99", "credit", "USD", "Returned headphones", "Amazon", "Shopping", "refund"),
    ]  # fmt: skip


def test_an_ing_export_takes_each_rows_direction_from_its_af_bij_column_and_the_currency_from_its_header() -> None:
    parsed = fixture("ing_nl.csv", default_currency="USD")
    assert (parsed.delimiter, parsed.date_order, parsed.decimal_separator, parsed.sign_convention) == (
        ",",
        "iso",
        ",",
        None,
    )
    assert parsed.mapping == ColumnMapping(
        date="Datum",
        amount="Bedrag (EUR)",
        description="Mededelingen",
        merchant="Naam / Omschrijving",
        direction="Af Bij",
    )
    assert rows(parsed) == [
        (2, "2025-03-03", "23.45", "expense", "EUR", "Pasvolgnr:001 03-03-2025 17:45", "Albert Heijn 1234 AMSTERDAM",
         None, None),
        (3, "2025-03-05", "62.40", "expense", "EUR", "Maandabonnement", "NS Groep IZ Nederlandse Spoorwegen", None,
         None),
        (4, "2025-03-10", "3125.00", "credit", "EUR", "Salaris maart", "Werkgever BV", None, None),
        (5, "2025-03-12", "24.99", "credit", "EUR", "Retour", "Bol.com", None, None),
    ]  # fmt: skip


def test_every_fixture_parses_the_same_twice_with_the_same_fingerprints() -> None:
    for name in ("us_credit_card.csv", "uk_current_account.csv", "sparkasse.csv", "french_bank.csv",
                 "budget_app.tsv", "ing_nl.csv"):  # fmt: skip
        first, second = fixture(name), fixture(name)
        assert first == second, name
        assert len({row.fingerprint for row in first.rows}) == len(first.rows), name
        assert all(re.fullmatch(r"[0-9a-f]{64}", row.fingerprint) for row in first.rows), name


# --- fingerprints ---------------------------------------------------------------------------------------


def test_two_identical_coffees_on_one_day_are_both_kept_with_different_fingerprints() -> None:
    parsed = fixture("duplicate_coffees.csv")
    coffee_1, coffee_2, bagel, next_day = parsed.rows
    assert astuple(coffee_1)[1:-1] == astuple(coffee_2)[1:-1]  # the same but for line and fingerprint
    assert len({coffee_1.fingerprint, coffee_2.fingerprint, bagel.fingerprint, next_day.fingerprint}) == 4
    assert coffee_1.fingerprint == statement_fingerprint(
        "checking", D("2025-03-04"), "EUR", Decimal("3.80"), "expense", "Coffee Corner", 1
    )
    assert coffee_2.fingerprint == statement_fingerprint(
        "checking", D("2025-03-04"), "EUR", Decimal("3.80"), "expense", "Coffee Corner", 2
    )
    assert next_day.fingerprint == statement_fingerprint(
        "checking", D("2025-03-05"), "EUR", Decimal("3.80"), "expense", "Coffee Corner", 1
    )


def test_importing_the_same_file_again_gives_the_same_fingerprints_so_it_adds_nothing() -> None:
    first = {row.fingerprint for row in fixture("duplicate_coffees.csv").rows}
    again = {row.fingerprint for row in fixture("duplicate_coffees.csv").rows}
    assert first == again and len(first) == 4


def test_an_overlapping_export_matches_the_rows_it_shares_with_an_earlier_one() -> None:
    earlier = parse("Date,Description,Amount\n2025-03-04,Coffee,-3.80\n2025-03-04,Coffee,-3.80\n")
    later = parse("Date,Description,Amount\n2025-03-04,Coffee,-3.80\n2025-03-04,Coffee,-3.80\n2025-03-05,Tea,-2.00\n")
    new = {row.fingerprint for row in later.rows} - {row.fingerprint for row in earlier.rows}
    assert [row.description for row in later.rows if row.fingerprint in new] == ["Tea"]


def test_fingerprints_ignore_case_spacing_and_trailing_zeros_but_not_the_source_or_kind() -> None:
    a = parse("Date,Description,Amount\n2025-03-04,Coffee  Corner,-4.5\n").rows[0]
    b = parse('Date,Description,Amount\n2025-03-04,"  coffee corner ",-4.50\n').rows[0]
    assert a.fingerprint == b.fingerprint
    assert parse("Date,Description,Amount\n2025-03-04,Coffee Corner,-4.5\n", source="savings").rows[0].fingerprint != (
        a.fingerprint
    )
    refund = parse(
        "Date,Description,Amount\n2025-03-04,Coffee Corner,4.5\n", sign_convention="negative_is_expense"
    ).rows[0]
    assert refund.kind == "credit" and refund.fingerprint != a.fingerprint
    assert statement_fingerprint("s", D("2025-01-01"), "EUR", Decimal("1E+2"), "expense", "x", 1) == (
        statement_fingerprint("s", D("2025-01-01"), "EUR", Decimal("100.00"), "expense", "X", 1)
    )


# --- refusals: each names the parameter that fixes the call -------------------------------------------


def test_ambiguous_dates_are_refused_with_a_question_and_read_once_the_order_is_given() -> None:
    message = refusal((DATA / "ambiguous_dates.csv").read_bytes())
    assert message == (
        "every date can be read day-first or month-first: dates such as '03/04/2025' (line 2) could mean "
        "3 April 2025 or March 4, 2025. Which is it? Call again with date_order='day_first' or "
        "date_order='month_first'"
    )
    day_first = fixture("ambiguous_dates.csv", date_order="day_first")
    assert [row.spent_on for row in day_first.rows] == [D("2025-04-03"), D("2025-04-05"), D("2025-04-11")]
    month_first = fixture("ambiguous_dates.csv", date_order="month_first")
    assert [row.spent_on for row in month_first.rows] == [D("2025-03-04"), D("2025-05-04"), D("2025-11-04")]
    assert month_first.date_order == "month_first"


def test_dates_whose_day_equals_their_month_need_no_order() -> None:
    parsed = parse("Date,Description,Amount\n01/01/2025,New year,-5.00\n02/02/2025,Groundhog,-3.00\n")
    assert [row.spent_on for row in parsed.rows] == [D("2025-01-01"), D("2025-02-02")]


def test_a_file_mixing_day_first_and_month_first_dates_is_refused() -> None:
    message = refusal("Date,Description,Amount\n25/03/2025,A,-1.00\n03/26/2025,B,-2.00\n")
    assert "the dates mix day-first ('25/03/2025' on line 2) and month-first ('03/26/2025' on line 3)" in message
    assert "date_order='day_first' or 'month_first'" in message
    parsed = parse("Date,Description,Amount\n25/03/2025,A,-1.00\n03/26/2025,B,-2.00\n", date_order="day_first")
    assert [row.line for row in parsed.rows] == [2]
    assert parsed.rejected == (RejectedRow(3, "date '03/26/2025' is not a valid day-first date"),)


def test_amounts_that_could_be_thousands_or_decimals_are_refused_with_a_question() -> None:
    data = 'Date,Description,Amount\n2025-03-04,Rent,"-1,234"\n2025-03-05,Car,"-2,345"\n'
    message = refusal(data)
    assert message.startswith("amounts such as '1,234' could be thousands or decimals")
    assert "decimal_separator='.'" in message and "decimal_separator=','" in message
    assert [str(row.amount) for row in parse(data, decimal_separator=".").rows] == ["1234", "2345"]
    as_decimals = parse(data, decimal_separator=",")  # 1.234 and 2.345 euros: too many decimals
    assert as_decimals.rows == ()
    assert as_decimals.rejected[0] == RejectedRow(
        2, "amount 1.234 has too many decimals: EUR allows at most 2 decimal places"
    )


def test_as_many_decimal_commas_as_decimal_points_is_refused() -> None:
    message = refusal('Date,Description,Amount\n2025-03-04,A,"-4,50"\n2025-03-05,B,-3.20\n')
    assert "as many amounts use ',' as '.' for decimals" in message and "decimal_separator" in message


def test_the_decimal_separator_most_amounts_use_wins_and_the_odd_one_out_is_rejected() -> None:
    parsed = parse('Date,Description,Amount\n2025-03-04,A,-4.50\n2025-03-05,B,-3.20\n2025-03-06,C,"-1,5"\n')
    assert parsed.decimal_separator == "."
    assert parsed.rejected == (RejectedRow(4, "amount '-1,5' is not a number written with decimal separator '.'"),)


def test_as_many_negative_as_positive_amounts_is_refused_with_a_question() -> None:
    message = refusal("Date,Description,Amount\n2025-03-04,Shop,-4.50\n2025-03-05,Refund,4.50\n")
    assert message.startswith("the file has as many negative as positive amounts (1 each)")
    assert "sign_convention='negative_is_expense'" in message and "sign_convention='positive_is_expense'" in message
    parsed = parse(
        "Date,Description,Amount\n2025-03-04,Shop,-4.50\n2025-03-05,Refund,4.50\n",
        sign_convention="negative_is_expense",
    )
    assert [row.kind for row in parsed.rows] == ["expense", "credit"]


def test_binary_garbage_is_refused_as_not_a_csv_text_file() -> None:
    garbage = random.Random(20250304).randbytes(4096) + b"\x00"
    assert refusal(garbage).startswith(
        "this does not look like a CSV text file (it contains binary data such as NUL bytes)"
    )
    without_nul = bytes(b for b in random.Random(7).randbytes(4096) if b)
    assert "does not look like a CSV text file" in refusal(without_nul)
    assert "does not look like a CSV text file" in refusal("Date,Amount\n2025-03-04,\x00\n")


@pytest.mark.parametrize(
    ("start", "what"),
    [
        (b"%PDF-1.7\n", "a PDF document"),
        (b"PK\x03\x04\x14\x00", "a ZIP archive (an .xlsx or .ods spreadsheet?)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1", "an old Excel (.xls) or Word file"),
    ],
)
def test_a_pdf_or_spreadsheet_is_refused_by_name(start: bytes, what: str) -> None:
    message = refusal(start + b"whatever follows")
    assert message.startswith(f"this does not look like a CSV text file (it contains {what})")
    assert "export the statement from the bank as CSV" in message


@pytest.mark.parametrize("data", [b"", b"   \r\n\n", "", "\ufeff"])
def test_an_empty_file_is_refused(data: bytes | str) -> None:
    assert refusal(data).startswith("the statement is empty")


def test_a_file_with_only_a_header_is_refused() -> None:
    assert refusal(b"Date,Description,Amount\r\n\r\n") == (
        "the statement has a header (line 1) but no transaction rows; pass the whole export"
    )


def test_a_file_without_a_recognised_header_is_refused_listing_its_cells_and_the_mapping_fields() -> None:
    message = refusal("Posted,Payee,Value in EUR\n2025-03-04,Shop,-4.50\n")
    assert message.startswith(
        "could not find the header row: no row names a date and an amount (or debit/credit) column"
    )
    assert "Line 1 has: 'Posted', 'Payee', 'Value in EUR'" in message
    assert "mapping" in message and "date, amount or debit/credit, description" in message
    parsed = parse("Posted,Payee,Value in EUR\n2025-03-04,Shop,-4.50\n",
                   mapping=ColumnMapping(date="posted", amount="VALUE IN EUR", merchant=" Payee "))  # fmt: skip
    assert not parsed.mapping_inferred
    assert rows(parsed) == [(2, "2025-03-04", "4.50", "expense", "EUR", "Shop", "Shop", None, None)]


def test_a_message_never_repeats_more_than_sixty_characters_of_a_cell() -> None:
    long_cell = "X" * 500
    message = refusal(f"{long_cell},{long_cell}\n1,2\n")
    assert "X" * 61 not in message and "X" * 59 in message
    parsed = parse(f"Date,Description,Amount\n{long_cell},A,-1.00\n2025-03-04,B,-1.00\n")
    assert "X" * 61 not in parsed.rejected[0].reason


def test_a_mapping_naming_a_column_the_file_lacks_is_refused_listing_the_header() -> None:
    message = refusal(
        (DATA / "uk_current_account.csv").read_bytes(),
        mapping=ColumnMapping(date="Date", debit="Money out", credit="Paid in"),
    )
    assert message == (
        "mapping names columns this file's header does not have: debit='Money out'. The header (line 5) has: "
        "'Date', 'Type', 'Description', 'Paid out', 'Paid in', 'Balance'; call again with mapping fields set "
        "to these names"
    )


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (ColumnMapping(date="Date"), "mapping needs either amount (one signed amount column) or debit and/or credit"),
        (ColumnMapping(date="Date", amount="Amount", debit="Out"), "not both kinds"),
        (ColumnMapping(date="Date", amount=" "), "mapping.amount is empty"),
        (ColumnMapping(date="Date", debit="Out", direction="Af Bij"), "mapping.direction"),
    ],
)
def test_a_mapping_without_exactly_one_kind_of_amount_column_is_refused(mapping: ColumnMapping, expected: str) -> None:
    assert expected in refusal("Date,Amount\n2025-03-04,-1.00\n", mapping=mapping)


def test_a_statement_over_the_size_limit_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    big = tmp_path / "fifty.csv"
    with big.open("wb") as out:
        out.write(b"Date,Description,Amount\n")
        chunk = b"2025-03-04,Coffee,-3.80\n" * 43_691  # about 1 MiB
        for _ in range(50):
            out.write(chunk)
    assert big.stat().st_size > 50 * 1024 * 1024
    message = refusal(big.read_bytes())
    assert message.startswith(f"the statement is {big.stat().st_size:,} bytes;")
    assert f"the most one import takes is {MAX_STATEMENT_BYTES:,} bytes (20 MiB)" in message
    assert "split the export into smaller files" in message
    assert refusal("x" * (MAX_STATEMENT_BYTES + 1)).startswith("the statement is 20,971,521 characters")


def test_more_rows_than_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statements, "MAX_ROWS", 3)
    data = "Date,Description,Amount\n" + "2025-03-04,Coffee,-3.80\n\n" * 4
    assert refusal(data) == (
        "the statement has more than 3 rows after its header (line 1); split the export into smaller files "
        "(e.g. one per year) and import each"
    )
    assert len(parse("Date,Description,Amount\n" + "2025-03-04,Coffee,-3.80\n\n" * 3).rows) == 3


def test_a_quote_that_is_never_closed_is_refused_instead_of_swallowing_the_rest() -> None:
    message = refusal('Date,Description,Amount\n2025-03-04,"Coffee,-3.80\n2025-03-05,Tea,-2.00\n')
    assert message.startswith("line 2 opens a quoted field that is never closed")


def test_a_bad_default_currency_or_an_empty_source_is_refused_naming_the_argument() -> None:
    assert refusal("Date,Amount\n2025-03-04,-1\n", default_currency="EURO").startswith("default_currency: unknown")
    assert refusal("Date,Amount\n2025-03-04,-1\n", source="  ").startswith("source must name the account")


def test_a_file_without_any_delimiter_is_refused() -> None:
    assert refusal("just one line of text\nand another\n").startswith(
        "found no columns: no line splits into fields at ',', ';' or tab"
    )


# --- rows rejected one by one -----------------------------------------------------------------------------


def test_ragged_rows_are_rejected_with_their_field_counts_and_the_rest_is_kept() -> None:
    parsed = fixture("ragged_rows.csv")
    assert rows(parsed) == [
        (2, "2025-03-01", "45.10", "expense", "EUR", "Groceries", None, None, None),
        (5, "2025-03-04", "23.99", "expense", "EUR", "Books", None, None, None),  # a trailing delimiter is fine
        (6, "2025-03-05", "18.40", "expense", "EUR", "Train, return", None, None, None),
    ]
    assert parsed.rejected == (
        RejectedRow(3, "row has 4 fields, the header has 3"),
        RejectedRow(4, "row has 2 fields, the header has 3"),
        RejectedRow(8, "date 'Total' is not a date (expected e.g. 2025-03-04, 04/03/2025 or 4 Mar 2025)"),
    )


def test_bad_dates_are_rejected_one_by_one() -> None:
    parsed = fixture("bad_dates.csv")
    assert [(row.line, row.spent_on) for row in parsed.rows] == [(2, D("2025-03-14")), (7, D("2025-03-15"))]
    assert parsed.rejected == (
        RejectedRow(3, "date '31/02/2025' is not a valid day-first date"),
        RejectedRow(4, "date '2025-13-01' is not a valid date"),
        RejectedRow(5, "date 'yesterday' is not a date (expected e.g. 2025-03-04, 04/03/2025 or 4 Mar 2025)"),
        RejectedRow(6, "the date is empty"),
    )


@pytest.mark.parametrize(
    ("cell", "options", "reason"),
    [
        ("abc", {}, "amount 'abc' is not a number"),
        ("", {}, "amount is empty"),
        ("0.00", {}, "amount '0.00' is zero: there is nothing to record"),
        ("12.5", {"default_currency": "JPY"}, "amount 12.5 has too many decimals: JPY allows no decimals"),
        ("4.505", {}, "amount 4.505 has too many decimals: EUR allows at most 2 decimal places"),
        ("2000000000.00", {}, "amount 2000000000.00 is too large; the most one expense may be is 1,000,000,000"),
        ("12.50 XYZ", {}, "the amount names an unknown currency 'XYZ'"),
        ("kr 50", {}, "the amount is in 'kr', which may be SEK, NOK, DKK or ISK: pass that as default_currency"),
        ("1.2.3", {}, "amount '1.2.3' is not a number written with decimal separator '.'"),
        ("--12", {}, "amount '--12' is not a number"),
        ("(12.50", {}, "amount '(12.50' is not a number"),
        ("1" * 80, {}, f"amount '{'1' * 59}…' is not a number written with decimal separator '.'"),
    ],
)
def test_an_amount_that_is_not_a_valid_amount_rejects_its_row(cell: str, options: dict[str, str], reason: str) -> None:
    assert rejection(cell, **options) == reason


def test_huge_cells_are_rejected_without_being_searched_character_by_character() -> None:
    # long runs of spaces and dots would make the amount and date patterns backtrack for minutes
    amount, day = "-" + " " * 50_000 + "x", "4" + ". " * 25_000 + "Mar 2025"
    parsed = parse(f'Date,Description,Amount\n2025-03-04,A,"{amount}"\n"{day}",B,-1.00\n2025-03-06,C,-2.00\n')
    assert [row.line for row in parsed.rows] == [4]
    assert [reason.split(" ", 1)[0] for _, reason in map(astuple, parsed.rejected)] == ["amount", "date"]


def test_debit_and_credit_rows_need_exactly_one_of_the_two() -> None:
    data = (
        "Date,Details,Debit,Credit\n"
        "2025-03-01,Both,12.00,3.00\n"
        "2025-03-02,Neither,,\n"
        "2025-03-03,Zero credit,12.00,0.00\n"
        "2025-03-04,Negative debit,-7.10,\n"
        "2025-03-05,Only credit,,5.00\n"
        "2025-03-06,Zeros,0.00,0.00\n"
    )
    parsed = parse(data)
    assert [(row.line, str(row.amount), row.kind) for row in parsed.rows] == [
        (4, "12.00", "expense"),
        (5, "7.10", "expense"),
        (6, "5.00", "credit"),
    ]
    assert parsed.rejected == (
        RejectedRow(2, "the row has both a debit ('12.00') and a credit ('3.00') amount; expected one of them"),
        RejectedRow(3, "the row has neither a debit nor a credit amount"),
        RejectedRow(7, "debit '0.00' is zero: there is nothing to record"),
    )


def test_an_unknown_currency_in_the_currency_column_or_one_that_contradicts_the_amount_rejects_the_row() -> None:
    parsed = parse(
        "Date,Description,Amount,Currency\n"
        "2025-03-01,A,-1.00,ZZZ\n"
        "2025-03-02,B,-$1.00,EUR\n"
        "2025-03-03,C,-1.00,\n"
        "2025-03-04,D,-1.00,gbp\n"
        "2025-03-05,E,-1.00,€\n",
        default_currency="CHF",
    )
    assert [(row.line, row.currency) for row in parsed.rows] == [(4, "CHF"), (5, "GBP"), (6, "EUR")]
    assert parsed.rejected == (
        RejectedRow(2, "currency 'ZZZ' is not an ISO 4217 currency code"),
        RejectedRow(3, "the amount is in USD but the currency column says EUR"),
    )


def test_an_unknown_direction_rejects_its_row() -> None:
    parsed = parse(
        "Date,Description,Amount,Debit/Credit\n2025-03-01,A,1.00,D\n2025-03-02,B,2.00,C\n2025-03-03,C,3.00,?\n"
    )
    assert [(row.line, row.kind) for row in parsed.rows] == [(2, "expense"), (3, "credit")]
    assert parsed.rejected == (
        RejectedRow(4, "direction '?' is neither debit nor credit (expected e.g. Af/Bij, D/C, DR/CR or Debit/Credit)"),
    )


# --- cells: amounts, dates, text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "options", "expected"),
    [
        ("-12.50", {}, ("12.50", "expense", "EUR")),
        ("+12.50", {}, ("12.50", "credit", "EUR")),
        ("12.50", {}, ("12.50", "credit", "EUR")),
        ("(12.50)", {}, ("12.50", "expense", "EUR")),
        ("12.50-", {}, ("12.50", "expense", "EUR")),
        ("\u221212.50", {}, ("12.50", "expense", "EUR")),
        ("12.50 CR", {}, ("12.50", "credit", "EUR")),
        ("12.50DR", {"sign_convention": "positive_is_expense"}, ("12.50", "expense", "EUR")),
        ("-12.50 CR", {}, ("12.50", "credit", "EUR")),
        ("€4,50", {"decimal_separator": ","}, ("4.50", "credit", "EUR")),
        ("-4,50 €", {"decimal_separator": ","}, ("4.50", "expense", "EUR")),
        ("4,5", {"decimal_separator": ","}, ("4.5", "credit", "EUR")),
        ("-4.50 EUR", {"default_currency": "USD"}, ("4.50", "expense", "EUR")),
        ("usd -4.50", {}, ("4.50", "expense", "USD")),
        ("-$4.50", {"default_currency": "EUR"}, ("4.50", "expense", "USD")),
        ("$-4.50", {"default_currency": "CAD"}, ("4.50", "expense", "CAD")),
        ("-US$4.50", {"default_currency": "CAD"}, ("4.50", "expense", "USD")),
        ("-£1,234.56", {}, ("1234.56", "expense", "GBP")),
        ("-CHF 1'234.50", {}, ("1234.50", "expense", "CHF")),
        ("-1 234,56", {"decimal_separator": ","}, ("1234.56", "expense", "EUR")),
        ("-1\u00a0234,56", {"decimal_separator": ","}, ("1234.56", "expense", "EUR")),
        ("-1.234.567,89", {"decimal_separator": ","}, ("1234567.89", "expense", "EUR")),
        ("-1,23,456.00", {"default_currency": "INR"}, ("123456.00", "expense", "INR")),
        ("-¥1,200", {}, ("1200", "expense", "JPY")),
        ("-1200 kr", {"default_currency": "SEK"}, ("1200", "expense", "SEK")),
        ("-0,50", {"decimal_separator": ","}, ("0.50", "expense", "EUR")),
        ("-.75", {}, ("0.75", "expense", "EUR")),
        ("-12.345", {"default_currency": "KWD"}, ("12.345", "expense", "KWD")),
        ("-12.300", {}, ("12.300", "expense", "EUR")),
    ],
)
def test_amounts_are_read_exactly_with_their_sign_and_currency(
    cell: str, options: dict[str, str], expected: tuple[str, str, str]
) -> None:
    assert one_amount(cell, **options) == expected


@pytest.mark.parametrize(
    ("cell", "order", "expected"),
    [
        ("2025-03-04", None, "2025-03-04"),
        ("2025/03/04", None, "2025-03-04"),
        ("2025.3.4", None, "2025-03-04"),
        ("20250304", None, "2025-03-04"),
        ("2025-03-04T13:45:00Z", None, "2025-03-04"),
        ("2025-03-04 13:45", None, "2025-03-04"),
        ("04/03/2025", "day_first", "2025-03-04"),
        ("04.03.2025", "day_first", "2025-03-04"),
        ("4-3-2025", "day_first", "2025-03-04"),
        ("04/03/25", "day_first", "2025-03-04"),
        ("04.03.2025 13:45", "day_first", "2025-03-04"),
        ("03/04/2025", "month_first", "2025-03-04"),
        ("3/4/25", "month_first", "2025-03-04"),
        ("04 Mar 2025", None, "2025-03-04"),
        ("4-Mar-2025", None, "2025-03-04"),
        ("4-Mar-25", None, "2025-03-04"),
        ("Mar 4, 2025", None, "2025-03-04"),
        ("March 4th, 2025", None, "2025-03-04"),
        ("4. März 2025", None, "2025-03-04"),
        ("4 mars 2025", None, "2025-03-04"),
        ("04-déc.-2025", None, "2025-12-04"),
        ("4 dic 2025", None, "2025-12-04"),
        ("04-Okt-2025", None, "2025-10-04"),
    ],
)
def test_dates_are_read_in_every_common_form(cell: str, order: str | None, expected: str) -> None:
    assert one_date(cell, date_order=order) == D(expected)


def test_an_unknown_month_name_or_a_year_out_of_range_rejects_the_row() -> None:
    parsed = parse("Date,Description,Amount\n04 Foo 2025,A,-1.00\n1899-12-31,B,-1.00\n2025-03-04,C,-1.00\n")
    assert parsed.rejected == (
        RejectedRow(2, "date '04 Foo 2025' has a month name this parser does not know ('Foo')"),
        RejectedRow(3, "date '1899-12-31' is out of range (years 1900 to 2999)"),
    )


def test_numeric_dates_are_rejected_when_date_order_iso_is_given() -> None:
    parsed = parse("Date,Description,Amount\n04/03/2025,A,-1.00\n2025-03-05,B,-1.00\n", date_order="iso")
    assert parsed.rejected == (RejectedRow(2, "date '04/03/2025' is not written YYYY-MM-DD, as date_order='iso' says"),)


def test_text_cells_are_collapsed_to_one_line_and_control_characters_dropped() -> None:
    parsed = parse('Date,Description,Notes,Amount\n2025-03-04,"  Two\r\n lines\x07 here ","a\n\n  b\x01c ",-1.00\n')
    (row,) = parsed.rows
    assert (row.description, row.notes) == ("Two lines here", "a\nb c")


def test_the_description_falls_back_to_the_payee_and_then_to_the_memo() -> None:
    parsed = parse(
        "Date,Payee,Memo,Amount\n2025-03-04,Corner Shop,milk,-1.00\n2025-03-05,,bread,-2.00\n",
    )
    assert parsed.mapping == ColumnMapping(date="Date", amount="Amount", description="Memo", merchant="Payee")
    parsed = parse("Date,Payee,Amount\n2025-03-04,Corner Shop,-1.00\n")
    assert [(row.description, row.merchant) for row in parsed.rows] == [("Corner Shop", "Corner Shop")]
    parsed = parse("Date,Description,Memo,Amount\n2025-03-04,,bread,-1.00\n")
    assert [(row.description, row.notes) for row in parsed.rows] == [("bread", "bread")]
    parsed = parse("Date,Amount\n2025-03-04,-1.00\n")
    assert parsed.rows[0].description == ""


@pytest.mark.parametrize(
    ("header", "mapping"),
    [
        ("Transaction Date,Transaction Description,Debit Amount,Credit Amount",
         ColumnMapping(date="Transaction Date", debit="Debit Amount", credit="Credit Amount",
                       description="Transaction Description")),
        ("Posting Date;Details;Withdrawals;Deposits;Category",
         ColumnMapping(date="Posting Date", debit="Withdrawals", credit="Deposits", description="Details",
                       category="Category")),
        ("Buchungsdatum\tEmpfänger\tBetrag (EUR)\tKategorie",
         ColumnMapping(date="Buchungsdatum", amount="Betrag (EUR)", merchant="Empfänger", category="Kategorie")),
        ("Fecha,Concepto,Importe,Divisa",
         ColumnMapping(date="Fecha", amount="Importe", description="Concepto", currency="Divisa")),
        ("Boekdatum;Omschrijving;Bedrag;Valuta",
         ColumnMapping(date="Boekdatum", amount="Bedrag", description="Omschrijving", currency="Valuta")),
        ("Completed Date,Description,Amount,Currency,Balance",
         ColumnMapping(date="Completed Date", amount="Amount", description="Description", currency="Currency")),
        ("Booking date,Value date,Counterparty,Reference,Money out,Money in",
         ColumnMapping(date="Booking date", debit="Money out", credit="Money in", description="Reference",
                       merchant="Counterparty")),
    ],
)  # fmt: skip
def test_common_header_names_in_several_languages_are_recognised(header: str, mapping: ColumnMapping) -> None:
    delimiter = next(d for d in ("\t", ";", ",") if d in header)
    cells = header.split(delimiter)
    values = {"Transaction Date": "2025-03-04", "Posting Date": "2025-03-04", "Buchungsdatum": "2025-03-04",
              "Fecha": "2025-03-04", "Boekdatum": "2025-03-04", "Completed Date": "2025-03-04",
              "Booking date": "2025-03-04", "Value date": "2025-03-04"}  # fmt: skip
    row = delimiter.join(values.get(cell, "-1" if cell in (mapping.amount, mapping.debit) else "") for cell in cells)
    parsed = parse(f"{header}\n{row}\n")
    assert parsed.mapping == mapping
    assert parsed.rows[0].spent_on == D("2025-03-04")


def test_a_currency_named_in_the_amount_header_is_the_rows_currency() -> None:
    parsed = parse("Date,Description,Amount (GBP)\n2025-03-04,Tea,-2.00\n", default_currency="EUR")
    assert parsed.rows[0].currency == "GBP"
    parsed = parse("Date,Description,Amount in USD\n2025-03-04,Tea,-2.00\n", default_currency="EUR")
    assert parsed.rows[0].currency == "USD"


def test_blank_rows_and_rows_of_empty_fields_are_skipped_silently() -> None:
    parsed = parse("Date,Description,Amount\n\n2025-03-04,Tea,-2.00\n,,\n  ,  , \n2025-03-05,Tea,-2.00\n")
    assert [row.line for row in parsed.rows] == [3, 6]
    assert parsed.rejected == ()


def test_a_windows_1252_file_is_read_with_its_euro_signs() -> None:
    data = "Datum;Beschreibung;Betrag\n14.03.2025;Café „Zentral“;-4,50 €\n15.03.2025;Bäcker;-3,20 €\n"
    parsed = parse(data.encode("cp1252"), default_currency="USD")
    assert parsed.encoding == "cp1252"
    assert [(row.description, str(row.amount), row.currency) for row in parsed.rows] == [
        ("Café „Zentral“", "4.50", "EUR"),
        ("Bäcker", "3.20", "EUR"),
    ]


def test_a_utf_16_export_is_read() -> None:
    parsed = parse("Date\tDescription\tAmount\r\n2025-03-04\tTea\t-2.00\r\n".encode("utf-16"))
    assert (parsed.encoding, parsed.delimiter, len(parsed.rows)) == ("utf-16", "\t", 1)


def test_text_already_decoded_is_read_as_is() -> None:
    parsed = parse("\ufeffDate,Description,Amount\n2025-03-04,Tea,-2.00\n")
    assert (parsed.encoding, parsed.header[0]) == ("text", "Date")


def test_a_delimiter_inside_multi_line_quoted_fields_does_not_fool_the_sniffer() -> None:
    description = '"a,b\nc,d\ne,f"'
    data = "Date\tDescription\tAmount\n" + "".join(f"2025-03-0{i}\t{description}\t-1.00\n" for i in range(1, 8))
    parsed = parse(data)
    assert parsed.delimiter == "\t"
    assert [row.line for row in parsed.rows] == [2, 5, 8, 11, 14, 17, 20]
    assert parsed.rows[0].description == "a,b c,d e,f"


def test_a_large_statement_parses_every_row_with_unique_fingerprints() -> None:
    rng = random.Random(5)
    lines = ["Date;Payee;Memo;Category;Amount"]
    for i in range(5_000):
        day = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
        cents = rng.randrange(1, 100_000)
        lines.append(f"{day:%d.%m.%Y};Shop {i % 40};Coffee {i};Food;-{cents // 100},{cents % 100:02d}")
    lines += lines[1:101]  # the first hundred rows again: identical rows, numbered 2
    parsed = parse("\n".join(lines).encode())
    assert (parsed.date_order, parsed.decimal_separator, parsed.sign_convention) == (
        "day_first",
        ",",
        "negative_is_expense",
    )
    assert len(parsed.rows) == 5_100 and parsed.rejected == ()
    assert len({row.fingerprint for row in parsed.rows}) == 5_100
    assert astuple(parsed.rows[5_000])[1:-1] == astuple(parsed.rows[0])[1:-1]


# --- the round trip ---------------------------------------------------------------------------------------

MINOR_DIGITS = {"EUR": 2, "USD": 2, "JPY": 0, "KWD": 3}
DATE_FORMATS = {"iso": ["%Y-%m-%d", "%Y/%m/%d"], "day_first": ["%d/%m/%Y", "%d.%m.%Y", "%d-%m-%y"],
                "month_first": ["%m/%d/%Y", "%m-%d-%Y"]}  # fmt: skip
TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cc", "Cs")),
        st.sampled_from(['"', ",", ";", "\t", "\n", "\r", " ", "'", "€", "é", "ß"]),
    ),
    max_size=30,
)
Transaction = tuple[date, int, RowKind, str]  # day, minor units, kind, description


@dataclass(frozen=True)
class Layout:
    """How a bank writes its export: the choices the parser must read back."""

    currency: str
    delimiter: str
    decimal_separator: DecimalSeparator
    sign_convention: SignConvention
    date_order: DateOrder
    date_format: str
    thousands: bool  # 1,234.56 rather than 1234.56
    bom: bool
    line_end: str
    quote_all: bool


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    date_order: DateOrder = draw(st.sampled_from(["iso", "day_first", "month_first"]))
    return Layout(
        currency=draw(st.sampled_from(sorted(MINOR_DIGITS))),
        delimiter=draw(st.sampled_from([",", ";", "\t"])),
        decimal_separator=draw(st.sampled_from([".", ","])),
        sign_convention=draw(st.sampled_from(["negative_is_expense", "positive_is_expense"])),
        date_order=date_order,
        date_format=draw(st.sampled_from(DATE_FORMATS[date_order])),
        thousands=draw(st.booleans()),
        bom=draw(st.booleans()),
        line_end=draw(st.sampled_from(["\n", "\r\n"])),
        quote_all=draw(st.booleans()),
    )


@st.composite
def transaction_lists(draw: st.DrawFn) -> list[Transaction]:
    transactions: list[Transaction] = draw(
        st.lists(
            st.tuples(
                st.dates(date(2000, 1, 1), date(2099, 12, 31)),  # two-digit years are 20xx
                st.integers(1, 10**9),  # minor units: at most 10,000,000.00 EUR, 1,000,000,000 JPY
                st.sampled_from(["expense", "credit"]),
                TEXT,
            ),
            min_size=1,
            max_size=20,
        )
    )
    repeats = draw(st.lists(st.integers(0, len(transactions) - 1), max_size=5))
    return transactions + [transactions[i] for i in repeats]  # identical rows too


def write_statement(layout: Layout, transactions: list[Transaction]) -> tuple[bytes, list[tuple[object, ...]]]:
    """The CSV bytes a bank would write and the rows that must come back:
    (line, date, amount as written, kind, description collapsed to one line)."""
    digits = MINOR_DIGITS[layout.currency]
    out = io.StringIO(newline="")
    writer = csv.writer(
        out,
        delimiter=layout.delimiter,
        lineterminator=layout.line_end,
        quoting=csv.QUOTE_ALL if layout.quote_all else csv.QUOTE_MINIMAL,
    )
    writer.writerow(["Date", "Description", "Amount"])
    expected: list[tuple[object, ...]] = []
    for spent_on, minor, kind, description in transactions:
        if layout.line_end == "\n" and not layout.quote_all:
            description = description.replace("\r", "\n")  # csv.writer leaves a lone CR unquoted then
        line = len(io.StringIO(out.getvalue(), newline="").readlines()) + 1
        value = Decimal(minor).scaleb(-digits)
        written = f"{value:{',' if layout.thousands else ''}.{digits}f}"
        if layout.decimal_separator == ",":
            written = written.translate(str.maketrans(",.", ".,"))
        negative = (kind == "expense") == (layout.sign_convention == "negative_is_expense")
        writer.writerow([spent_on.strftime(layout.date_format), description, ("-" if negative else "") + written])
        expected.append((line, spent_on, f"{value:.{digits}f}", kind, " ".join(description.split())))
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data if layout.bom else data), expected


@hypothesis.settings(max_examples=200, deadline=None, database=None)
@given(layouts(), transaction_lists())
def test_any_statement_written_in_a_supported_layout_parses_back_to_the_same_rows(
    layout: Layout, transactions: list[Transaction]
) -> None:
    data, expected = write_statement(layout, transactions)

    def parse_it() -> ParsedStatement:
        return parse_statement(
            data,
            source="property",
            default_currency=layout.currency,
            date_order=layout.date_order,
            decimal_separator=layout.decimal_separator,
            sign_convention=layout.sign_convention,
        )

    parsed = parse_it()
    assert parsed.rejected == ()
    assert (parsed.delimiter, parsed.encoding) == (layout.delimiter, "utf-8-sig" if layout.bom else "utf-8")
    assert [(r.line, r.spent_on, str(r.amount), r.kind, r.description) for r in parsed.rows] == expected
    assert {row.currency for row in parsed.rows} == {layout.currency}
    # fingerprints: unique in the file, the same on a second parse, and the documented formula
    assert len({row.fingerprint for row in parsed.rows}) == len(parsed.rows)
    assert parse_it() == parsed
    seen: dict[tuple[object, ...], int] = {}
    for row in parsed.rows:
        description = " ".join(unicodedata.normalize("NFKC", row.description.casefold()).split())
        key = (row.spent_on, row.currency, row.amount.normalize(), row.kind, description)
        seen[key] = seen.get(key, 0) + 1
        assert row.fingerprint == statement_fingerprint(
            "property", row.spent_on, row.currency, row.amount, row.kind, row.description, seen[key]
        )


def test_statement_rows_are_frozen() -> None:
    row = fixture("duplicate_coffees.csv").rows[0]
    assert isinstance(row, StatementRow)
    with pytest.raises(AttributeError):
        row.amount = Decimal("1")  # type: ignore[misc]
