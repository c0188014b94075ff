#!/usr/bin/env python3
"""make usage: sessions, replies, tokens and cost per person per day, for a chosen period.

A person is the account that sent the trace: in team mode the server stamps
it on every span (lib/ingest.py), and MLflow records it as the trace's user
(`mlflow.trace.user`); local mode names no one ("-"). A reply is one trace
(one goose reply), a session one goose session id. Tokens and cost are the
ones MLflow stored on each trace (cost priced from the catalog of the pinned
MLflow; "-" when it knows no price for the model). Days are UTC.

Runs in the migrate service, which holds the tracking database's credentials,
and reads only: one SQL query, grouped in PostgreSQL, so a year of traces
costs one scan of the period's rows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import sys
from contextlib import closing
from dataclasses import dataclass

from lib.errors import StackError, run_command
from lib.store import databases, one_line_errors

NOBODY = "-"
TOTAL = "total"
DEFAULT_DAYS = 7
# MLflow 3.18's trace_info columns (promoted from the trace's metadata) and its user's metadata key.
QUERY = """
-- The (person) grouping set is each person's total over the period (day NULL): sessions counted once.
SELECT day, person, count(DISTINCT session_id), count(*), coalesce(sum(input_tokens), 0),
       coalesce(sum(output_tokens), 0), sum(total_cost)
FROM (SELECT to_char(to_timestamp(t.timestamp_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
             coalesce(u.value, '') AS person, t.session_id, t.input_tokens, t.output_tokens, t.total_cost
      FROM trace_info t
      JOIN experiments e ON e.experiment_id = t.experiment_id AND e.lifecycle_stage = 'active'
      LEFT JOIN trace_request_metadata u ON u.request_id = t.request_id AND u.key = 'mlflow.trace.user'
      WHERE t.timestamp_ms >= %(start_ms)s AND t.timestamp_ms < %(end_ms)s
        AND (%(experiment)s::text IS NULL OR e.name = %(experiment)s)) AS traces
GROUP BY GROUPING SETS ((day, person), (person))
ORDER BY day IS NULL, day, person
"""
HEADER = ("day", "person", "sessions", "replies", "input tokens", "output tokens", "cost (USD)")


@dataclass(frozen=True)
class Row:
    day: str
    person: str
    sessions: int
    replies: int
    input_tokens: int
    output_tokens: int
    cost: float | None


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day; write YYYY-MM-DD, e.g. 2026-12-01") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sessions, replies, tokens and cost per person per day (UTC), "
                                                 "read from the tracking database (make usage).")
    parser.add_argument("--since", type=parse_day, help="first day, YYYY-MM-DD (default: 6 days before --until)")
    parser.add_argument("--until", type=parse_day, help="last day, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--experiment", help="only this experiment (default: every active one)")
    parser.add_argument("--csv", action="store_true", help="CSV instead of a table")
    return parser.parse_args(argv)


def period(since: dt.date | None, until: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day asked for; a period that ends before it starts is refused."""
    last = until or today
    first = since or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise StackError(f"the period starts ({first}) after it ends ({last}); give SINCE before UNTIL")
    return first, last


def day_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() * 1000)


def read_usage(first: dt.date, last: dt.date, experiment: str | None) -> list[Row]:
    """Per day and person, then each person's total over the period (day "total")."""
    [tracking] = [database for database in databases() if database.kind == "tracking"]
    with one_line_errors("tracking database"), closing(tracking.connect()) as connection, \
            connection.cursor() as cursor:
        cursor.execute(QUERY, {"start_ms": day_ms(first), "end_ms": day_ms(last + dt.timedelta(days=1)),
                               "experiment": experiment})
        return [Row(day or TOTAL, person or NOBODY, sessions, replies, int(input_tokens), int(output_tokens),
                    None if cost is None else float(cost))
                for day, person, sessions, replies, input_tokens, output_tokens, cost in cursor.fetchall()]


def cells(row: Row, grouped: bool) -> list[str]:
    number = "{:,}".format if grouped else str
    if row.cost is None:
        cost = NOBODY if grouped else ""
    else:
        cost = f"{row.cost:,.4f}" if grouped else repr(row.cost)
    return [row.day, row.person, number(row.sessions), number(row.replies), number(row.input_tokens),
            number(row.output_tokens), cost]


def table(rows: list[Row], first: dt.date, last: dt.date) -> str:
    """Per day, then each person's total; numbers right-aligned; ends with how to ask for another period."""
    days = [cells(row, True) for row in rows if row.day != TOTAL]
    lines = [[*HEADER], *days]
    if rows:
        lines += [[""] * len(HEADER), *(cells(row, True) for row in rows if row.day == TOTAL)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(HEADER))]
    text = ["  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                      for column, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines]
    summary = f"Usage {first} to {last} (UTC)" + ("" if rows else ": no traces in this period")
    return "\n".join([summary, *text, "", "Another period: make usage SINCE=YYYY-MM-DD UNTIL=YYYY-MM-DD"])


def csv_text(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(cells(row, False) for row in rows)
    return out.getvalue().rstrip("\n")


def run(args: argparse.Namespace) -> str:
    first, last = period(args.since, args.until, dt.datetime.now(dt.timezone.utc).date())
    rows = read_usage(first, last, args.experiment)
    return csv_text(rows) if args.csv else table(rows, first, last)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("usage", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
