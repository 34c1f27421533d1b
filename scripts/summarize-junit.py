"""Print, from the JUnit XML reports of one suite run: passed/failed/errors/skipped per report and in total,
the wall time of each report (one pytest run: a part), and the slowest tests with their part.
Exit 1 if nothing ran.

    python scripts/summarize-junit.py REPORT.xml... [--slowest N]
"""

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

args = sys.argv[1:]
slowest_count = 20
if "--slowest" in args:
    at = args.index("--slowest")
    slowest_count = int(args[at + 1])
    del args[at:at + 2]

totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
walls = []
cases = []
print("\n=== test counts")
for path in args:
    part = Path(path).stem
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    counts = {"passed": tests - failed - errors - skipped, "failed": failed, "errors": errors, "skipped": skipped}
    for key, value in counts.items():
        totals[key] += value
    print(f"{part:>36}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    walls.append((part, float(suite.get("time", 0.0))))
    for case in suite.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        cases.append((float(case.get("time", 0.0)), part, name))
print(f"{'total':>36}: " + ", ".join(f"{v} {k}" for k, v in totals.items()))

print("\n=== wall time per part (pytest runs)")
for part, wall in walls:
    print(f"{part:>36}: {wall:7.1f} s")
print(f"{'sum':>36}: {sum(wall for _, wall in walls):7.1f} s")

print(f"\n=== the {slowest_count} slowest tests")
for seconds, part, name in sorted(cases, reverse=True)[:slowest_count]:
    print(f"{seconds:7.1f} s  {part:<28} {name}")
sys.exit(0 if totals["passed"] > 0 else 1)
