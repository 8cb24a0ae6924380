"""Share of samples per thread and per function in a py-spy raw profile (`--threads --format raw`).

    py-spy record --pid PID --threads --idle --format raw --duration 10 -o prof.raw
    .venv/bin/python bench/profile_top.py prof.raw [--top 30] [--thread drift]

A function's share is inclusive: the samples whose stack holds it (once per stack),
over all samples of the threads shown. Idle samples (waiting in poll or a lock) count
when py-spy was run with ``--idle``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"thread \(\d+\): ?(.*)")
_LINE = re.compile(r" \([^()]*:\d+\)$")


def parse(text: str) -> list[tuple[str, list[str], int]]:
    """(thread name, frames outermost first without line numbers, samples) per line."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        first, *frames = stack.split(";")
        match = _THREAD.match(first)
        thread = (match.group(1) or "?") if match else first
        out.append((thread, [_LINE.sub("", f) for f in frames], int(count)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--thread", default=None, help="only this thread's samples")
    args = parser.parse_args()
    rows = parse(args.raw.read_text())
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for thread, frames, count in rows:
        threads[thread] += count
        if args.thread in (None, thread):
            for frame in set(frames):
                functions[frame] += count
    total = sum(threads.values())
    shown = threads[args.thread] if args.thread else total
    print(f"{total} samples")
    for thread, count in threads.most_common():
        print(f"  {100 * count / total:5.1f}%  thread {thread}")
    print(f"\nfunctions, inclusive, of {shown} samples{f' of thread {args.thread}' if args.thread else ''}")
    for frame, count in functions.most_common(args.top):
        print(f"  {100 * count / max(shown, 1):5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
