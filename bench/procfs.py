"""What /proc says about processes: their tree, memory and CPU time (Linux only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name, which may hold spaces: [state, ppid, ...] (proc(5) field 3 on)."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    children: dict[int, list[int]] = {}
    for child in pids():
        try:
            children.setdefault(int(stat_fields(child)[1]), []).append(child)
        except (OSError, IndexError, ValueError):
            continue
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def pss_mb(processes: Iterable[int]) -> float:
    """Proportional set size of these processes, in MB (shared pages split among sharers)."""
    total_kb = 0
    for pid in processes:
        try:
            with open(PROC / str(pid) / "smaps_rollup") as handle:
                total_kb += sum(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return round(total_kb / 1024, 1)


def cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command line, user+system clock ticks so far), for every process on the machine."""
    ticks = {}
    for pid in pids():
        try:
            fields = stat_fields(pid)
            command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            name = command or f"[{(PROC / str(pid) / 'comm').read_text().strip()}]"
        except OSError:
            continue
        ticks[pid] = (name, int(fields[11]) + int(fields[12]))  # utime, stime: proc(5) fields 14 and 15
    return ticks


def clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")
