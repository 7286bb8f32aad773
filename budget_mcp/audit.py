"""The audit log: every change is written with the rows it touched, before and after, in the same
transaction as the change itself; and any logged change can be reverted while nothing later touched it.

Rows are logged as JSON snapshots of their columns, so one mechanism covers expenses, categories, budgets
and category rules. A statement import is logged as one row, the import, not a snapshot per expense: its
expenses carry its id, and reverting it removes them in bulk. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Insert, Row, bindparam, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import Base, UTCDateTime, table_of, utcnow
from .errors import Conflict, NotFound
from .models import Budget, Category, CategoryRule, Change, ChangeItem, Expense, ImportedRow, StatementImport

ENTITIES: dict[str, type[Base]] = {
    "category": Category,
    "budget": Budget,
    "expense": Expense,
    "category_rule": CategoryRule,
    "import": StatementImport,
}
_ENTITY_OF = {model: name for name, model in ENTITIES.items()}
_NOT_SNAPSHOTTED = {"updated_at"}  # bookkeeping, set anew whenever a row changes (an undo included)
_CHUNK = 500
_INSERT_CHANGE = insert(table_of(Change))
_INSERT_ITEM = insert(table_of(ChangeItem))


def _record_in_one_statement() -> Insert:
    """PostgreSQL: a change that touched one row, and that row's item, in one INSERT (a data-modifying CTE):
    one round trip to a remote database instead of two. Returns the change's id."""
    changes, items = table_of(Change), table_of(ChangeItem)
    written = ("user_id", "changed_at", "tool", "summary", "undoes_id", "request_key")
    change = (
        insert(changes)
        .values({key: bindparam(key, type_=changes.c[key].type) for key in written})
        .returning(changes.c.id)
        .cte("change")
    )
    item = ("entity", "entity_id", "before", "after")
    return (
        insert(items)
        .from_select(
            ["change_id", *item], select(change.c.id, *(bindparam(key, type_=items.c[key].type) for key in item))
        )
        .returning(items.c.change_id)
    )


_RECORD_ONE_PG = _record_in_one_statement()

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class Item:
    """One row a change touched: None before means it was created, None after that it was deleted."""

    entity: str
    entity_id: int
    before: Snapshot | None
    after: Snapshot | None


def snapshot(row: Base) -> Snapshot:
    """The row's columns as JSON-ready values (dates and times as ISO text)."""
    values: Snapshot = {}
    for column in row.__table__.columns:
        if column.key in _NOT_SNAPSHOTTED:
            continue
        value = getattr(row, column.key)
        values[column.key] = value.isoformat() if isinstance(value, (date, datetime)) else value
    return values


def created(row: Base) -> Item:
    return Item(_ENTITY_OF[type(row)], row.id, None, snapshot(row))  # type: ignore[attr-defined]


def inserted(entity: str, row: Row[Any]) -> Item:
    """:func:`created` for a row read back from a Core INSERT (its table's columns; any others are ignored)."""
    values = row._mapping
    after = {}
    for column in table_of(ENTITIES[entity]).columns:
        if column.key not in _NOT_SNAPSHOTTED:
            value = values[column.key]
            after[column.key] = value.isoformat() if isinstance(value, (date, datetime)) else value
    return Item(entity, values["id"], None, after)


def updated(before: Snapshot, row: Base) -> Item:
    return Item(_ENTITY_OF[type(row)], row.id, before, snapshot(row))  # type: ignore[attr-defined]


def deleted(before: Snapshot, model: type[Base]) -> Item:
    return Item(_ENTITY_OF[model], before["id"], before, None)


def record(
    session: Session, user_id: int, tool: str, summary: str, items: Sequence[Item], *, undoes: int | None = None
) -> int:
    """Write one audit entry for a change made in this transaction (rows left unchanged are not logged) and
    return its id. Core INSERTs on the tables, not the unit of work: every write pays for this, and the ORM's
    bookkeeping for two rows nobody reads back costs several times the SQL. On PostgreSQL a change of one row
    is one statement, so one round trip."""
    session.flush()  # the rows the items name are written first
    values = {
        "user_id": user_id,
        "changed_at": utcnow(),
        "tool": tool,
        "summary": summary[:500],
        "undoes_id": undoes,
        "request_key": _claim_request_key(session),
    }
    rows = [
        {"entity": i.entity, "entity_id": i.entity_id, "before": i.before, "after": i.after}
        for i in items
        if i.before != i.after
    ]
    if len(rows) == 1 and session.get_bind().dialect.name == "postgresql":
        return int(session.execute(_RECORD_ONE_PG, {**values, **rows[0]}).scalar_one())
    change_id: int = session.execute(_INSERT_CHANGE, values).inserted_primary_key[0]  # type: ignore[attr-defined]
    for row in rows:
        row["change_id"] = change_id
    if len(rows) == 1:
        session.execute(_INSERT_ITEM, rows[0])  # one row: a plain INSERT, not the executemany machinery
    else:
        for start in range(0, len(rows), _CHUNK):
            session.execute(_INSERT_ITEM, rows[start : start + _CHUNK])
    return change_id


REQUEST_KEY = "budget_mcp.request_key"
"""``session.info`` key: the tool call's request key, stored with the first change it writes."""


def _claim_request_key(session: Session) -> str | None:
    return session.info.pop(REQUEST_KEY, None)


def request_committed(session: Session, request_key: str) -> bool:
    """Whether the tool call with this key committed a change (asked after a COMMIT whose answer was lost)."""
    return session.scalar(select(Change.id).where(Change.request_key == request_key)) is not None


def find_change(session: Session, user_id: int, change_id: int) -> Change | None:
    return session.scalar(select(Change).where(Change.user_id == user_id, Change.id == change_id))


def recent_changes(session: Session, user_id: int, *, before_id: int | None, limit: int) -> list[tuple[Change, int]]:
    """Newest first: each change with how many rows it touched."""
    stmt = (
        select(Change, func.count(ChangeItem.id))
        .outerjoin(ChangeItem, ChangeItem.change_id == Change.id)
        .where(Change.user_id == user_id)
        .group_by(Change.id)
        .order_by(Change.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        stmt = stmt.where(Change.id < before_id)
    return [(change, count) for change, count in session.execute(stmt)]


def last_change_of(session: Session, user_id: int, entity: str, entity_id: int) -> Change | None:
    """The newest change that touched a row: e.g. the one that deleted an expense."""
    return _change_of(session, user_id, entity, entity_id, Change.id.desc())


def first_change_of(session: Session, user_id: int, entity: str, entity_id: int) -> Change | None:
    """The oldest change that touched a row: the one that created it (None: it came with an import)."""
    return _change_of(session, user_id, entity, entity_id, Change.id.asc())


def _change_of(session: Session, user_id: int, entity: str, entity_id: int, order: Any) -> Change | None:
    return session.scalar(
        select(Change)
        .join(ChangeItem, ChangeItem.change_id == Change.id)
        .where(Change.user_id == user_id, ChangeItem.entity == entity, ChangeItem.entity_id == entity_id)
        .order_by(order)
        .limit(1)
    )


def items_of(session: Session, change_id: int, limit: int | None = None) -> list[Item]:
    stmt = select(ChangeItem).where(ChangeItem.change_id == change_id).order_by(ChangeItem.id).limit(limit)
    rows = session.scalars(stmt)
    return [Item(r.entity, r.entity_id, r.before, r.after) for r in rows]


def current_rows(session: Session, items: Iterable[Item]) -> dict[tuple[str, int], Base]:
    """The rows the items name, as they are now (missing ones are absent from the answer)."""
    wanted: dict[str, set[int]] = {}
    for item in items:
        wanted.setdefault(item.entity, set()).add(item.entity_id)
    found: dict[tuple[str, int], Base] = {}
    for entity, ids in wanted.items():
        model = ENTITIES[entity]
        ordered = sorted(ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            for row in session.scalars(select(model).where(model.id.in_(chunk))):  # type: ignore[attr-defined]
                found[(entity, row.id)] = row  # type: ignore[attr-defined]
    return found


def revert(session: Session, change: Change, items: Sequence[Item]) -> list[Item]:
    """Put every row the change touched back as it was before it; return the inverse items.

    Refuses (Conflict) unless every row is still exactly as the change left it, naming the later change
    that touched it; refuses too when later rows depend on what the revert would remove.
    """
    if any(item.entity == "import" for item in items):
        return _revert_import(session, change, items)
    rows = current_rows(session, items)
    for item in items:
        row = rows.get((item.entity, item.entity_id))
        now = snapshot(row) if row is not None else None
        if now != item.after:
            later = _later_change(session, change, item, now)
            what = f"{item.entity} {item.entity_id}"
            by = f" by change {later.id} ({later.tool})" if later is not None else ""
            raise Conflict(
                f"cannot undo change {change.id}: {what} was changed again later{by}; "
                + (f"undo change {later.id} first" if later is not None else "nothing was changed")
            )
    _check_categories_exist(session, change, items)
    inverse: list[Item] = []
    try:
        with session.begin_nested():
            entity = None
            for item in reversed(items):
                if entity is not None and (item.entity != entity or entity != "expense"):
                    # Keep the order: rows of one kind depend on rows of another, and budgets and categories
                    # have unique keys a later row may hold until it is put back (expenses are batched).
                    session.flush()
                entity = item.entity
                model = ENTITIES[item.entity]
                row = rows.get((item.entity, item.entity_id))
                if item.before is None:
                    assert row is not None
                    session.delete(row)
                elif row is None:
                    session.add(model(**_values(model, item.before)))
                else:
                    for key, value in _values(model, item.before).items():
                        setattr(row, key, value)
                    row.updated_at = utcnow()  # type: ignore[attr-defined]
                inverse.append(Item(item.entity, item.entity_id, item.after, item.before))
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"cannot undo change {change.id}: rows added later depend on what it would remove or rename "
            "(e.g. expenses filed under its category, or a category now using its name); "
            "undo or change those first. Nothing was changed"
        ) from None
    return inverse


def _revert_import(session: Session, change: Change, items: Sequence[Item]) -> list[Item]:
    """Remove what a statement import added: its expenses and its fingerprints (so the same file can be
    imported again). Refused while a later change still has one of its expenses changed or deleted."""
    (item,) = items
    if item.before is not None:
        raise Conflict(
            f"change {change.id} undid statement import {item.entity_id}; an undone import is not redone. "
            "Import the same file again (same source) to add its rows back; nothing was changed"
        )
    import_id = item.entity_id
    _check_imported_expenses_unchanged(session, change, import_id)
    connection = session.connection()  # Core: bulk deletes, no rows loaded
    connection.execute(delete(ImportedRow).where(ImportedRow.import_id == import_id))
    connection.execute(delete(Expense).where(Expense.user_id == change.user_id, Expense.import_id == import_id))
    return [Item(item.entity, import_id, item.after, None)]


def _check_imported_expenses_unchanged(session: Session, change: Change, import_id: int) -> None:
    """Refuse (Conflict, naming the change to undo first) if an expense of the import is not as imported.

    Every later change that touched one of its expenses logged a snapshot naming the import; the first such
    snapshot is the expense as imported, compared with the row as it is now (an edit that was undone since
    leaves it as imported)."""
    names_import = or_(
        ChangeItem.before["import_id"].as_integer() == import_id,
        ChangeItem.after["import_id"].as_integer() == import_id,
    )
    stmt = (
        select(ChangeItem.entity_id, ChangeItem.before)
        .join(Change, Change.id == ChangeItem.change_id)
        .where(Change.user_id == change.user_id, ChangeItem.change_id > change.id, ChangeItem.entity == "expense")
        .where(names_import)
        .order_by(ChangeItem.change_id, ChangeItem.id)
    )
    as_imported: dict[int, Snapshot | None] = {}
    for expense_id, before in session.execute(stmt):
        as_imported.setdefault(expense_id, before)
    if not as_imported:
        return
    rows = current_rows(session, [Item("expense", expense_id, None, None) for expense_id in as_imported])
    for expense_id, imported in sorted(as_imported.items()):
        row = rows.get(("expense", expense_id))
        now = snapshot(row) if row is not None else None
        if now == imported:
            continue
        later = _later_change(session, change, Item("expense", expense_id, None, imported), now)
        what = "deleted" if now is None else "changed"
        by = f" by change {later.id} ({later.tool}); undo change {later.id} first" if later is not None else ""
        raise Conflict(
            f"cannot undo change {change.id}: expense {expense_id} of the import was {what} later{by}. "
            "Nothing was changed"
        )


def _check_categories_exist(session: Session, change: Change, items: Sequence[Item]) -> None:
    """Rows the undo puts back into a category need that category: name the change that removed it."""
    restored = {i.entity_id for i in items if i.entity == "category" and i.before is not None}
    needed = {
        i.before["category_id"] for i in items if i.entity != "category" and i.before and "category_id" in i.before
    } - restored
    if not needed:
        return
    present = set(session.scalars(select(Category.id).where(Category.id.in_(needed))))
    for missing in sorted(needed - present):
        gone = last_change_of(session, change.user_id, "category", missing)
        by = f" by change {gone.id} ({gone.tool}); undo change {gone.id} first" if gone is not None else ""
        raise Conflict(f"cannot undo change {change.id}: the category it puts rows back into was removed{by}")


def _later_change(session: Session, change: Change, item: Item, now: Snapshot | None) -> Change | None:
    """The later change to undo first: the newest one (not undone, not itself an undo) that left the row
    as it is now; failing that, the newest later change that is not undone."""
    later = session.execute(
        select(Change, ChangeItem.after)
        .join(ChangeItem, ChangeItem.change_id == Change.id)
        .where(
            Change.user_id == change.user_id,
            ChangeItem.entity == item.entity,
            ChangeItem.entity_id == item.entity_id,
            Change.id > change.id,
            Change.undone_by_id.is_(None),
        )
        .order_by(Change.id.desc())
    ).all()
    for candidate, after in later:
        if candidate.undoes_id is None and after == now:
            return candidate
    return later[0][0] if later else None


def _values(model: type[Base], data: Snapshot) -> dict[str, Any]:
    """A snapshot back into column values."""
    values: dict[str, Any] = {}
    for column in model.__table__.columns:
        if column.key not in data:
            continue
        value = data[column.key]
        if value is not None and isinstance(column.type, UTCDateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, Date):
            value = date.fromisoformat(value)
        values[column.key] = value
    return values


def require_change(session: Session, user_id: int | None, change_id: int) -> Change:
    change = find_change(session, user_id, change_id) if user_id is not None else None
    if change is None:
        raise NotFound(f"no change with id {change_id}; list_changes shows the recent ones and their ids")
    return change
