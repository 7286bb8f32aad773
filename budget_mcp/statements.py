"""Bank-statement CSV parsing: a bank's export in, typed expense and credit rows out.

Pure: no database and no files; the only I/O is decoding the bytes it is given. Real exports differ in
encoding, delimiter, preamble, header names, date and number formats and sign conventions; each is
detected from the whole file. What cannot be told apart (03/04/2025, an amount column of 1,234s, as many
negative as positive amounts) is refused with a question naming the parameter that settles it, never
guessed. Rows that do not parse are returned as ``RejectedRow`` with a reason; the rest still parse.

Every row carries a deterministic fingerprint (source, date, currency, amount, kind, description and its
occurrence number among identical rows of the file), so importing a file twice can add nothing while two
identical coffees on one day are both kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Literal

from .errors import InvalidInput
from .money import MAX_AMOUNT, minor_digits, normalize_currency, to_minor_units

DateOrder = Literal["iso", "day_first", "month_first"]
SignConvention = Literal["negative_is_expense", "positive_is_expense"]
DecimalSeparator = Literal[".", ","]
RowKind = Literal["expense", "credit"]

MAX_STATEMENT_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
HEADER_SEARCH_ROWS = 50
"""Banks put a few preamble lines (account number, period) before the header; the header is looked for
among this many non-empty rows."""

_SHOWN = 60  # the most of any cell a message repeats
_SNIFF_CHARS = 64 * 1024
_SNIFF_RECORDS = 100
_BINARY_SHARE = 0.01  # text has (almost) no control characters; random bytes have about 12 %
_BINARY_LEAST = 16  # ... but a short file with a stray control character or two is still text
_MIN_YEAR, _MAX_YEAR = 1900, 2999
_FINGERPRINT_VERSION = "budget-mcp statement row v1"


# --- the API ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMapping:
    """Which header cell holds what, named as in the file (matched case-insensitively, trimmed).

    Either ``amount`` (one signed column, optionally with a ``direction`` column saying debit or credit)
    or ``debit`` and/or ``credit`` (money out and money in as two columns).
    """

    date: str
    amount: str | None = None
    debit: str | None = None
    credit: str | None = None
    description: str | None = None
    merchant: str | None = None
    category: str | None = None
    currency: str | None = None
    notes: str | None = None
    direction: str | None = None  # "Af Bij", "Debit/Credit", "CR/DR": the amount column's money out or in


@dataclass(frozen=True, slots=True)
class StatementRow:
    """One transaction of the file. ``amount`` is always positive; ``kind`` says which way the money went."""

    line: int  # the physical line (1-based) the record starts on
    spent_on: date
    amount: Decimal  # > 0, the digits as written: "4,50" is Decimal("4.50")
    kind: RowKind  # "credit": money in (a refund, salary, a transfer in); the caller reports and skips these
    currency: str  # ISO 4217: the currency column, else the amount's symbol or code, else the amount header's
    description: str  # one line, spaces collapsed; falls back to the merchant, then the notes; may be ""
    merchant: str | None
    category: str | None  # the file's own category text
    notes: str | None  # may hold line breaks
    fingerprint: str  # see statement_fingerprint()


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that is not a transaction, and why (a summary line, a bad date, a ragged row, ...)."""

    line: int
    reason: str


@dataclass(frozen=True)
class ParsedStatement:
    """A statement as read: how the file was understood, its rows (expenses and credits) and rejects."""

    encoding: str  # "utf-8", "utf-8-sig" (with BOM), "cp1252", "latin-1", "utf-16"; "text" when given a str
    delimiter: str  # ",", ";" or "\t"
    header: tuple[str, ...]
    header_line: int
    mapping: ColumnMapping  # as given, or as inferred (then with the header's own spelling of each name)
    mapping_inferred: bool
    date_order: DateOrder  # "iso" when no date needed an order (ISO dates, month names)
    decimal_separator: DecimalSeparator
    sign_convention: SignConvention | None  # None: debit/credit or direction columns, or no signed amount left
    rows: tuple[StatementRow, ...]  # expenses and credits, in file order
    rejected: tuple[RejectedRow, ...]  # in file order


def parse_statement(
    data: bytes | str,
    *,
    source: str,
    default_currency: str,
    mapping: ColumnMapping | None = None,
    date_order: DateOrder | None = None,
    decimal_separator: DecimalSeparator | None = None,
    sign_convention: SignConvention | None = None,
) -> ParsedStatement:
    """Parse a bank statement export (CSV bytes or text) into rows, or raise ``InvalidInput`` saying which
    argument to pass.

    ``source`` names the account (not the file name, which changes between downloads); it goes into every
    fingerprint. ``default_currency`` is the currency of amounts that name none. The other arguments
    override what is inferred from the whole file, and are what the refusals ask for.
    """
    _check_size(data)
    source = source.strip()
    if not source:
        raise InvalidInput("source must name the account the statement is from, e.g. 'checking' or 'visa'")
    try:
        default_currency = normalize_currency(default_currency)
    except InvalidInput as error:
        raise InvalidInput(f"default_currency: {error}") from None
    if mapping is not None:
        _check_mapping(mapping)

    text, encoding = _decode(data)
    if not text.strip():
        raise InvalidInput("the statement is empty; pass the CSV export's contents (a header row and transactions)")
    delimiter = _sniff_delimiter(text, mapping)
    records = _Records(text, delimiter)
    header_line, header, columns, inferred_mapping = _find_header(records, mapping)
    return _Parser(
        source=source,
        default_currency=default_currency,
        header=header,
        columns=columns,
        date_order=date_order,
        decimal_separator=decimal_separator,
        sign_convention=sign_convention,
    ).parse(
        records,
        encoding=encoding,
        delimiter=delimiter,
        header_line=header_line,
        mapping=mapping or inferred_mapping,
        mapping_inferred=mapping is None,
    )


def statement_fingerprint(
    source: str, spent_on: date, currency: str, amount: Decimal, kind: RowKind, description: str, occurrence: int
) -> str:
    """The sha256 that identifies a statement row across imports: the same row of the same account always
    gets the same one; ``occurrence`` tells identical rows of one file apart (1 for the first, 2, ...)."""
    return _fingerprint(
        _fingerprint_prefix(source.strip()),
        spent_on.isoformat(),
        currency,
        _amount_key(amount),
        kind,
        _description_key(description),
        occurrence,
    )


def _fingerprint_prefix(source: str) -> str:
    return f"{_FINGERPRINT_VERSION}\x1f{source}\x1f"


def _fingerprint(
    prefix: str, day: str, currency: str, amount_key: str, kind: str, description_key: str, occurrence: int
) -> str:
    """sha256 of the fields joined by U+001F (which no cell keeps: control characters are dropped)."""
    text = f"{prefix}{day}\x1f{currency}\x1f{amount_key}\x1f{kind}\x1f{description_key}\x1f{occurrence}"
    return hashlib.sha256(text.encode()).hexdigest()


# --- known header names -------------------------------------------------------------------------------
# Written folded (lower case, no accents, single spaces); for each role, in order of preference.

_KNOWN_HEADERS: dict[str, tuple[str, ...]] = {
    "date": (
        "date", "transaction date", "trans. date", "trans date", "txn date", "booking date", "posting date",
        "posted date", "post date", "started date", "completed date", "buchungstag", "buchungsdatum", "datum",
        "date operation", "date de l'operation", "date de operation", "fecha", "fecha operacion",
        "fecha de operacion", "boekdatum", "boekingsdatum", "transactiedatum", "data", "data operazione",
        "value date", "valutadatum", "valuta datum", "wertstellung", "date valeur", "fecha valor",
        "rentedatum",
    ),
    "amount": (
        "amount", "transaction amount", "amt", "betrag", "umsatz", "montant", "montant operation", "bedrag",
        "importe", "importo", "value", "sum", "summe",
    ),
    "debit": (
        "debit", "debits", "debit amount", "amount debit", "withdrawal", "withdrawals", "withdrawal amount",
        "money out", "paid out", "out", "soll", "ausgang", "ausgaben", "debet", "cargo", "cargos", "debito",
        "addebiti", "uscite",
    ),
    "credit": (
        "credit", "credits", "credit amount", "amount credit", "deposit", "deposits", "deposit amount",
        "money in", "paid in", "in", "haben", "eingang", "einnahmen", "abono", "abonos", "credito", "accrediti",
        "entrate",
    ),
    "direction": (
        "af bij", "af/bij", "debit/credit", "credit/debit", "cr/dr", "dr/cr", "debit credit indicator",
        "credit debit indicator", "soll/haben", "s/h",
    ),
    "currency": ("currency", "currency code", "ccy", "wahrung", "waehrung", "devise", "valuta", "moneda", "divisa"),
    "category": ("category", "category name", "kategorie", "categorie", "categoria", "rubrique"),
    "merchant": (
        "merchant", "merchant name", "payee", "payee name", "name", "counterparty", "counterparty name",
        "beneficiary", "empfanger", "auftraggeber/empfanger", "beguenstigter/zahlungspflichtiger",
        "begunstigter/zahlungspflichtiger", "zahlungsempfanger", "name zahlungsbeteiligter", "naam",
        "naam / omschrijving", "tegenpartij", "beneficiaire", "tiers", "beneficiario",
    ),
    "description": (
        "description", "transaction description", "details", "transaction details", "narrative", "particulars",
        "verwendungszweck", "libelle", "libelle operation", "libelle de l'operation", "omschrijving",
        "payment reference", "concepto", "descripcion", "descrizione", "beschreibung", "memo", "reference",
        "mededelingen", "buchungstext",
    ),
    "notes": (
        "notes", "note", "memo", "reference", "mededelingen", "buchungstext", "remarks", "comment", "comments",
        "notiz",
    ),
}  # fmt: skip
_ROLE_ORDER = ("date", "amount", "direction", "debit", "credit", "currency", "category", "merchant",
               "description", "notes")  # fmt: skip
_MAPPING_FIELDS = tuple(field.name for field in fields(ColumnMapping))

_DIRECTION_WORDS: dict[str, RowKind] = {
    **dict.fromkeys(("af", "d", "dr", "debit", "dbit", "debet", "s", "soll", "out", "-", "withdrawal"), "expense"),
    **dict.fromkeys(("bij", "c", "cr", "credit", "crdt", "h", "haben", "in", "+", "deposit"), "credit"),
}  # fmt: skip


# --- dates --------------------------------------------------------------------------------------------

_TIME = r"(?:[T ,]+\d{1,2}[:.]\d{2}.*)?"
_ISO_DATE = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})" + _TIME)
_COMPACT_DATE = re.compile(r"((?:19|2\d)\d{2})(\d{2})(\d{2})" + _TIME)
_NUMERIC_DATE = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})" + _TIME)
_DAY_NAME_DATE = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[-/. ]+([^\W\d_]{3,10})\.?[-/., ]+(\d{4}|\d{2})" + _TIME)
_NAME_DAY_DATE = re.compile(r"([^\W\d_]{3,10})\.?[-/. ]+(\d{1,2})(?:st|nd|rd|th)?,?[-/. ]+(\d{4}|\d{2})" + _TIME)


def _month_names() -> dict[str, int]:
    """Month names and their unambiguous abbreviations (3+ letters) in English, German, French, Dutch,
    Spanish and Italian, folded: "mar", "marz", "mrz", "fevr", "dec", "dez", "dic", ..."""
    names = {
        1: "january januar janvier januari enero gennaio",
        2: "february februar fevrier februari febrero febbraio",
        3: "march marz mars maart marzo mrz mrt",
        4: "april avril abril aprile",
        5: "may mai mei mayo maggio",
        6: "june juni juin junio giugno",
        7: "july juli juillet julio luglio",
        8: "august aout augustus agosto",
        9: "september septembre septiembre settembre sept",
        10: "october oktober octobre octubre ottobre",
        11: "november novembre noviembre",
        12: "december dezember decembre diciembre dicembre",
    }
    found: dict[str, set[int]] = {}
    for month, words in names.items():
        for word in words.split():
            for end in range(3, len(word) + 1):
                found.setdefault(word[:end], set()).add(month)
    return {prefix: months.pop() for prefix, months in found.items() if len(months) == 1}


_MONTHS = _month_names()


# --- amounts ------------------------------------------------------------------------------------------

_PLAIN_AMOUNT = re.compile(r"([-+]?)(\d[\d.,]*)")
_SYMBOL_AMOUNT = re.compile(r"([-+]?)([€£¥$])([-+]?)(\d[\d.,]*)")  # "£23.45", "-$5.00", "$-5.00": common, fast
_MARKER = re.compile(r"(?<![^\W\d_])(CR|DR)\.?\s*$", re.IGNORECASE)
_CURRENCY_TOKEN = re.compile(
    r"US\$|CA\$|AU\$|NZ\$|HK\$|SG\$|MX\$|R\$|C\$|A\$|S\$|[€£¥$₹₩₽₺₪฿₫₱₴₦₡]"
    r"|(?<![^\W\d_])(?:kr\.?|fr\.|zł|kč|ft|[a-z]{3})(?![^\W\d_])",
    re.IGNORECASE,
)
_GROUPING = " '\u2019\u00a0\u2007\u2009\u202f"  # thousands marks besides . and ,: spaces and apostrophes
_SIGNED_NUMBER = re.compile(
    rf"\s*([-+\u2212]?)\s*(\(?)\s*([-+\u2212]?)\s*((?:\d|[.,]\d)[\d.,{_GROUPING}]*?)\s*(\)?)\s*([-+\u2212]?)\s*"
)
_GROUPING_MARKS = str.maketrans("", "", _GROUPING)
_ONE_GROUP = re.compile(r"[1-9]\d{0,2}[.,]\d{3}")  # "1,234" / "1.234": thousands or three decimals?
_NUMBER = {
    ".": re.compile(r"(\d{1,3}(?:,\d{2,3})*,\d{3}|\d+)?(?:\.(\d+))?"),
    ",": re.compile(r"(\d{1,3}(?:\.\d{2,3})*\.\d{3}|\d+)?(?:,(\d+))?"),
}
_THOUSANDS = {".": ",", ",": "."}
_EMPTY_AMOUNTS = frozenset(("", "-", "--", "\u2013", "\u2014"))
_LONGEST_AMOUNT = 40  # digits and separators
_LONGEST_CELL = 64  # no date or amount is longer; longer cells are not handed to the patterns at all

_SYMBOLS = {
    "€": "EUR", "£": "GBP", "us$": "USD", "ca$": "CAD", "c$": "CAD", "au$": "AUD", "a$": "AUD", "nz$": "NZD",
    "hk$": "HKD", "sg$": "SGD", "s$": "SGD", "mx$": "MXN", "r$": "BRL", "₹": "INR", "₩": "KRW", "₽": "RUB",
    "₺": "TRY", "₪": "ILS", "฿": "THB", "₫": "VND", "₱": "PHP", "₴": "UAH", "₦": "NGN", "₡": "CRC",
    "fr.": "CHF", "zł": "PLN", "kč": "CZK", "ft": "HUF",
}  # fmt: skip
_DOLLAR_CURRENCIES = frozenset((
    "USD", "CAD", "AUD", "NZD", "HKD", "SGD", "MXN", "TWD", "ARS", "CLP", "COP", "UYU", "BSD", "BBD", "BZD",
    "BMD", "BND", "FJD", "GYD", "JMD", "KYD", "LRD", "NAD", "SBD", "SRD", "TTD", "XCD",
))  # fmt: skip
_YEN_CURRENCIES = frozenset(("JPY", "CNY"))
_KRONA_CURRENCIES = frozenset(("SEK", "NOK", "DKK", "ISK"))

# A lexed amount cell: (negative, digits with separators, currency token or None, "CR"/"DR" or None).
_Lexed = tuple[bool, str, str | None, str | None]


# --- text ---------------------------------------------------------------------------------------------

_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_C1_BYTES = re.compile(rb"[\x80-\x9f]")
_ANY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CURRENCY_IN_HEADER = re.compile(r"^(.*?)\s*(?:[(\[]\s*([^)\]]{1,5}?)\s*[)\]]|\bin\s+(\S{1,5}))$")
_FORMATS = {
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an .xlsx or .ods spreadsheet?)",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) or Word file",
}


def _show(text: str) -> str:
    """A cell quoted for a message, cut to ``_SHOWN`` characters."""
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")


def _fold(text: str) -> str:
    """A header cell as compared with the known names: lower case, without accents, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.strip().strip("\"'*:").strip())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def _name_key(name: str) -> str:
    """A mapping's column name as compared with header cells: case-insensitive, trimmed, single spaces."""
    return " ".join(name.casefold().split())


def _one_line(text: str) -> str:
    """Cell text as one line: control characters dropped, white space (newlines too) collapsed."""
    if not text.isprintable():
        text = _ANY_CONTROL.sub(" ", text)
    return " ".join(text.split())


def _lines(text: str) -> str:
    """Cell text keeping its line breaks (for notes), each line collapsed, blank lines dropped."""
    if text.isprintable():
        return " ".join(text.split())
    lines = (" ".join(_ANY_CONTROL.sub(" ", line).split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _amount_key(amount: Decimal) -> str:
    """4.5 and 4.50 (and 100 and 100.00) are the same amount: written without trailing zeros or exponent."""
    text = str(amount)
    if "E" in text:  # never for an amount read from a statement; 1E+2 from a caller of statement_fingerprint
        text = format(amount.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _description_key(description: str) -> str:
    """Descriptions compared case-insensitively, by compatibility form ("ﬁ" is "fi"), spaces collapsed."""
    if description.isascii():
        return " ".join(description.lower().split())
    return " ".join(unicodedata.normalize("NFKC", description.casefold()).split())


# --- reading the file ---------------------------------------------------------------------------------


def _check_size(data: bytes | str) -> None:
    if len(data) > MAX_STATEMENT_BYTES:
        unit = "bytes" if isinstance(data, bytes) else "characters"
        raise InvalidInput(
            f"the statement is {len(data):,} {unit}; the most one import takes is {MAX_STATEMENT_BYTES:,} bytes "
            f"({MAX_STATEMENT_BYTES // (1024 * 1024)} MiB): split the export into smaller files (e.g. one per "
            "year or quarter) and import each"
        )


def _binary(what: str = "binary data such as NUL bytes") -> InvalidInput:
    return InvalidInput(
        f"this does not look like a CSV text file (it contains {what}); export the statement from the bank "
        "as CSV (comma, semicolon or tab separated text) and pass that file's contents"
    )


def _decode(data: bytes | str) -> tuple[str, str]:
    """The text and the encoding it was read with: UTF-8 (with or without BOM), else Windows-1252 when the
    file uses its extra characters (€ as byte 0x80, typographic quotes), else Latin-1."""
    if isinstance(data, str):
        text, encoding = data.removeprefix("\ufeff"), "text"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
        try:
            text, encoding = data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise _binary() from None
    else:
        for magic, what in _FORMATS.items():
            if data.startswith(magic):
                raise _binary(what)
        controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
        if b"\x00" in data or controls > max(_BINARY_LEAST, _BINARY_SHARE * len(data)):
            raise _binary()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if _C1_BYTES.search(data) is None:
                return data.decode("latin-1"), "latin-1"
            try:
                return data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:  # bytes Windows-1252 leaves undefined
                return data.decode("latin-1"), "latin-1"
        if text.startswith("\ufeff"):
            return text[1:], "utf-8-sig"
        return text, "utf-8"
    sample = text[: 1024 * 1024]
    if "\x00" in text or len(_CONTROL_CHARS.findall(sample)) > max(_BINARY_LEAST, _BINARY_SHARE * len(sample)):
        raise _binary()
    return text, encoding


def _csv_reader(text: str, delimiter: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)


def _sniff_delimiter(text: str, mapping: ColumnMapping | None) -> str:
    """The delimiter under which a header row appears (the widest, if several do); for a file whose header
    is not recognised, the one that splits the most of the first rows into the same number (2+) of fields.
    The header comes first because multi-line fields can make a wrong delimiter look consistent."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and (cut := sample.rfind("\n")) > 0:
        sample = sample[:cut]
    best, best_score = None, (0, 0)
    headers: list[tuple[int, str]] = []
    for delimiter in (",", ";", "\t"):
        widths: Counter[int] = Counter()
        header_found = False
        try:
            for _, record in zip(range(_SNIFF_RECORDS), _csv_reader(sample, delimiter), strict=False):
                if len(record) > 1:
                    widths[len(record)] += 1
                    if not header_found and _header_columns(record, mapping) is not None:
                        headers.append((len(record), delimiter))
                        header_found = True
        except csv.Error:
            continue
        if widths:
            width, count = max(widths.items(), key=lambda item: (item[1], item[0]))
            if (count, width) > best_score:
                best, best_score = delimiter, (count, width)
    if headers:
        return max(headers, key=lambda header: header[0])[1]
    if best is None:
        first = text.strip().splitlines()[0]
        raise InvalidInput(
            f"found no columns: no line splits into fields at ',', ';' or tab (the first line is {_show(first)}); "
            "pass the statement as CSV text with a header row and one transaction per row"
        )
    return best


class _Records:
    """The file's records with the line each starts on, read once, front to back: the header search stops
    early and the body goes on from where it stopped."""

    def __init__(self, text: str, delimiter: str) -> None:
        self._text = text
        self.reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        reader = self.reader
        line = reader.line_num + 1
        try:
            for record in reader:
                yield line, record
                line = reader.line_num + 1
        except csv.Error as error:
            raise self.malformed(line, error) from None

    def malformed(self, line: int, error: csv.Error) -> InvalidInput:
        return InvalidInput(
            f"the CSV is malformed at line {line} ({error}); a quote that is never closed is the usual cause: "
            "fix the file or export it again"
        )

    def check_last(self, line: int, record: list[str]) -> None:
        """Refuse a file whose last record is a quoted field running to the end: its rows would be lost in it."""
        if any("\n" in cell or "\r" in cell for cell in record) and self._text.count('"') % 2:
            raise InvalidInput(
                f"line {line} opens a quoted field that is never closed (it runs to the end of the file); "
                "fix the quote in the file or export it again"
            )


# --- finding the header and the columns ---------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    """Positions of the mapped columns in the header, and a currency the amount header names ("Betrag (EUR)")."""

    date: int
    amount: int | None
    debit: int | None
    credit: int | None
    description: int | None
    merchant: int | None
    category: int | None
    currency: int | None
    notes: int | None
    direction: int | None
    header_currency: str | None


def _check_mapping(mapping: ColumnMapping) -> None:
    for name in _MAPPING_FIELDS:
        value = getattr(mapping, name)
        if value is not None and not value.strip():
            raise InvalidInput(f"mapping.{name} is empty; name a header cell of the file or leave it out (None)")
    two_columns = mapping.debit is not None or mapping.credit is not None
    if (mapping.amount is None) == (not two_columns):
        raise InvalidInput(
            "mapping needs either amount (one signed amount column) or debit and/or credit (money out and money "
            "in as two columns), not both kinds"
        )
    if mapping.direction is not None and mapping.amount is None:
        raise InvalidInput("mapping.direction (a debit/credit indicator column) needs mapping.amount")


def _header_keys(cells: list[str]) -> tuple[dict[str, int], dict[int, str]]:
    """Folded header cell -> position (first wins), also without a currency suffix ("Amount (EUR)" ->
    "amount"); and position -> the currency token such a suffix names."""
    positions: dict[str, int] = {}
    suffixes: dict[int, str] = {}
    for index, cell in enumerate(cells):
        key = _fold(cell)
        positions.setdefault(key, index)
        match = _CURRENCY_IN_HEADER.match(key)
        if match and match[1]:
            positions.setdefault(match[1], index)
            suffixes[index] = match[2] or match[3]
    return positions, suffixes


def _infer_columns(cells: list[str]) -> dict[str, int] | None:
    """Roles found among a row's cells by their known names, or None unless a date and an amount (or a debit
    or credit) column are among them."""
    positions, _ = _header_keys(cells)
    found: dict[str, int] = {}
    taken: set[int] = set()
    for role in _ROLE_ORDER:
        if role in ("debit", "credit") and "amount" in found:
            continue
        if role == "direction" and "amount" not in found:
            continue
        for name in _KNOWN_HEADERS[role]:
            index = positions.get(name)
            if index is not None and index not in taken:
                found[role] = index
                taken.add(index)
                break
    if "date" in found and ({"amount", "debit", "credit"} & found.keys()):
        return found
    return None


def _mapped_columns(cells: list[str], mapping: ColumnMapping) -> dict[str, int] | list[str]:
    """Positions of a mapping's columns in a row, or the mapping fields the row lacks."""
    positions: dict[str, int] = {}
    for position, cell in enumerate(cells):
        positions.setdefault(_name_key(cell), position)
    found: dict[str, int] = {}
    missing: list[str] = []
    for name in _MAPPING_FIELDS:
        value = getattr(mapping, name)
        if value is None:
            continue
        index = positions.get(_name_key(value))
        if index is None:
            missing.append(name)
        else:
            found[name] = index
    return missing or found


def _header_columns(cells: list[str], mapping: ColumnMapping | None) -> dict[str, int] | None:
    """The columns a row names if it is the header (for the mapping, or by known names); else None."""
    if mapping is None:
        return _infer_columns(cells)
    found = _mapped_columns(cells, mapping)
    return found if isinstance(found, dict) else None


def _columns(cells: list[str], found: dict[str, int]) -> _Columns:
    _, suffixes = _header_keys(cells)
    hint = next((suffixes[found[role]] for role in ("amount", "debit", "credit") if found.get(role) in suffixes), None)
    return _Columns(
        date=found["date"],
        amount=found.get("amount"),
        debit=found.get("debit"),
        credit=found.get("credit"),
        description=found.get("description"),
        merchant=found.get("merchant"),
        category=found.get("category"),
        currency=found.get("currency"),
        notes=found.get("notes"),
        direction=found.get("direction"),
        header_currency=hint,
    )


def _list_cells(cells: list[str]) -> str:
    shown = ", ".join(_show(cell.strip()) for cell in cells[:15])
    return shown + (f", ... ({len(cells)} cells)" if len(cells) > 15 else "")


def _likely_header(seen: list[tuple[int, list[str]]]) -> tuple[int, list[str]]:
    """The first row as wide as most rows: the header of a file whose header names are not known."""
    widths = Counter(len(record) for _, record in seen)
    width = max(widths.items(), key=lambda item: (item[1], item[0]))[0]
    return next((line, record) for line, record in seen if len(record) == width)


def _find_header(
    records: _Records, mapping: ColumnMapping | None
) -> tuple[int, tuple[str, ...], _Columns, ColumnMapping]:
    """The header row (the first row naming the mapping's columns, or known names for a date and an amount)
    and the columns it maps; raise ``InvalidInput`` listing the likely header's cells when there is none."""
    seen: list[tuple[int, list[str]]] = []
    closest: tuple[int, list[str], list[str]] | None = None  # for a mapping: the row lacking fewest names
    for line, record in records:
        if not "".join(record).strip():
            continue
        seen.append((line, record))
        found = _header_columns(record, mapping)
        if found is not None:
            if mapping is not None:
                return line, tuple(record), _columns(record, found), mapping
            inferred = ColumnMapping(**{role: record[index].strip() for role, index in found.items()})
            return line, tuple(record), _columns(record, found), inferred
        if mapping is not None:
            missing = _mapped_columns(record, mapping)
            assert isinstance(missing, list)
            if closest is None or len(missing) < len(closest[2]):
                closest = (line, record, missing)
        if len(seen) >= HEADER_SEARCH_ROWS:
            break
    if not seen:
        raise InvalidInput("the statement has no rows; pass the CSV export's contents")
    fields_list = "date, amount or debit/credit, description, merchant, category, currency, notes"
    if mapping is None:
        line, cells = _likely_header(seen)
        raise InvalidInput(
            f"could not find the header row: no row names a date and an amount (or debit/credit) column in a way "
            f"this parser knows. Line {line} has: {_list_cells(cells)}. Call again with mapping naming this "
            f"file's header cells for the fields {fields_list} (e.g. date='Posting Date', amount='Amount')"
        )
    assert closest is not None
    line, cells, missing = closest
    if len(missing) == sum(getattr(mapping, name) is not None for name in _MAPPING_FIELDS):
        line, cells = _likely_header(seen)
    wanted = ", ".join(f"{name}={_show(getattr(mapping, name))}" for name in missing)
    raise InvalidInput(
        f"mapping names columns this file's header does not have: {wanted}. The header (line {line}) has: "
        f"{_list_cells(cells)}; call again with mapping fields set to these names"
    )


# --- cells ----------------------------------------------------------------------------------------------

_LexedDate = tuple[str, int, int, int]  # ("ymd", y, m, d) or ("num", first, second, year)


def _lex_date(text: str) -> _LexedDate | str:
    """A date cell read as far as it can be without knowing the file's order; or why it is not a date."""
    cell = text.strip()
    if len(cell) > _LONGEST_CELL:
        return f"date {_show(cell)} is not a date"
    if match := _NUMERIC_DATE.fullmatch(cell):
        year = int(match[4])
        return "num", int(match[1]), int(match[3]), year + 2000 if len(match[4]) == 2 else year
    if match := _ISO_DATE.fullmatch(cell):
        return "ymd", int(match[1]), int(match[3]), int(match[4])
    if match := _COMPACT_DATE.fullmatch(cell):
        return "ymd", int(match[1]), int(match[2]), int(match[3])
    if match := _DAY_NAME_DATE.fullmatch(cell):
        day, name, year_text = match[1], match[2], match[3]
    elif match := _NAME_DAY_DATE.fullmatch(cell):
        name, day, year_text = match[1], match[2], match[3]
    elif not cell:
        return "the date is empty"
    else:
        return f"date {_show(cell)} is not a date (expected e.g. 2025-03-04, 04/03/2025 or 4 Mar 2025)"
    month = _MONTHS.get(_fold(name))
    if month is None:
        return f"date {_show(cell)} has a month name this parser does not know ({_show(name)})"
    year = int(year_text)
    return "ymd", year + 2000 if len(year_text) == 2 else year, month, int(day)


def _lex_amount(text: str) -> _Lexed | str | None:
    """An amount cell read as far as it can be without knowing the decimal separator; None when empty;
    or why it is not an amount."""
    cell = text.strip()
    if not cell:
        return None
    if match := _PLAIN_AMOUNT.fullmatch(cell):
        return match[1] == "-", match[2], None, None
    if (match := _SYMBOL_AMOUNT.fullmatch(cell)) and not (match[1] and match[3]):
        return "-" in (match[1], match[3]), match[4], match[2], None
    if cell in _EMPTY_AMOUNTS:
        return None
    if len(cell) > _LONGEST_CELL:
        return f"{_show(cell)} is not a number"
    rest = cell
    marker = None
    if match := _MARKER.search(rest):
        marker, rest = match[1].upper(), rest[: match.start()]
    token = None
    if match := _CURRENCY_TOKEN.search(rest):
        token, rest = match[0], rest[: match.start()] + rest[match.end() :]
    match = _SIGNED_NUMBER.fullmatch(rest)
    if match is None or bool(match[2]) != bool(match[5]) or len(match[1] + match[3] + match[6]) > 1:
        return f"{_show(cell)} is not a number"
    negative = bool(match[2]) or (match[1] + match[3] + match[6]) in ("-", "\u2212")
    return negative, match[4].translate(_GROUPING_MARKS), token, marker


def _separator_vote(core: str) -> str:
    """What one amount says about the decimal separator: ".", ",", "?" (1,234: either) or "" (nothing)."""
    dot, comma = core.rfind("."), core.rfind(",")
    if dot < 0 and comma < 0:
        return ""
    if dot >= 0 and comma >= 0:
        return "." if dot > comma else ","
    separator, point = (".", dot) if dot >= 0 else (",", comma)
    if core.count(separator) > 1:
        return _THOUSANDS[separator]
    return "?" if point == len(core) - 4 and _ONE_GROUP.fullmatch(core) else separator


def _to_decimal(core: str, separator: str) -> tuple[Decimal, int] | None:
    """The amount's digits as a Decimal, exactly as written ("4,50" -> 4.50), and how many decimals it has;
    None if they are not a number written with that separator."""
    thousands = _THOUSANDS[separator]
    try:  # core holds only digits (of any script), "." and ","; the guard is for what that might miss
        if thousands not in core and core.count(separator) <= 1 and len(core) <= _LONGEST_AMOUNT:
            # the usual case, without thousands separators
            point = core.find(separator)
            if point < 0:
                return Decimal(core), 0
            if point < len(core) - 1:
                return Decimal(core.replace(",", ".")), len(core) - point - 1
            return None
        match = _NUMBER[separator].fullmatch(core) if len(core) <= _LONGEST_AMOUNT else None
        if match is None:
            return None
        whole, fraction = match[1], match[2]
        if fraction is None:
            return (Decimal(whole.replace(thousands, "")), 0) if whole is not None else None
        return Decimal(f"{(whole or '0').replace(thousands, '')}.{fraction}"), len(fraction)
    except InvalidOperation:
        return None


def _is_zero(core: str) -> bool:
    return not core.strip("0.,")


# --- the rows -------------------------------------------------------------------------------------------


_LexedRow = tuple[int, tuple[str, ...], _LexedDate, str, int, _Lexed]  # line, cells, date, role, its column, amount


class _Parser:
    """Reads the rows after the header in two passes: the first lexes every date and amount cell and gathers
    what they say about the file's formats; the second builds the rows in the formats chosen from all of them.
    Dates repeat (a statement spans a few hundred days), so each distinct date cell is read once."""

    def __init__(
        self,
        *,
        source: str,
        default_currency: str,
        header: tuple[str, ...],
        columns: _Columns,
        date_order: DateOrder | None,
        decimal_separator: DecimalSeparator | None,
        sign_convention: SignConvention | None,
    ) -> None:
        self.source = source
        self.default_currency = default_currency
        self.header = header
        self.columns = columns
        self.date_order = date_order
        self.decimal_separator = decimal_separator
        self.sign_convention = sign_convention
        self.currencies: dict[str, str | None] = {}
        self.digits: dict[str, int] = {}
        self.token_currencies: dict[str | None, tuple[str, str | None]] = {}
        header_currency = self._currency(columns.header_currency) if columns.header_currency else None
        self.fallback_currency = header_currency or default_currency
        # what pass 1 gathers
        self.dates: dict[str, tuple[int, _LexedDate | str]] = {}  # each distinct date cell: first line, lexed
        self.votes: Counter[str] = Counter()  # decimal separator votes (see _separator_vote)
        self.examples: dict[str, str] = {}  # the first amount of each vote
        self.signs = [0, 0]  # unmarked non-zero amounts: positive, negative

    def parse(
        self,
        records: _Records,
        *,
        encoding: str,
        delimiter: str,
        header_line: int,
        mapping: ColumnMapping,
        mapping_inferred: bool,
    ) -> ParsedStatement:
        rejected: list[RejectedRow] = []
        lexed = self._lex(records, header_line, rejected)
        date_order = self.date_order or self._infer_date_order()
        separator = self.decimal_separator or self._infer_separator()
        signed = self.columns.amount is not None and self.columns.direction is None
        convention = self.sign_convention
        if convention is None and signed:
            convention = self._infer_sign_convention()
        rows = self._rows(lexed, date_order, separator, convention, rejected)
        rejected.sort(key=lambda row: row.line)
        return ParsedStatement(
            encoding=encoding,
            delimiter=delimiter,
            header=tuple(cell.strip() for cell in self.header),
            header_line=header_line,
            mapping=mapping,
            mapping_inferred=mapping_inferred,
            date_order=date_order,
            decimal_separator=separator,
            sign_convention=convention if signed else None,
            rows=tuple(rows),
            rejected=tuple(rejected),
        )

    # pass 1 ---------------------------------------------------------------------------------------------

    def _lex(self, records: _Records, header_line: int, rejected: list[RejectedRow]) -> list[_LexedRow]:
        width = len(self.header)
        columns = self.columns
        date_index = columns.date
        amount_index = columns.amount
        infer_separator = self.decimal_separator is None
        count_signs = columns.amount is not None and columns.direction is None and self.sign_convention is None
        dates, votes, examples, signs = self.dates, self.votes, self.examples, self.signs
        lexed = []
        count = 0
        reader = records.reader  # read directly, as iterating records costs a generator step per row
        next_line = reader.line_num + 1
        record: list[str] = []
        line = next_line
        try:
            for record in reader:
                line, next_line = next_line, reader.line_num + 1
                if not (record and record[0].strip()) and not "".join(record).strip():
                    continue  # blank lines and rows of empty fields
                count += 1
                if count > MAX_ROWS:
                    raise InvalidInput(
                        f"the statement has more than {MAX_ROWS:,} rows after its header (line {header_line}); split "
                        "the export into smaller files (e.g. one per year) and import each"
                    )
                cells = record
                if len(record) != width:
                    if len(record) > width and not "".join(record[width:]).strip():
                        cells = record[:width]  # a trailing delimiter
                    else:
                        reason = f"row has {len(record)} field{'s' if len(record) != 1 else ''}, the header has {width}"
                        rejected.append(RejectedRow(line, reason))
                        continue
                date_cell = cells[date_index]
                seen = dates.get(date_cell)
                if seen is None:
                    seen = dates[date_cell] = (line, _lex_date(date_cell))
                day = seen[1]
                if isinstance(day, str):
                    rejected.append(RejectedRow(line, day))
                    continue
                if amount_index is not None:
                    role, index, amount = "amount", amount_index, _lex_amount(cells[amount_index])
                    if amount is None:
                        amount = "is empty"
                else:
                    role, index, amount = self._debit_or_credit(cells)
                if isinstance(amount, str):
                    rejected.append(RejectedRow(line, f"{role} {amount}" if role else amount))
                    continue
                core = amount[1]
                if infer_separator:
                    vote = _separator_vote(core)
                    votes[vote] += 1
                    if vote not in examples:
                        examples[vote] = core
                if count_signs and amount[3] is None and core.strip("0.,"):  # not zero
                    signs[amount[0]] += 1
                # a tuple of str, unlike the reader's list, leaves the garbage collector's sight: with 100,000
                # rows alive, full collections would otherwise cost a fifth of the time
                lexed.append((line, tuple(cells), day, role, index, amount))
        except csv.Error as error:
            raise records.malformed(next_line, error) from None
        records.check_last(line, record)
        if not count:
            raise InvalidInput(
                f"the statement has a header (line {header_line}) but no transaction rows; pass the whole export"
            )
        return lexed

    def _debit_or_credit(self, cells: list[str]) -> tuple[str, int, _Lexed | str]:
        """Which of a two-column row's cells holds its amount ("debit" or "credit"), lexed; or why neither.
        An empty cell or a zero (some banks write 0.00 in the column not used) does not count."""
        debit_index, credit_index = self.columns.debit, self.columns.credit
        debit = credit = None
        if debit_index is not None and isinstance(debit := _lex_amount(cells[debit_index]), str):
            return "debit", debit_index, debit
        if credit_index is not None and isinstance(credit := _lex_amount(cells[credit_index]), str):
            return "credit", credit_index, credit
        if debit is not None and credit is not None:
            assert debit_index is not None and credit_index is not None
            if _is_zero(credit[1]):
                return "debit", debit_index, debit  # when both are zero, the debit's "is zero" is the reason
            if not _is_zero(debit[1]):
                return (
                    "",
                    debit_index,
                    f"the row has both a debit ({_show(cells[debit_index].strip())}) and a credit "
                    f"({_show(cells[credit_index].strip())}) amount; expected one of them",
                )
            return "credit", credit_index, credit
        if debit is not None:
            assert debit_index is not None
            return "debit", debit_index, debit
        if credit is not None:
            assert credit_index is not None
            return "credit", credit_index, credit
        return "", 0, "the row has neither a debit nor a credit amount"

    def _infer_date_order(self) -> DateOrder:
        day_first = month_first = ambiguous = None
        numeric = False
        for cell, (line, day) in self.dates.items():
            if isinstance(day, str) or day[0] != "num":
                continue
            numeric = True
            _, first, second, year = day
            if 12 < first <= 31 and 1 <= second <= 12:
                day_first = day_first or (line, cell)
            elif 12 < second <= 31 and 1 <= first <= 12:
                month_first = month_first or (line, cell)
            elif first != second and 1 <= first <= 12 and 1 <= second <= 12:
                ambiguous = ambiguous or (line, cell, first, second, year)
        if day_first and month_first:
            raise InvalidInput(
                f"the dates mix day-first ({_show(day_first[1].strip())} on line {day_first[0]}) and month-first "
                f"({_show(month_first[1].strip())} on line {month_first[0]}) orders; call again with "
                "date_order='day_first' or 'month_first' (rows in the other order will be rejected)"
            )
        if day_first:
            return "day_first"
        if month_first:
            return "month_first"
        if ambiguous:
            line, cell, first, second, year = ambiguous
            as_day_first = f"{first} {date(2000, second, 1):%B} {year}"
            as_month_first = f"{date(2000, first, 1):%B} {second}, {year}"
            raise InvalidInput(
                f"every date can be read day-first or month-first: dates such as {_show(cell.strip())} (line {line}) "
                f"could mean {as_day_first} or {as_month_first}. Which is it? Call again with "
                "date_order='day_first' or date_order='month_first'"
            )
        return "day_first" if numeric else "iso"  # numeric dates with day == month read the same either way

    def _infer_separator(self) -> DecimalSeparator:
        votes, examples = self.votes, self.examples
        if votes["."] != votes[","]:
            return "." if votes["."] > votes[","] else ","
        if votes["."]:
            raise InvalidInput(
                f"as many amounts use ',' as '.' for decimals (e.g. {_show(examples[','])} and "
                f"{_show(examples['.'])}); call again with decimal_separator='.' or decimal_separator=','"
            )
        if votes["?"]:
            raise InvalidInput(
                f"amounts such as {_show(examples['?'])} could be thousands or decimals, and no amount in the file "
                "settles it. Which is the decimal separator? Call again with decimal_separator='.' (1,234 is "
                "one thousand two hundred thirty-four) or decimal_separator=',' (1,234 is one point two three four)"
            )
        return "."

    def _infer_sign_convention(self) -> SignConvention | None:
        positive, negative = self.signs
        if not positive and not negative:
            return None  # no amount needs one (every amount is marked CR or DR, or none is left)
        if positive == negative:
            raise InvalidInput(
                f"the file has as many negative as positive amounts ({negative} each), so which are expenses "
                "cannot be told. Call again with sign_convention='negative_is_expense' (bank accounts: spending "
                "is negative) or sign_convention='positive_is_expense' (credit cards: charges are positive)"
            )
        return "negative_is_expense" if negative > positive else "positive_is_expense"

    # pass 2 ---------------------------------------------------------------------------------------------

    def _rows(
        self,
        lexed: list[_LexedRow],
        date_order: DateOrder,
        separator: DecimalSeparator,
        convention: SignConvention | None,
        rejected: list[RejectedRow],
    ) -> list[StatementRow]:
        columns = self.columns
        date_index = columns.date
        description_index, merchant_index = columns.description, columns.merchant
        category_index, notes_index = columns.category, columns.notes
        negative_is_expense = convention == "negative_is_expense"
        converted: dict[str, tuple[date, str] | str] = {}  # each distinct date cell: the date and its ISO form
        occurrences: dict[tuple[str, str, str, str, str], int] = {}
        prefix = _fingerprint_prefix(self.source)
        rows = []
        for line, cells, day, role, index, lexed_amount in lexed:
            date_cell = cells[date_index]
            when = converted.get(date_cell)
            if when is None:
                when = converted[date_cell] = _to_date(date_cell, day, date_order)
            if isinstance(when, str):
                rejected.append(RejectedRow(line, when))
                continue
            spent_on, iso_day = when
            money = self._money(cells, role, index, lexed_amount, separator, negative_is_expense)
            if isinstance(money, str):
                rejected.append(RejectedRow(line, money))
                continue
            amount, kind, currency = money
            # _one_line() inlined for the usual printable cell: this loop runs once per row
            description = merchant = category = notes = ""
            if description_index is not None:
                text = cells[description_index]
                description = " ".join(text.split()) if text.isprintable() else _one_line(text)
            if merchant_index is not None:
                text = cells[merchant_index]
                merchant = " ".join(text.split()) if text.isprintable() else _one_line(text)
            if category_index is not None:
                text = cells[category_index]
                category = " ".join(text.split()) if text.isprintable() else _one_line(text)
            if notes_index is not None:
                notes = _lines(cells[notes_index])
            description = description or merchant or notes.replace("\n", " ")
            amount_key, description_key = _amount_key(amount), _description_key(description)
            key = (iso_day, currency, amount_key, kind, description_key)
            occurrence = occurrences[key] = occurrences.get(key, 0) + 1
            fingerprint = _fingerprint(prefix, iso_day, currency, amount_key, kind, description_key, occurrence)
            row = StatementRow(
                line,
                spent_on,
                amount,
                kind,
                currency,
                description,
                merchant or None,
                category or None,
                notes or None,
                fingerprint,
            )
            rows.append(row)
        return rows

    def _money(
        self,
        cells: Sequence[str],
        role: str,
        index: int,
        lexed: _Lexed,
        separator: DecimalSeparator,
        negative_is_expense: bool,
    ) -> tuple[Decimal, RowKind, str] | str:
        """The row's positive amount, its kind and its currency; or why the row has none."""
        columns = self.columns
        negative, core, token, marker = lexed
        number = _to_decimal(core, separator)
        if number is None:
            return f"{role} {_show(cells[index].strip())} is not a number written with decimal separator {separator!r}"
        value, decimals = number
        if not value:
            return f"{role} {_show(cells[index].strip())} is zero: there is nothing to record"
        if token is None and columns.currency is None:
            currency = self.fallback_currency
        else:
            if columns.currency is None:  # then the currency depends on the token alone
                resolved = self.token_currencies.get(token)
                if resolved is None:
                    resolved = self.token_currencies[token] = self._row_currency(cells, token)
            else:
                resolved = self._row_currency(cells, token)
            currency, reason = resolved
            if reason is not None:
                return reason
        digits = self.digits.get(currency)
        if digits is None:
            digits = self.digits[currency] = minor_digits(currency)
        if decimals > digits or value > MAX_AMOUNT:
            try:  # the one rule for amounts; only asked when the quick look above has doubts ("12.300")
                to_minor_units(value, currency)
            except InvalidInput as error:
                return str(error)
        kind: RowKind
        if role != "amount":
            kind = "expense" if role == "debit" else "credit"
        elif columns.direction is not None:
            direction = _DIRECTION_WORDS.get(_fold(cells[columns.direction]))
            if direction is None:
                return (
                    f"direction {_show(cells[columns.direction].strip())} is neither debit nor credit (expected "
                    "e.g. Af/Bij, D/C, DR/CR or Debit/Credit)"
                )
            kind = direction
        elif marker is not None:
            kind = "expense" if marker == "DR" else "credit"
        else:
            kind = "expense" if negative == negative_is_expense else "credit"
        return value, kind, currency

    def _row_currency(self, cells: Sequence[str], token: str | None) -> tuple[str, str | None]:
        """The row's currency code, or why it has none: the currency column, else the amount's symbol or
        code, else the currency the amount's header names, else the default currency."""
        from_token = None
        if token is not None:
            from_token = self._currency(token)
            if from_token is None:
                if token.casefold().startswith("kr"):
                    return "", "the amount is in 'kr', which may be SEK, NOK, DKK or ISK: pass that as default_currency"
                return "", f"the amount names an unknown currency {_show(token)}"
        if self.columns.currency is not None and (cell := cells[self.columns.currency].strip()):
            from_column = self._currency(cell)
            if from_column is None:
                return "", f"currency {_show(cell)} is not an ISO 4217 currency code"
            if from_token is not None and from_token != from_column:
                return "", f"the amount is in {from_token} but the currency column says {from_column}"
            return from_column, None
        return from_token or self.fallback_currency, None

    def _currency(self, token: str) -> str | None:
        """An ISO code for a code or symbol as written ("eur", "€", "$", "kr"); None if it names none."""
        if token in self.currencies:
            return self.currencies[token]
        folded = token.strip().casefold()
        code: str | None
        if folded == "$":
            code = self.default_currency if self.default_currency in _DOLLAR_CURRENCIES else "USD"
        elif folded == "¥":
            code = self.default_currency if self.default_currency in _YEN_CURRENCIES else "JPY"
        elif folded in ("kr", "kr."):
            code = self.default_currency if self.default_currency in _KRONA_CURRENCIES else None
        elif folded in _SYMBOLS:
            code = _SYMBOLS[folded]
        else:
            try:
                code = normalize_currency(folded)
            except InvalidInput:
                code = None
        self.currencies[token] = code
        return code


def _to_date(cell: str, day: _LexedDate, order: DateOrder) -> tuple[date, str] | str:
    """A lexed date cell as a date in the file's order; or why it is not one."""
    form, first, second, third = day
    if form == "ymd":
        year, month, day_of_month, written = first, second, third, "valid"
    elif order == "day_first":
        day_of_month, month, year, written = first, second, third, "valid day-first"
    elif order == "month_first":
        month, day_of_month, year, written = first, second, third, "valid month-first"
    else:
        return f"date {_show(cell.strip())} is not written YYYY-MM-DD, as date_order='iso' says"
    try:
        value = date(year, month, day_of_month)
    except ValueError:
        return f"date {_show(cell.strip())} is not a {written} date"
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return f"date {_show(cell.strip())} is out of range (years {_MIN_YEAR} to {_MAX_YEAR})"
    return value, value.isoformat()
