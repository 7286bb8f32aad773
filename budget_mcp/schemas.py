"""Typed inputs and outputs. Field descriptions are read by the language model that calls the tools."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from .errors import InvalidInput
from .money import MAX_AMOUNT, normalize_currency
from .periods import Month, PeriodName

NAME_MAX = 64
DESCRIPTION_MAX = 500
MERCHANT_MAX = 200
NOTES_MAX = 2000
MAX_ID = 2**31 - 1
PAGE_MAX = 200
GROUPS_MAX = 1000
IDEMPOTENCY_KEY_MAX = 100
MAX_TREND_MONTHS = 120
NAME_KEY_MAX = NAME_MAX * 3  # room for case folding and compatibility forms of a 64-character name
SOURCE_MAX = 64
FILE_NAME_MAX = 255
RULE_PATTERN_MAX = 100
RULE_PATTERN_KEY_MAX = RULE_PATTERN_MAX * 3
PREVIEW_MAX = 200
EXPORT_MAX = 5000

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# --- validators: one place for each rule -------------------------------------------------------------


def _check_text(value: str, *, multiline: bool) -> str:
    """Strip outer white space; refuse empty text and control characters (kept literally otherwise)."""
    if multiline:
        value = value.replace("\r\n", "\n")
    value = value.strip()
    if not value:
        raise InvalidInput("must not be empty or only white space")
    allowed = {"\n", "\t"} if multiline else set()
    for ch in value:
        if ch in allowed:
            continue
        kind = unicodedata.category(ch)
        if kind in {"Cc", "Cs"} or (not multiline and kind in {"Zl", "Zp"}):
            raise InvalidInput(
                f"must not contain control characters (found U+{ord(ch):04X})"
                + ("" if multiline else "; use one line of plain text")
            )
    return value


def _single_line(value: str) -> str:
    return _check_text(value, multiline=False)


def _multi_line(value: str) -> str:
    return _check_text(value, multiline=True)


def parse_iso_date(value: object) -> date:
    """The one date parser: a real calendar date written YYYY-MM-DD."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise InvalidInput(f"expected a date written YYYY-MM-DD (e.g. 2026-03-14), got {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{value.strip()} is not a real calendar date") from None


def _not_a_boolean(value: object) -> object:
    """Integers stay lax ("5" and 5.0 are 5), but a JSON true must not become id 1 or a page of one."""
    if isinstance(value, bool):
        raise InvalidInput("Input should be a valid integer, not a boolean")
    return value


def category_key(name: str) -> str:
    """How category names compare: case-insensitively and by Unicode compatibility ("Food" == "FOOD")."""
    return unicodedata.normalize("NFKC", name).casefold()


def _comparable_name(value: str) -> str:
    if len(category_key(value)) > NAME_KEY_MAX:  # a few ligatures expand many times over when normalised
        raise InvalidInput(f"is too long once normalised; use at most {NAME_MAX} ordinary letters")
    return value


# --- input types --------------------------------------------------------------------------------------

Amount = Annotated[
    Decimal,
    Field(
        gt=0,
        le=MAX_AMOUNT,
        allow_inf_nan=False,
        description=(
            'In major units, as a number or decimal string: 12.3 or "12.30"; no more decimals than the '
            "currency has (2 for USD, 0 for JPY)."
        ),
    ),
]
CurrencyCode = Annotated[
    str,
    Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. USD, EUR."),
    AfterValidator(normalize_currency),
]
IsoDate = Annotated[
    date,
    BeforeValidator(parse_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "description": "A date written YYYY-MM-DD."}),
]
CategoryName = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX, description="Category name; matched case-insensitively."),
    AfterValidator(_single_line),
    AfterValidator(_comparable_name),
]
Description = Annotated[
    str,
    Field(min_length=1, max_length=DESCRIPTION_MAX, description="What was bought, one line."),
    AfterValidator(_single_line),
]
Merchant = Annotated[
    str,
    Field(min_length=1, max_length=MERCHANT_MAX, description="Where it was bought (shop, payee)."),
    AfterValidator(_single_line),
]
Notes = Annotated[
    str,
    Field(min_length=1, max_length=NOTES_MAX, description="Free-form notes; may span several lines."),
    AfterValidator(_multi_line),
]
ExpenseId = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="An expense's id, as returned by other tools."),
    BeforeValidator(_not_a_boolean),
]
PageLimit = Annotated[
    int, Field(ge=1, le=PAGE_MAX, description=f"Page size, 1 to {PAGE_MAX}."), BeforeValidator(_not_a_boolean)
]
GroupLimit = Annotated[
    int,
    Field(ge=1, le=GROUPS_MAX, description=f"Most groups to return, 1 to {GROUPS_MAX}."),
    BeforeValidator(_not_a_boolean),
]
Cursor = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="The previous result's next_cursor, unchanged.",
    ),
]
GroupBy = Literal["category", "month", "week", "day", "merchant"]
ClearableField = Literal["merchant", "notes"]


class NewExpense(BaseModel):
    """What create_expense stores. The currency's decimals are checked by the service."""

    model_config = ConfigDict(frozen=True)

    amount: Amount
    description: Description
    category: CategoryName
    spent_on: IsoDate | None = None
    currency: CurrencyCode | None = None
    merchant: Merchant | None = None
    notes: Notes | None = None


class ExpenseChanges(BaseModel):
    """What update_expense changes: every field left out (None) stays as it is."""

    model_config = ConfigDict(frozen=True)

    amount: Amount | None = None
    description: Description | None = None
    category: CategoryName | None = None
    spent_on: IsoDate | None = None
    currency: CurrencyCode | None = None
    merchant: Merchant | None = None
    notes: Notes | None = None
    clear: frozenset[ClearableField] = frozenset()

    def is_empty(self) -> bool:
        return not self.clear and all(
            getattr(self, name) is None for name in type(self).model_fields if name != "clear"
        )


# --- outputs ------------------------------------------------------------------------------------------

MoneyText = Annotated[str, Field(pattern=r"^\d+(\.\d+)?$")]  # exact, in the currency's minor digits


class Expense(BaseModel):
    """One stored expense."""

    id: int
    amount: MoneyText
    currency: str
    category: str
    spent_on: date
    description: str
    merchant: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class ExpenseSaved(Expense):
    """The expense as this call stored it, and the audit log entry that records the call."""

    change_id: int | None = Field(
        description="For undo_change; null when an update changed nothing. A repeated idempotency_key "
        "returns the first call's expense and change_id."
    )


class CurrencyTotal(BaseModel):
    """A sum in one currency. Different currencies are never added together."""

    currency: str
    total: MoneyText
    count: int = Field(description="How many expenses the total covers.")


class ExpensePage(BaseModel):
    """One page of a category's expenses, newest first, with totals over every match (not just this page)."""

    category: str
    start_date: date | None = Field(description="First day included; null: no limit.")
    end_date: date | None = Field(description="Last day included; null: no limit.")
    period: str | None = Field(description="The named period the dates came from, if one was given.")
    expenses: list[Expense]
    count: int = Field(description="How many expenses match in all, across every page.")
    totals: list[CurrencyTotal] = Field(description="Sum of every match, one entry per currency.")
    next_cursor: str | None = Field(
        description="Null when this is the last page; otherwise pass it as cursor to get the next page."
    )


class SpendingGroup(BaseModel):
    """Spending of one group (a category, month, week, day or merchant) in one currency."""

    key: str | None = Field(
        description=(
            "The group: a category name, a month YYYY-MM, the Monday YYYY-MM-DD starting a week, "
            "a day YYYY-MM-DD, or a merchant (null for expenses without one)."
        )
    )
    currency: str
    total: MoneyText
    count: int
    share_percent: str = Field(description="This group's share of the period's total in this currency, in %.")


class SpendingSummary(BaseModel):
    """Spending in a period, grouped, with grand totals per currency."""

    start_date: date
    end_date: date
    period: str | None = Field(description="The named period the dates came from, if one was given.")
    group_by: GroupBy
    groups: list[SpendingGroup]
    totals: list[CurrencyTotal] = Field(description="Grand total of the period, one entry per currency.")
    count: int = Field(description="How many expenses the period holds.")
    group_count: int = Field(description="How many groups there are in all, across every page.")
    next_cursor: str | None = Field(
        description="Null when every group is listed; otherwise pass it as cursor to get more groups."
    )


class Category(BaseModel):
    """A spending category."""

    name: str
    expense_count: int = Field(description="How many expenses are filed under it.")


class CategoryCreated(Category):
    """The new category, and the audit log entry that records it."""

    change_id: int = Field(description="For undo_change.")


class CategoryList(BaseModel):
    """The user's categories in alphabetical order."""

    categories: list[Category]
    count: int = Field(description="How many categories exist in all.")
    next_cursor: str | None = Field(
        description="Null when every category is listed; otherwise pass it as cursor for the rest."
    )


# --- budgets, reports, bulk changes and the audit log ----------------------------------------------------

SignedMoneyText = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$")]
PercentText = Annotated[str, Field(pattern=r"^-?\d+\.\d\d$")]
MonthText = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]


def _month(value: object) -> str:
    return str(Month.parse(value))


MonthArg = Annotated[
    str,
    BeforeValidator(_month),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$", "description": "A month written YYYY-MM."}),
]
Period = Annotated[
    PeriodName,
    Field(description=("A named period instead of start_date/end_date, counted from today in the user's time zone.")),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[!-~]+$",
        description=(
            "Any unique text without spaces (e.g. a UUID) naming this one expense: a retried call with the "
            "same key returns the first result instead of recording it twice."
        ),
    ),
]
ExpenseIds = Annotated[
    list[ExpenseId],
    Field(min_length=1, max_length=500, description="Ids of the expenses, 1 to 500 of them."),
]
ChangeId = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="A change's id, from list_changes."),
    BeforeValidator(_not_a_boolean),
]
DryRun = Annotated[bool, Field(description="True: report exactly what would change, and change nothing.")]


class ChangeReceipt(BaseModel):
    """Where a change went in the audit log."""

    change_id: int | None = Field(description="For undo_change; null on a dry run.")
    dry_run: bool = Field(description="True: a preview; nothing was changed.")


class BudgetSpan(BaseModel):
    """One monthly limit over a span of months."""

    category: str
    from_month: MonthText
    through_month: MonthText | None = Field(description="Last month it applies to; null: every month on.")
    amount: MoneyText = Field(description="The limit for each month.")
    currency: str
    rollover: bool = Field(description="Whether each month's unspent (or overspent) amount carries forward.")


class BudgetChange(ChangeReceipt):
    """What set_budget or delete_budget did: the spans now in force and the ones replaced or removed."""

    category: str
    from_month: MonthText
    through_month: MonthText | None
    budget: BudgetSpan | None = Field(description="The new limit (null after delete_budget).")
    replaced: list[BudgetSpan] = Field(description="Spans that covered these months before (now cut or removed).")


class Pace(BaseModel):
    """How spending so far compares with an even spread over the month (current month only)."""

    expected_by_today: SignedMoneyText = Field(
        description="What is available (limit plus carried over) times the share of the month passed."
    )
    projected_month_end: MoneyText = Field(description="Spending so far extrapolated to the whole month.")
    on_track: bool = Field(description="Spent so far is at most expected_by_today.")


class BudgetLine(BaseModel):
    """One budgeted category in a month."""

    category: str
    currency: str
    limit: MoneyText = Field(description="The month's own limit.")
    carried_over: SignedMoneyText = Field(description="Rolled over from earlier months (negative: overspent).")
    available: SignedMoneyText = Field(description="limit + carried_over.")
    spent: MoneyText = Field(description="Spent in this category in the budget's currency this month.")
    remaining: SignedMoneyText = Field(description="available - spent; negative when over.")
    percent_used: PercentText | None = Field(description="spent / available in %; null when available <= 0.")
    over: bool = Field(description="True when spent exceeds available.")
    rollover: bool
    pace: Pace | None = Field(description="Only for the current month.")


class BudgetTotal(BaseModel):
    """The month's budgets added up, per currency."""

    currency: str
    available: SignedMoneyText
    spent: MoneyText
    remaining: SignedMoneyText


class UnbudgetedSpending(BaseModel):
    category: str
    currency: str
    total: MoneyText
    count: int


class BudgetStatus(BaseModel):
    """Budgets against spending for one month."""

    month: MonthText
    start_date: date
    end_date: date
    month_elapsed_percent: PercentText | None = Field(
        description="Share of the month passed by today (current month only; null otherwise)."
    )
    budgets: list[BudgetLine]
    budget_count: int = Field(description="How many budgeted categories the month has, across every page.")
    totals: list[BudgetTotal] = Field(description="All budgets of the month per currency.")
    spending: list[CurrencyTotal] = Field(description="All spending in the month, budgeted or not, per currency.")
    unbudgeted: list[UnbudgetedSpending] = Field(
        description="Spending no budget covers (no budget, or another currency), per currency largest first; max 20."
    )
    unbudgeted_count: int
    next_cursor: str | None = Field(description="Null when every budget is listed; else pass it as cursor.")


class MonthTotal(BaseModel):
    month: MonthText
    total: MoneyText
    count: int


class TrendSeries(BaseModel):
    """One currency's monthly totals, one row per month, zero where nothing was spent."""

    currency: str
    months: list[MonthTotal]
    total: MoneyText
    average_per_month: MoneyText = Field(description="total / number of months, rounded to minor units.")


class SpendingTrend(BaseModel):
    start_month: MonthText
    end_month: MonthText
    start_date: date
    end_date: date
    category: str | None
    series: list[TrendSeries] = Field(description="One series per currency spent in; never mixed.")


DASHBOARD_MAX_MONTHS = 24


class SpendingDashboard(BaseModel):
    """A month at a glance, as the dashboard view and `budget-mcp report` show it: that month's budget_status,
    its summarize_spending by category, and the spending_trend of the months up to it, read together."""

    month: MonthText
    current_month: MonthText = Field(description="Today's month.")
    budget_status: BudgetStatus
    by_category: SpendingSummary
    trend: SpendingTrend


class PeriodUsed(BaseModel):
    """The exact, inclusive days a report covered (null: no limit at that end)."""

    start_date: date | None
    end_date: date | None
    period: str | None = Field(description="The named period these dates came from, if one was given.")


class ComparisonRow(BaseModel):
    category: str
    currency: str
    baseline: MoneyText
    current: MoneyText
    change: SignedMoneyText = Field(description="current - baseline.")
    change_percent: PercentText | None = Field(description="Change relative to baseline; null when baseline is 0.")


class ComparisonTotal(BaseModel):
    currency: str
    baseline: MoneyText
    current: MoneyText
    change: SignedMoneyText
    change_percent: PercentText | None


class PeriodComparison(BaseModel):
    """Spending per category in two periods, largest absolute change first."""

    current: PeriodUsed
    baseline: PeriodUsed
    rows: list[ComparisonRow]
    totals: list[ComparisonTotal]
    row_count: int = Field(description="How many rows there are in all, across every page.")
    next_cursor: str | None


class MerchantTotal(BaseModel):
    merchant: str
    total: MoneyText
    count: int


class TopExpenses(BaseModel):
    """The largest expenses and merchants of a period, in one currency."""

    period: PeriodUsed
    currency: str
    category: str | None
    expenses: list[Expense]
    merchants: list[MerchantTotal] = Field(description="Largest merchants by total (expenses with a merchant).")
    other_currencies: list[CurrencyTotal] = Field(description="Spending in the period in other currencies.")
    next_cursor: str | None


class SearchResult(BaseModel):
    """Matching expenses newest first, with the count and totals of ALL matches."""

    period: PeriodUsed
    expenses: list[Expense]
    count: int
    totals: list[CurrencyTotal]
    next_cursor: str | None


class ExpenseDeleted(ChangeReceipt):
    """What delete_expense removed (undo_change with change_id brings it back)."""

    expense: Expense


class Recategorized(ChangeReceipt):
    category: str
    moved: list[int] = Field(description="Ids moved into the category.")
    already_there: list[int] = Field(description="Ids that were in the category already (left as they are).")


class CategoryRenamed(ChangeReceipt):
    old_name: str
    name: str


class CategoryRemoved(ChangeReceipt):
    """What merge_categories or delete_category did (or would do, on a dry run)."""

    removed: str = Field(description="The category that is gone.")
    moved_to: str | None = Field(description="Where its expenses and budgets went.")
    expenses_moved: int
    budgets_moved: list[BudgetSpan]
    budgets_removed: list[BudgetSpan] = Field(
        description="Budgets dropped: the target's own budget covered those months, or nothing to move them to."
    )
    rules_moved: list[str] = Field(default=[], description="Category rules (patterns) moved too.")
    rules_removed: list[str] = Field(default=[], description="Category rules (patterns) deleted.")


class ChangeDetail(BaseModel):
    """One row a change touched, as stored before and after it (null: the row did not exist)."""

    table: Literal["expense", "category", "budget", "category_rule", "import"]
    row_id: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ChangeOut(BaseModel):
    """One entry of the audit log."""

    id: int
    at: datetime = Field(description="When (UTC).")
    tool: str
    summary: str
    rows: int = Field(description="How many rows it touched.")
    undoes: int | None = Field(description="The change this one undid, if it is an undo.")
    undone_by: int | None = Field(description="The change that undid this one, if any.")
    details: list[ChangeDetail] | None = Field(
        default=None, description="With details=true: the first rows it touched, before and after (amounts in cents)."
    )


class ChangeList(BaseModel):
    changes: list[ChangeOut]
    next_cursor: str | None


class Undone(ChangeReceipt):
    undone: ChangeOut = Field(description="The change that was reverted.")
    rows: int = Field(description="How many rows were put back.")


# --- bank statements: import, export, category rules ------------------------------------------------------

# The parser's choices, spelt here too: this module is loaded at start-up, the parser only when used.
DateOrder = Literal["iso", "day_first", "month_first"]
DecimalSeparator = Literal[".", ","]
SignConvention = Literal["negative_is_expense", "positive_is_expense"]
ImportStatus = Literal["add", "duplicate", "rejected", "credit_skipped"]
ColumnField = Literal[
    "date", "amount", "debit", "credit", "description", "merchant", "category", "currency", "notes", "direction"
]
ExportFormat = Literal["csv", "json"]

RulePattern = Annotated[
    str,
    Field(
        min_length=2,
        max_length=RULE_PATTERN_MAX,
        description="Text to find in an imported row's merchant or description (any case), e.g. STARBUCKS.",
    ),
    AfterValidator(_single_line),
]
SourceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=SOURCE_MAX,
        description="The account it is from, e.g. checking; duplicates are per source.",
    ),
    AfterValidator(_single_line),
]


class ColumnNames(BaseModel):
    """Which header cell of a statement holds what (None: let the parser find it)."""

    model_config = ConfigDict(frozen=True)

    date: str | None = None
    amount: str | None = None
    debit: str | None = None
    credit: str | None = None
    description: str | None = None
    merchant: str | None = None
    category: str | None = None
    currency: str | None = None
    notes: str | None = None
    direction: str | None = None

    def given(self) -> dict[str, str]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class StatementOptions(BaseModel):
    """How to read one statement; every choice left None is detected from the file."""

    model_config = ConfigDict(frozen=True)

    source: SourceName = "import"
    currency: CurrencyCode | None = None
    date_order: DateOrder | None = None
    decimal_separator: DecimalSeparator | None = None
    sign_convention: SignConvention | None = None
    columns: ColumnNames = ColumnNames()


class StatementFormat(BaseModel):
    """How the file was read (arguments of the same names override it)."""

    encoding: str
    delimiter: str
    header_line: int
    columns: dict[str, str]
    columns_inferred: bool
    date_order: str
    decimal_separator: str
    sign_convention: str | None


class ImportRow(BaseModel):
    line: int
    status: ImportStatus
    spent_on: date | None
    amount: MoneyText | None
    currency: str | None
    description: str | None
    category: str | None
    note: str | None = Field(description="Why: the rule, the earlier expense, the rejection.")


class ImportResult(ChangeReceipt):
    """What import_expenses_csv did (dry run: would do)."""

    import_id: int | None
    format: StatementFormat
    rows: int
    added: int
    duplicates: int = Field(description="Imported before from this source.")
    rejected: int
    credits_skipped: int = Field(description="Money in (refunds, income).")
    totals: list[CurrencyTotal] = Field(description="Added, per currency.")
    categories: dict[str, int] = Field(description="Category -> rows added to it.")
    preview: list[ImportRow] = Field(description="Rows in file order.")
    next_cursor: str | None = Field(description="More preview rows: call again with cursor.")
    message: str = Field(description="What happened; what to do next.")


class CategoryRuleOut(BaseModel):
    pattern: str
    category: str


class CategoryRuleList(BaseModel):
    """Category rules, by pattern."""

    rules: list[CategoryRuleOut]
    count: int
    next_cursor: str | None


class CategoryRuleChange(ChangeReceipt):
    rule: CategoryRuleOut
    replaced: str | None = Field(description="The category the pattern filed into before, if the rule existed.")


class ExpenseExport(BaseModel):
    """One page of an export: the text to save, and how to get the rest."""

    format: ExportFormat
    period: PeriodUsed
    count: int = Field(description="Expenses matching, across every page.")
    exported: int = Field(description="Expenses in this page's text.")
    totals: list[CurrencyTotal] = Field(description="Of every match, per currency.")
    text: str = Field(description="CSV with a header row, or a JSON array; oldest first.")
    next_cursor: str | None = Field(
        description="More pages: call again with cursor. The CLI `budget-mcp export` writes everything at once."
    )
