"""Shared helpers for the benchmark scripts: machine/version facts and writing one section of docs/benchmarks.md.

Each benchmark owns one section of ``docs/benchmarks.md``, delimited by ``<!-- BEGIN name -->`` and
``<!-- END name -->`` markers, and rewrites only that section, so scripts can be run in any order.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine_line() -> str:
    """One line naming the CPU, core count, Python and date, for the header of a results table."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, {time.strftime('%Y-%m-%d')}")


def versions(*packages: str) -> str:
    """`name version` pairs for the packages that are installed (missing ones are said to be missing)."""
    out = []
    for name in packages:
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace the section `name` of docs/benchmarks.md with `markdown` (appending it if absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` in seconds over `repeat` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
