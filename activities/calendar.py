"""Business days of a legal entity: its country's public holidays (the pinned `holidays` package) and
weekend, in its own time zone.

SLAs counted in business days (policies/sla.toml) count business time: an invoice that entered a status on
Friday at 16:00 in Paris has waited 8/24 of a business day by Monday 00:00 and one business day on Monday
at 16:00 (unless Monday is a holiday). A clock started on a weekend or holiday runs from the next business
day's midnight. Counting is by bisection over a precomputed list of business dates, so a tower of
thousands of invoices costs a few microseconds an invoice.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

# The years a calendar covers around today when built; extended on demand (an invoice years old).
_SPAN = 3


@dataclass
class BusinessCalendar:
    """The business days of one country in one time zone."""

    country: str  # ISO 3166 alpha-2; "" (or a country the package lacks): weekends only
    timezone: str
    _zone: ZoneInfo = field(init=False, repr=False)
    _weekend: frozenset[int] = field(init=False, repr=False)
    _holidays: dict[date, str] = field(init=False, repr=False, default_factory=dict)
    _years: tuple[int, int] = field(init=False, repr=False, default=(0, -1))
    _ordinals: list[int] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._zone = ZoneInfo(self.timezone or "UTC")
        self._weekend = frozenset({5, 6})
        today = datetime.now(UTC).year
        self._cover(today - _SPAN, today + _SPAN)

    def _cover(self, first: int, last: int) -> None:
        lo, hi = self._years
        if lo <= first and last <= hi:
            return
        first, last = min(first, lo) if hi >= lo else first, max(last, hi)
        try:
            found = holidays.country_holidays(self.country, years=range(first, last + 1))
            self._weekend = frozenset(getattr(found, "weekend", None) or {5, 6})
            self._holidays = dict(found.items())
        except (NotImplementedError, KeyError):
            self._holidays = {}  # no public holidays known for this country: weekends only
        self._years = (first, last)
        start, end = date(first, 1, 1).toordinal(), date(last, 12, 31).toordinal()
        self._ordinals = [o for o in range(start, end + 1) if self._is_business(date.fromordinal(o))]

    def _is_business(self, day: date) -> bool:
        return day.weekday() not in self._weekend and day not in self._holidays

    def is_business_day(self, day: date) -> bool:
        self._cover(day.year, day.year)
        return self._is_business(day)

    def holiday(self, day: date) -> str | None:
        """The public holiday's name on `day`, if it is one."""
        self._cover(day.year, day.year)
        return self._holidays.get(day)

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self._zone)

    def _day_fraction(self, day: date, start: time | None, end: time | None) -> float:
        """The part of `day` (a local date) between `start` and `end` (None: its midnights), measured in
        the day's own length (23 or 25 hours on a DST change)."""
        midnight = datetime.combine(day, time(0), self._zone)
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), self._zone)
        a = datetime.combine(day, start, self._zone) if start is not None else midnight
        b = datetime.combine(day, end, self._zone) if end is not None else next_midnight
        length = (next_midnight - midnight).total_seconds()
        return max((b - a).total_seconds(), 0.0) / length

    def business_days_between(self, start: datetime, end: datetime) -> float:
        """Business time from `start` to `end`, in business days (0 when `end` is not after `start`)."""
        if end <= start:
            return 0.0
        s, e = self.local(start), self.local(end)
        sd, ed = s.date(), e.date()
        self._cover(sd.year, ed.year)
        if sd == ed:
            return self._day_fraction(sd, s.time(), e.time()) if self._is_business(sd) else 0.0
        total = 0.0
        if self._is_business(sd):
            total += self._day_fraction(sd, s.time(), None)
        if self._is_business(ed):
            total += self._day_fraction(ed, None, e.time())
        # Whole business days strictly between the two dates.
        lo = bisect.bisect_right(self._ordinals, sd.toordinal())
        hi = bisect.bisect_left(self._ordinals, ed.toordinal())
        return total + max(hi - lo, 0)

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The instant `days` business days after `start`: the same local time of day, business days
        later (from the next business day's midnight when `start` is on a weekend or holiday)."""
        s = self.local(start)
        day, at = s.date(), s.time()
        self._cover(day.year, day.year + 1 + days // 200)
        if not self._is_business(day):
            i = bisect.bisect_right(self._ordinals, day.toordinal())
            day, at = date.fromordinal(self._ordinals[i]), time(0)
        i = bisect.bisect_left(self._ordinals, day.toordinal()) + days
        while i >= len(self._ordinals):  # beyond the covered years
            self._cover(self._years[0], self._years[1] + 5)
            i = bisect.bisect_left(self._ordinals, day.toordinal()) + days
        return datetime.combine(date.fromordinal(self._ordinals[i]), at, self._zone).astimezone(UTC)


@lru_cache(maxsize=64)
def calendar_for(country: str, timezone: str) -> BusinessCalendar:
    """The calendar of a legal entity's country and zone (built once per process)."""
    return BusinessCalendar(country.upper(), timezone)
