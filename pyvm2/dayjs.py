"""Dates in dayjs patterns (`YYYY-MM-DD HH:mm:ss`), the format pm2 users write in
`log_date_format` and `pm2 logs --timestamp`."""

from __future__ import annotations

import re
import time

_DAYJS = re.compile(r"\[([^\]]*)]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|HH|H|hh|h|mm|m|ss|s|SSS|ZZ|Z|A|a|X|x")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def format_dayjs(fmt: str, t: float) -> str:
    """Format time t with a dayjs pattern (the format pm2's log_date_format uses), local time."""
    lt = time.localtime(t)
    ms = min(999, round((t % 1) * 1000))
    off = lt.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    oh, om = divmod(abs(off) // 60, 60)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1)
        tok = m.group(0)
        h12 = lt.tm_hour % 12 or 12
        return {
            "YYYY": f"{lt.tm_year:04d}", "YY": f"{lt.tm_year % 100:02d}",
            "MMMM": _MONTHS[lt.tm_mon - 1], "MMM": _MONTHS[lt.tm_mon - 1][:3],
            "MM": f"{lt.tm_mon:02d}", "M": str(lt.tm_mon),
            "DD": f"{lt.tm_mday:02d}", "D": str(lt.tm_mday),
            "dddd": _DAYS[lt.tm_wday], "ddd": _DAYS[lt.tm_wday][:3],
            "HH": f"{lt.tm_hour:02d}", "H": str(lt.tm_hour),
            "hh": f"{h12:02d}", "h": str(h12),
            "mm": f"{lt.tm_min:02d}", "m": str(lt.tm_min),
            "ss": f"{lt.tm_sec:02d}", "s": str(lt.tm_sec), "SSS": f"{ms:03d}",
            "Z": f"{sign}{oh:02d}:{om:02d}", "ZZ": f"{sign}{oh:02d}{om:02d}",
            "A": "AM" if lt.tm_hour < 12 else "PM", "a": "am" if lt.tm_hour < 12 else "pm",
            "X": str(int(t)), "x": str(int(t * 1000)),
        }[tok]

    return _DAYJS.sub(sub, fmt)
