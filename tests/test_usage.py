"""scripts/usage.py's decisions that need no database: the period asked for and the table's shape.

What it reads from a real tracking database: test_native_usage.py; through make and the proxy: test_docker_team.py.
"""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

import usage
from lib.errors import StackError

TODAY = dt.date(2026, 12, 7)


def test_the_default_period_is_the_last_seven_days_up_to_today():
    assert usage.period(None, None, TODAY) == (dt.date(2026, 12, 1), TODAY)


def test_since_alone_runs_to_today_and_until_alone_takes_the_seven_days_before_it():
    assert usage.period(dt.date(2026, 11, 1), None, TODAY) == (dt.date(2026, 11, 1), TODAY)
    assert usage.period(None, dt.date(2026, 11, 30), TODAY) == (dt.date(2026, 11, 24), dt.date(2026, 11, 30))


def test_a_one_day_period_is_allowed_and_a_reversed_one_refused():
    assert usage.period(TODAY, TODAY, TODAY) == (TODAY, TODAY)
    with pytest.raises(StackError, match=r"starts \(2026-12-08\) after it ends \(2026-12-07\)"):
        usage.period(dt.date(2026, 12, 8), TODAY, TODAY)


def test_a_day_that_is_not_a_date_is_refused_with_the_format_wanted():
    with pytest.raises(argparse.ArgumentTypeError, match="write YYYY-MM-DD"):
        usage.parse_day("07/12/2026")


def test_the_period_ends_at_midnight_utc_after_its_last_day():
    assert usage.day_ms(dt.date(2026, 12, 7)) == 1796601600000


def test_an_empty_period_says_so_and_still_says_how_to_ask_for_another():
    assert usage.table([], TODAY, TODAY).splitlines() == [
        "Usage 2026-12-07 to 2026-12-07 (UTC): no traces in this period",
        "day  person  sessions  replies  input tokens  output tokens  cost (USD)",
        "", "Another period: make usage SINCE=YYYY-MM-DD UNTIL=YYYY-MM-DD"]


def test_the_table_puts_each_persons_total_under_the_days_and_a_missing_price_as_a_dash():
    rows = [usage.Row("2026-12-07", "ann", 1, 2, 1200, 80, None), usage.Row("total", "ann", 1, 2, 1200, 80, None)]
    lines = usage.table(rows, TODAY, TODAY).splitlines()
    assert lines[2].split() == ["2026-12-07", "ann", "1", "2", "1,200", "80", "-"]
    assert lines[3] == "" and lines[4].split() == ["total", "ann", "1", "2", "1,200", "80", "-"]


def test_csv_keeps_the_full_cost_and_leaves_an_unknown_one_empty():
    rows = [usage.Row("2026-12-07", "ann", 1, 2, 1200, 80, 0.00046650000001), usage.Row("total", "-", 1, 1, 5, 6, None)]
    assert usage.csv_text(rows).splitlines() == [
        "day,person,sessions,replies,input tokens,output tokens,cost (USD)",
        "2026-12-07,ann,1,2,1200,80,0.00046650000001", "total,-,1,1,5,6,"]
