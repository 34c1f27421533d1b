"""Print passed/failed/errors/skipped per JUnit XML report and in total; exit 1 if nothing ran."""

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
print("\n=== test counts")
for path in sys.argv[1:]:
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    counts = {"passed": tests - failed - errors - skipped, "failed": failed, "errors": errors, "skipped": skipped}
    for key, value in counts.items():
        totals[key] += value
    print(f"{Path(path).stem:>28}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
print(f"{'total':>28}: " + ", ".join(f"{v} {k}" for k, v in totals.items()))
sys.exit(0 if totals["passed"] > 0 else 1)
