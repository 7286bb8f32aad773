"""Bank statements in and expenses out: the import, the export and the category rules the import files by.

An import is one unit of work: the statement is parsed first (no database lock held while it is read),
then its rows are checked against the fingerprints of earlier imports, filed into categories and added
with bulk inserts, and the whole import is logged as one change that undo_change reverts as a whole.
A dry run does all of it and is rolled back by the caller, so a preview is exactly what the import does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Row
from sqlalchemy.orm import Session

from . import audit
from . import repository as repo
from .errors import Conflict, InvalidInput, NotFound
from .models import Category, CategoryRule, StatementImport
from .money import MAX_AMOUNT, format_amount, minor_digits, to_minor_units
from .schemas import (
    DESCRIPTION_MAX,
    FILE_NAME_MAX,
    MERCHANT_MAX,
    NOTES_MAX,
    CategoryRuleChange,
    CategoryRuleList,
    CategoryRuleOut,
    ExpenseExport,
    ExportFormat,
    ImportResult,
    ImportRow,
    ImportStatus,
    StatementFormat,
    StatementOptions,
    category_key,
)
from .service import (
    Caller,
    bad_cursor,
    create_category,
    decode_cursor,
    encode_cursor,
    expenses_position,
    fingerprint,
    offset_position,
    period_used,
    receipt,
    require_category,
    require_own_category,
    totals,
)

if TYPE_CHECKING:
    from .statements import ParsedStatement, StatementRow

Progress = Callable[[int, int], None]
"""Called as the rows go in: (rows done, rows in all)."""

UNCATEGORIZED = "Uncategorized"
NO_DESCRIPTION = "(no description)"
INSERT_CHUNK = 5000  # rows per bulk insert, and per progress report
MAX_RULES = 500
EXPORT_COLUMNS = ("date", "amount", "currency", "category", "description", "merchant", "notes", "id")
_EXPORT_HEADER = ",".join(EXPORT_COLUMNS)
_PREVIEW_NOTE_MAX = 300


# --- where the statement comes from -------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """A statement to import: its contents and, when it came from a file, the file's name."""

    data: bytes | str
    file_name: str | None = None


def read_statement_file(path: str | os.PathLike[str]) -> Statement:
    """The statement in a file on this machine: an existing regular file no larger than the parser takes
    (its size is checked before it is read)."""
    from .statements import MAX_STATEMENT_BYTES

    file = Path(path).expanduser()
    if not file.is_absolute():
        raise InvalidInput(f"path {str(path)!r} is relative; give the file's absolute path, e.g. /home/me/bank.csv")
    try:
        info = file.stat()
    except FileNotFoundError:
        raise NotFound(f"no file at {str(file)!r}; check the path (absolute, on the server's machine)") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {str(file)!r}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{str(file)!r} is not a regular file; give the path of the CSV file itself")
    if info.st_size > MAX_STATEMENT_BYTES:
        raise InvalidInput(
            f"{file.name} is {info.st_size:,} bytes; the most one import takes is {MAX_STATEMENT_BYTES:,} bytes "
            f"({MAX_STATEMENT_BYTES // (1024 * 1024)} MiB): split the export into smaller files (e.g. one per "
            "year or quarter) and import each"
        )
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_STATEMENT_BYTES + 1)  # it may have grown since stat()
    except OSError as error:
        raise InvalidInput(f"cannot read {str(file)!r}: {error.strerror or error}") from None
    return Statement(data, file.name[:FILE_NAME_MAX])


def statement_from(csv_text: str | None, path: str | None, *, allow_path: bool) -> Statement:
    """The statement a tool call names: exactly one of its text or a path (on servers that may read files)."""
    if (csv_text is None) == (path is None):
        raise InvalidInput("pass exactly one of csv_text (the statement's contents) or path (a file on the server)")
    if csv_text is not None:
        return Statement(csv_text)
    if not allow_path:
        raise InvalidInput(
            "path is not available on this server: it serves several users over HTTP and reads no files; "
            "pass the file's contents as csv_text"
        )
    assert path is not None
    return read_statement_file(path)


# --- the import ---------------------------------------------------------------------------------------


class _Filed(NamedTuple):
    """A statement row to add: its category and why."""

    row: StatementRow
    amount_minor: int
    category_id: int | None  # None: Uncategorized, created when first needed
    note: str


class _Entry(NamedTuple):
    """One line of the preview."""

    line: int
    status: ImportStatus
    row: StatementRow | None
    filed: _Filed | None
    note: str | None


class _Rules:
    """The user's category rules, longest pattern first (ties: the older rule): the first whose pattern
    occurs in a row's merchant or description, compared case-folded, files it."""

    def __init__(self, rules: Sequence[tuple[CategoryRule, str]]) -> None:
        ordered = sorted(rules, key=lambda found: (-len(found[0].pattern_key), found[0].id))
        self._rules = [(rule.pattern_key, rule.category_id, f"rule {rule.pattern!r}") for rule, _ in ordered]
        self._seen: dict[tuple[str | None, str], tuple[int, str] | None] = {}

    def match(self, merchant: str | None, description: str) -> tuple[int, str] | None:
        """(category id, why) of the rule that files the row, if any."""
        if not self._rules:
            return None
        key = (merchant, description)
        if key in self._seen:  # statements repeat their merchants and descriptions
            return self._seen[key]
        folded_description = category_key(description)
        folded_merchant = category_key(merchant) if merchant else ""
        found = next(
            (
                (category_id, why)
                for pattern, category_id, why in self._rules
                if pattern in folded_description or pattern in folded_merchant
            ),
            None,
        )
        self._seen[key] = found
        return found


def _own_export_defaults(data: bytes | str, options: StatementOptions) -> StatementOptions:
    """A file written by export_expenses reads unambiguously: ISO dates, '.' decimals, positive amounts
    that are expenses. Say so, so that a file of 1.250 KWD amounts or of one row needs no questions."""
    head = data[:100]
    first = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    if not first.removeprefix("\ufeff").startswith(_EXPORT_HEADER):
        return options
    return options.model_copy(
        update={
            "date_order": options.date_order or "iso",
            "decimal_separator": options.decimal_separator or ".",
            "sign_convention": options.sign_convention or "positive_is_expense",
        }
    )


def _parse(statement: Statement, caller: Caller, options: StatementOptions) -> ParsedStatement:
    from .statements import ColumnMapping, parse_statement

    options = _own_export_defaults(statement.data, options)
    columns = options.columns.given()
    mapping = None
    if columns:
        missing = [] if "date" in columns else ["date"]
        if not {"amount", "debit", "credit"} & columns.keys():
            missing.append("amount (or debit and/or credit)")
        if missing:
            raise InvalidInput(
                f"columns names some columns but not the {' nor the '.join(missing)} column: name those too, e.g. "
                '{"date": "Posting Date", "amount": "Amount"} (the other fields are optional), or leave columns '
                "out to have them detected"
            )
        mapping = ColumnMapping(**columns)
    try:
        return parse_statement(
            statement.data,
            source=options.source,
            default_currency=options.currency or caller.default_currency,
            mapping=mapping,
            date_order=options.date_order,
            decimal_separator=options.decimal_separator,
            sign_convention=options.sign_convention,
        )
    except InvalidInput as error:  # the parser's "mapping" is this call's "columns"
        raise InvalidInput(re.sub(r"\bmapping\b", "columns", str(error))) from None


def _cut(text: str | None, most: int) -> str | None:
    if text is None or len(text) <= most:
        return text
    return text[: most - 1] + "…"


def import_statement(
    session: Session,
    caller: Caller,
    statement: Statement,
    options: StatementOptions,
    *,
    dry_run: bool,
    skip_rejected: bool = False,
    preview_limit: int = 20,
    preview_status: ImportStatus | None = None,
    cursor: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a bank statement's expenses: all that are new, or (the statement is refused) none.

    Rows imported before under the same source are duplicates; credits (money in) are skipped; rows the
    parser rejects are reported, and refuse the whole import unless ``skip_rejected`` (a preview lists them
    and imports nothing anyway); every row rejected refuses it in any case. Rows are filed by
    the user's category rules, else by the file's category column when it names an existing category,
    else into Uncategorized (created when first needed).
    """
    parsed = _parse(statement, caller, options)  # before any query: no lock is held while the file is read
    kind = "import:" + _call_digest(statement, options, preview_status)
    offset = offset_position(cursor, kind) if cursor else 0
    rejected: dict[int, str] = {r.line: r.reason for r in parsed.rejected}
    amounts: dict[int, int] = {}
    digits: dict[str, int] = {}
    for row in parsed.rows:
        try:
            amounts[row.line] = _minor_units(row.amount, row.currency, digits)
        except InvalidInput as error:  # the parser checks amounts by the same rule; a safety net
            rejected[row.line] = str(error)
    if len(rejected) == len(parsed.rows) + len(parsed.rejected):
        shown = "; ".join(f"line {line}: {reason}" for line, reason in sorted(rejected.items())[:5])
        raise InvalidInput(
            f"every row of the statement was rejected ({len(rejected)}), so nothing was imported: {shown}"
            + (" ..." if len(rejected) > 5 else "")
            + ". Fix the file, or pass date_order, decimal_separator, sign_convention or the *_column names"
        )
    if rejected and not dry_run and not skip_rejected:
        shown = "; ".join(f"line {line}: {reason}" for line, reason in sorted(rejected.items())[:3])
        raise InvalidInput(
            f"{len(rejected)} row(s) of the statement could not be read, so nothing was imported: {shown}"
            + (" ..." if len(rejected) > 3 else "")
            + ". Fix the file, or call again with skip_rejected=true to import the other rows (a preview, "
            "dry_run=true with preview_status='rejected', lists every rejected row)"
        )

    user_id = repo.ensure_user(session, caller.user)
    expenses = [row for row in parsed.rows if row.kind == "expense" and row.line not in rejected]
    known = repo.imported_fingerprints(session, user_id, [row.fingerprint for row in expenses])
    rules = _Rules(repo.rules_with_categories(session, user_id))
    categories = repo.categories_by_key(session, user_id)

    entries: list[_Entry] = [_Entry(line, "rejected", None, None, reason) for line, reason in rejected.items()]
    to_add: list[_Filed] = []
    seen: set[str] = set()
    for row in parsed.rows:
        if row.line in rejected:
            continue
        if row.kind == "credit":
            entries.append(_Entry(row.line, "credit_skipped", row, None, "money in: only expenses are imported"))
        elif row.fingerprint in known:
            previous = known[row.fingerprint]
            note = (
                f"imported before as expense {previous}" if previous is not None else "imported before (deleted since)"
            )
            entries.append(_Entry(row.line, "duplicate", row, None, note))
        elif row.fingerprint in seen:  # the parser numbers identical rows apart; never expected
            entries.append(_Entry(row.line, "duplicate", row, None, "listed twice in this file"))
        else:
            seen.add(row.fingerprint)
            filed = _file(row, amounts[row.line], rules, categories)
            to_add.append(filed)
            entries.append(_Entry(row.line, "add", row, filed, filed.note))
    entries.sort(key=lambda entry: entry.line)

    uncategorized = _uncategorized(session, caller, categories) if any(f.category_id is None for f in to_add) else None
    names = {category_id: name for category_id, name in categories.values()}

    counts: Counter[str] = Counter(entry.status for entry in entries)
    record = None
    change_id = None
    if to_add:
        record = StatementImport(
            user_id=user_id,
            source=options.source,
            file_name=statement.file_name,
            added=len(to_add),
            duplicates=counts["duplicate"],
            rejected=counts["rejected"],
            credits=counts["credit_skipped"],
        )
        session.add(record)
        session.flush()
        _insert(session, user_id, record.id, to_add, uncategorized, progress)
        change_id = audit.record(
            session,
            user_id,
            "import_expenses_csv",
            f"imported {len(to_add)} expense(s) from {options.source!r}"
            + (f" ({statement.file_name})" if statement.file_name else "")
            + f": {_totals_text(to_add)}",
            [audit.created(record)],
        )
        record.change_id = change_id
        session.flush()

    def category_of(filed: _Filed) -> str:
        return names[filed.category_id if filed.category_id is not None else uncategorized]  # type: ignore[index]

    by_category = Counter(category_of(filed) for filed in to_add)
    sums: dict[str, int] = {}
    per_currency: Counter[str] = Counter()
    for filed in to_add:
        sums[filed.row.currency] = sums.get(filed.row.currency, 0) + filed.amount_minor
        per_currency[filed.row.currency] += 1
    listed = [e for e in entries if preview_status is None or e.status == preview_status]
    page = listed[offset : offset + preview_limit]
    more = offset + preview_limit < len(listed)
    return ImportResult(
        import_id=None if dry_run or record is None else record.id,
        format=_format(parsed),
        rows=len(entries),
        added=len(to_add),
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        credits_skipped=counts["credit_skipped"],
        totals=totals([repo.CurrencySum(c, per_currency[c], sums[c]) for c in sorted(sums)]),
        categories=dict(by_category.most_common()),
        preview=[_preview(e, category_of(e.filed) if e.filed else None) for e in page],
        next_cursor=encode_cursor(kind, offset + preview_limit) if more else None,
        message=_message(len(to_add), counts, dry_run=dry_run, change_id=change_id),
        **receipt(change_id, dry_run),
    )


def _minor_units(amount: Decimal, currency: str, digits: dict[str, int]) -> int:
    """:func:`money.to_minor_units`, quicker for the exact amounts a parsed statement holds: the shifted
    amount is used when it is a whole number in range; anything else gets the rule itself (and its error)."""
    if currency not in digits:
        digits[currency] = minor_digits(currency)
    if amount.is_finite():
        shifted = amount.scaleb(digits[currency])
        whole = int(shifted)
        if whole == shifted and 0 < amount <= MAX_AMOUNT:
            return whole
    return to_minor_units(amount, currency)


def _file(row: StatementRow, amount_minor: int, rules: _Rules, categories: dict[str, tuple[int, str]]) -> _Filed:
    """Where a row goes: a rule's category, else the file's category if it exists here, else Uncategorized."""
    rule = rules.match(row.merchant, row.description)
    if rule is not None:
        return _Filed(row, amount_minor, *rule)
    if row.category:
        found = categories.get(category_key(row.category))
        if found is not None:
            return _Filed(row, amount_minor, found[0], "the file's category")
        return _Filed(row, amount_minor, None, f"the file's category {row.category!r} does not exist here")
    return _Filed(row, amount_minor, None, "no rule matched")


def _uncategorized(session: Session, caller: Caller, categories: dict[str, tuple[int, str]]) -> int:
    """The id of the Uncategorized category, created if missing: as create_category does, with its own entry
    in the audit log, so undoing the import leaves it (and what later imports filed into it) alone."""
    key = category_key(UNCATEGORIZED)
    if key not in categories:
        create_category(session, caller, UNCATEGORIZED)
        found = repo.find_category(session, repo.ensure_user(session, caller.user), key)
        assert found is not None
        categories[key] = (found.id, found.name)
    return categories[key][0]


def _insert(
    session: Session,
    user_id: int,
    import_id: int,
    rows: list[_Filed],
    uncategorized: int | None,
    progress: Progress | None,
) -> None:
    """Bulk-insert the expenses and their fingerprints, a chunk at a time, reporting progress per chunk."""
    now = datetime.now(UTC)
    total = len(rows)
    if progress is not None:
        progress(0, total)
    for start in range(0, total, INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        ids = repo.reserve_expense_ids(session, len(chunk))
        repo.insert_expenses(
            session,
            [
                {
                    "id": expense_id,
                    "user_id": user_id,
                    "category_id": filed.category_id if filed.category_id is not None else uncategorized,
                    "amount_minor": filed.amount_minor,
                    "currency": filed.row.currency,
                    "spent_on": filed.row.spent_on,
                    "description": _cut(filed.row.description, DESCRIPTION_MAX) or NO_DESCRIPTION,
                    "merchant": _cut(filed.row.merchant, MERCHANT_MAX),
                    "notes": _cut(filed.row.notes, NOTES_MAX) if filed.row.notes else None,
                    "import_id": import_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for expense_id, filed in zip(ids, chunk, strict=True)
            ],
        )
        repo.insert_imported_rows(
            session,
            [
                {"user_id": user_id, "fingerprint": filed.row.fingerprint, "import_id": import_id, "expense_id": eid}
                for eid, filed in zip(ids, chunk, strict=True)
            ],
        )
        if progress is not None:
            progress(start + len(chunk), total)


def _call_digest(statement: Statement, options: StatementOptions, preview_status: str | None) -> str:
    data = statement.data.encode("utf-8", "surrogatepass") if isinstance(statement.data, str) else statement.data
    return fingerprint(hashlib.sha256(data).hexdigest(), options.model_dump(mode="json"), preview_status)


def _format(parsed: ParsedStatement) -> StatementFormat:
    mapping = {name: value for name, value in vars(parsed.mapping).items() if value is not None}
    return StatementFormat(
        encoding=parsed.encoding,
        delimiter={"\t": "tab"}.get(parsed.delimiter, parsed.delimiter),
        header_line=parsed.header_line,
        columns=mapping,
        columns_inferred=parsed.mapping_inferred,
        date_order=parsed.date_order,
        decimal_separator=parsed.decimal_separator,
        sign_convention=parsed.sign_convention,
    )


def _preview(entry: _Entry, category: str | None) -> ImportRow:
    row = entry.row
    return ImportRow(
        line=entry.line,
        status=entry.status,
        spent_on=row.spent_on if row else None,
        amount=_amount_text(row.amount, row.currency) if row else None,
        currency=row.currency if row else None,
        description=_cut(row.description, DESCRIPTION_MAX) if row else None,
        category=category,
        note=_cut(entry.note, _PREVIEW_NOTE_MAX),
    )


def _amount_text(amount: Decimal, currency: str) -> str:
    try:
        return format_amount(to_minor_units(amount, currency), currency)
    except InvalidInput:  # a rejected row's amount, shown as read
        return str(amount)


def _totals_text(rows: Iterable[_Filed]) -> str:
    sums: dict[str, int] = {}
    for filed in rows:
        sums[filed.row.currency] = sums.get(filed.row.currency, 0) + filed.amount_minor
    return ", ".join(f"{format_amount(total, currency)} {currency}" for currency, total in sorted(sums.items()))


def _message(added: int, counts: Mapping[str, int], *, dry_run: bool, change_id: int | None) -> str:
    skipped = []
    if counts["duplicate"]:
        skipped.append(f"{counts['duplicate']} imported before")
    if counts["credit_skipped"]:
        skipped.append(f"{counts['credit_skipped']} credit(s) (money in is not recorded as expenses)")
    if counts["rejected"]:
        skipped.append(f"{counts['rejected']} rejected (see preview_status='rejected')")
    rest = f"; skipped: {', '.join(skipped)}" if skipped else ""
    if dry_run:
        if not added:
            return f"Preview: nothing new to import{rest}. Nothing was saved."
        return (
            f"Preview: {added} expense(s) would be added{rest}. Nothing was saved: show this to the user and, "
            "with their consent, call again with dry_run=false."
        )
    if not added:
        return f"Nothing new to import{rest}; nothing was changed."
    return f"Added {added} expense(s){rest}. undo_change with change_id={change_id} removes the whole import."


# --- category rules -----------------------------------------------------------------------------------


def _rule_out(rule: CategoryRule, category: str) -> CategoryRuleOut:
    return CategoryRuleOut(pattern=rule.pattern, category=category)


def add_category_rule(
    session: Session, caller: Caller, pattern: str, category: str, *, dry_run: bool
) -> CategoryRuleChange:
    """File imported rows whose merchant or description contains ``pattern`` under ``category``; a rule for
    the same pattern (any case) is pointed at the new category."""
    target = require_own_category(session, caller, category)
    user_id = target.user_id
    key = category_key(pattern)
    rule = repo.find_rule(session, user_id, key)
    if rule is None:
        if repo.count_rules(session, user_id) >= MAX_RULES:
            raise Conflict(f"a user may have at most {MAX_RULES} category rules; delete_category_rule removes one")
        rule = CategoryRule(user_id=user_id, pattern=pattern, pattern_key=key, category_id=target.id)
        session.add(rule)
        session.flush()
        item, replaced = audit.created(rule), None
        summary = f"added rule {pattern!r} -> {target.name}"
    else:
        replaced = session.get_one(Category, rule.category_id).name
        before = audit.snapshot(rule)
        rule.pattern, rule.category_id = pattern, target.id
        session.flush()
        item = audit.updated(before, rule)
        summary = f"rule {pattern!r} now files into {target.name} (was {replaced})"
    change_id = (
        audit.record(session, user_id, "add_category_rule", summary, [item]) if item.before != item.after else None
    )
    return CategoryRuleChange(rule=_rule_out(rule, target.name), replaced=replaced, **receipt(change_id, dry_run))


def delete_category_rule(session: Session, caller: Caller, pattern: str, *, dry_run: bool) -> CategoryRuleChange:
    user_id = repo.find_user_id(session, caller.user)
    rule = repo.find_rule(session, user_id, category_key(pattern)) if user_id is not None else None
    if rule is None:
        raise NotFound(f"no category rule {pattern!r}; list_category_rules shows the rules")
    category = session.get_one(Category, rule.category_id).name
    before = audit.snapshot(rule)
    out = _rule_out(rule, category)
    session.delete(rule)
    session.flush()
    change_id = audit.record(
        session,
        rule.user_id,
        "delete_category_rule",
        f"deleted rule {rule.pattern!r} -> {category}",
        [audit.deleted(before, CategoryRule)],
    )
    return CategoryRuleChange(rule=out, replaced=None, **receipt(change_id, dry_run))


def list_category_rules(session: Session, caller: Caller, *, limit: int, cursor: str | None) -> CategoryRuleList:
    after = decode_cursor(cursor, "rules") if cursor else None
    if after is not None and not (isinstance(after, str) and after):
        raise bad_cursor()
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return CategoryRuleList(rules=[], count=0, next_cursor=None)
    rows = repo.rules_page(session, user_id, after_key=after, limit=limit + 1)
    page = rows[:limit]
    return CategoryRuleList(
        rules=[_rule_out(rule, name) for rule, name in page],
        count=repo.count_rules(session, user_id),
        next_cursor=encode_cursor("rules", page[-1][0].pattern_key) if len(rows) > limit else None,
    )


# --- export -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportQuery:
    """Which expenses an export holds: a period and filters, resolved for one user."""

    user_id: int | None
    where: repo.SearchFilter
    days: Any  # periods.DateRange
    kind: str


def export_query(
    session: Session,
    caller: Caller,
    *,
    format: ExportFormat,
    days: tuple[date | None, date | None, str | None],
    category: str | None,
    currency: str | None,
) -> ExportQuery:
    from .money import normalize_currency

    used = caller.range(*days)
    currency = normalize_currency(currency) if currency is not None else None
    user_id = repo.find_user_id(session, caller.user)
    found = require_category(session, user_id, category) if category is not None else None
    where = repo.SearchFilter(
        category_id=found.id if found is not None else None, currency=currency, start=used.start, end=used.end
    )
    kind = "export:" + fingerprint(format, where.category_id, currency, used)
    return ExportQuery(user_id, where, used, kind)


def export_expenses(
    session: Session,
    caller: Caller,
    *,
    format: ExportFormat,
    days: tuple[date | None, date | None, str | None],
    category: str | None,
    currency: str | None,
    limit: int,
    cursor: str | None,
) -> ExpenseExport:
    """One page of the matching expenses, oldest first, as CSV or JSON text (each page complete on its own)."""
    query = export_query(session, caller, format=format, days=days, category=category, currency=currency)
    after = expenses_position(cursor, query.kind) if cursor else None
    rows: Sequence[Row[Any]] = []
    sums: list[repo.CurrencySum] = []
    if query.user_id is not None:
        stmt = repo.expenses_in_date_order(query.user_id, query.where, after=after).limit(limit + 1)
        rows = session.execute(stmt).all()
        sums = repo.search_sums(session, query.user_id, query.where)
    page = rows[:limit]
    last = page[-1] if page else None
    more = last is not None and len(rows) > limit
    return ExpenseExport(
        format=format,
        period=period_used(query.days),
        count=sum(s.count for s in sums),
        exported=len(page),
        totals=totals(sums),
        text="".join(export_chunks(page, format)),
        next_cursor=encode_cursor(query.kind, [last.spent_on.isoformat(), last.id]) if more and last else None,
    )


def stream_export(session: Session, query: ExportQuery, format: ExportFormat, *, batch: int = 1000) -> Iterator[str]:
    """Every matching expense, oldest first, as pieces of CSV or JSON text, read from the database a batch at
    a time (keyset pages, in the session's one transaction): memory stays flat however many there are."""
    yield from export_chunks(_in_batches(session, query, batch), format, batch=batch)


def _in_batches(session: Session, query: ExportQuery, batch: int) -> Iterator[Row[Any]]:
    if query.user_id is None:  # a user who never recorded anything
        return
    after: tuple[date, int] | None = None
    while True:
        stmt = repo.expenses_in_date_order(query.user_id, query.where, after=after).limit(batch)
        rows = session.execute(stmt).all()
        yield from rows
        if len(rows) < batch:
            return
        after = (rows[-1].spent_on, rows[-1].id)


def export_chunks(rows: Iterable[Row[Any]], format: ExportFormat, *, batch: int = 1000) -> Iterator[str]:
    """Rows of :data:`repository.EXPENSE_COLUMNS` as CSV (with its header) or a JSON array, in pieces of
    ``batch`` rows. Amounts are exact decimal strings; the CSV imports back with import_expenses_csv."""
    if format == "json":
        yield "["
        first = True
        for row in rows:
            yield ("\n" if first else ",\n") + json.dumps(_exported(row), ensure_ascii=False)
            first = False
        yield "\n]\n" if not first else "]\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for count, row in enumerate(rows, start=1):
        values = _exported(row)
        writer.writerow(["" if values[name] is None else values[name] for name in EXPORT_COLUMNS])
        if count % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _exported(row: Row[Any]) -> dict[str, Any]:
    return {
        "date": row.spent_on.isoformat(),
        "amount": format_amount(row.amount_minor, row.currency),
        "currency": row.currency,
        "category": row.category,
        "description": row.description,
        "merchant": row.merchant,
        "notes": row.notes,
        "id": row.id,
    }
