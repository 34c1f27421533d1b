"""What installing the plugin costs a suite that never uses it: `pytest` on a one-test suite,
with the plugin loaded vs disabled (`-p no:celery_astra`), median of N runs, side by side.

    python bench/dormant.py            # 10 runs each
    python bench/dormant.py --runs 20

Target: the plugin adds at most 50 ms (its import and configure; nothing is probed or started).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0


def one_run(directory: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=directory,
                   check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        one_run(directory)  # warm the file cache
        with_plugin, without = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            with_plugin.append(one_run(directory))
            without.append(one_run(directory, "-p", "no:celery_astra"))
    a, b = statistics.median(with_plugin), statistics.median(without)
    verdict = "PASS" if a - b <= TARGET_MS else "MISS"
    print(f"one-test suite, median of {runs}: plugin installed {a:.0f} ms, disabled {b:.0f} ms, "
          f"difference {a - b:+.0f} ms (target <= {TARGET_MS:.0f} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
