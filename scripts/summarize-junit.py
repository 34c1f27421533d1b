"""Print, from the JUnit XML reports of one suite run: passed/failed/errors/skipped per report and in total,
the wall time of each report (one pytest run: a part), the slowest tests with their part, and last, for
each failing test, the lines that say why (its `E` lines and, for a pytest run inside it, that run's).
Exit 1 if nothing ran.

    python scripts/summarize-junit.py REPORT.xml... [--slowest N] [--why FILE]

With ``--why FILE`` the reasons go to FILE instead (scripts/test-all prints them last, where a CI log's tail
shows them).
"""

import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

args = sys.argv[1:]
slowest_count = 20
if "--slowest" in args:
    at = args.index("--slowest")
    slowest_count = int(args[at + 1])
    del args[at:at + 2]
why_file = None
if "--why" in args:
    at = args.index("--why")
    why_file = args[at + 1]
    del args[at:at + 2]

totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
walls = []
cases = []
failures = []
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
        failure = case.find("failure")
        failure = failure if failure is not None else case.find("error")
        if failure is not None:
            failures.append((part, name, case, failure))
print(f"{'total':>36}: " + ", ".join(f"{v} {k}" for k, v in totals.items()))

print("\n=== wall time per part (pytest runs)")
for part, wall in walls:
    print(f"{part:>36}: {wall:7.1f} s")
print(f"{'sum':>36}: {sum(wall for _, wall in walls):7.1f} s")

print(f"\n=== the {slowest_count} slowest tests")
for seconds, part, name in sorted(cases, reverse=True)[:slowest_count]:
    print(f"{seconds:7.1f} s  {part:<28} {name}")

# A failing test's reasons in a few lines: its assertion (E lines), and the failing tests and E lines of a
# pytest run it made (pytester), whose output is in the test's captured stdout.
WHY = re.compile(r"^(E |FAILED |ERROR |_{3,} .* _{3,}$)")
NOISE = re.compile(r"^E\s*$|^E\s+(Omitting \d|Use -v|Full diff|Differing items)")
why = []
if failures:
    why.append(f"\n=== why each of the {len(failures)} failing tests failed (first lines)")
for part, name, case, failure in failures:
    why.append(f"--- {part}: {name}")
    text = "\n".join(filter(None, [*((out.text or "") for out in case.iter("system-out")),
                                   failure.get("message", ""), failure.text or ""]))
    lines = [line.rstrip()[:200] for line in text.splitlines()
             if WHY.match(line.lstrip("> ")) and not NOISE.match(line.lstrip("> "))]
    why.extend(f"    {line}" for line in list(dict.fromkeys(lines))[:8])
if why_file:
    Path(why_file).write_text("".join(f"{line}\n" for line in why))
else:
    print(*why, sep="\n")
sys.exit(0 if totals["passed"] > 0 else 1)
