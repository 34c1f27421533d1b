"""Chords and groups through the embedded worker and the Cassandra backend: a chord of 5 with a summing
callback, and a group of 50, each from the call to `.get()`'s return; 5 of each per round, median of
the rounds' medians. The same scenario runs inside `bench/run.py`; this is it alone (~15 s a round).

    python bench/canvas.py             # 3 rounds
    python bench/canvas.py --runs 5

Targets (issue 12): chord <= 100 ms (Celery's fallback unlock alone waited 1 s), group of 50 <= 200 ms.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import Workspace, run_pytest  # noqa: E402 - after the path set-up above

TARGETS_MS = {"chord_s": 100.0, "group50_s": 200.0}
LABELS = {"chord_s": "chord of 5 + callback", "group50_s": "group of 50"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    ws = Workspace(tests=1)
    per_round = {name: [] for name in TARGETS_MS}
    try:
        for number in range(runs):
            result = run_pytest(ws, ["test_canvas.py"])
            if not result["ok"] or not result["canvas"]:
                print(f"round {number + 1}: the canvas test did not pass; see the log above")
                return 1
            for name in TARGETS_MS:
                per_round[name].append(1000 * statistics.median(result["canvas"][name]))
    finally:
        ws.remove()
    for name, limit in TARGETS_MS.items():
        value = statistics.median(per_round[name])
        verdict = "PASS" if value <= limit else "MISS"
        rounds = ", ".join(f"{v:.1f}" for v in per_round[name])
        print(f"{LABELS[name]:<24} {value:8.1f} ms  (rounds: {rounds})  target <= {limit:g} ms  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
