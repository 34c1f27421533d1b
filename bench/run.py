"""Benchmark pytest-celery-astra against hand-wired testcontainers + Celery, in one command.

    scripts/bench [--runs N] [--quick] [--tests N]      # provisions first, on a fresh machine
    python bench/run.py [--runs N] [--quick] [--tests N]  # in a provisioned environment

Every scenario runs once per round, one after the other (never in parallel:
the figures are about a 2-core machine), and each figure is the median over
the rounds. Prints a table with the targets and writes bench/results/latest.json.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import (  # noqa: E402 - after the path set-up above
    Workspace,
    median,
    per_test_figures,
    remove_bench_containers,
    run_empty_session,
    run_handwired,
    run_import_floor,
    run_pytest,
)

RESULTS = Path(__file__).resolve().parent / "results"
CHART = Path(__file__).resolve().parents[1] / "docs" / "chart.png"  # committed: docs/benchmarks.md shows it
REUSE = {"CELERY_ASTRA_REUSE_CONTAINERS": "true"}
CLEANUP_OFF = {"CELERY_ASTRA_CLEANUP": "false"}


def one_round(ws: Workspace, bench_label: str, say) -> dict:
    """Every scenario once; returns the raw figures of this round."""
    figures: dict = {}
    say("a. plugin cold start (one test)")
    cold = run_pytest(ws, ["test_one.py"])
    figures.update(plugin_cold_wall_s=cold["wall_s"], plugin_cold_first_pass_s=cold["first_pass_s"])

    say("a. hand-wired cold start (testcontainers, one after the other, start_worker)")
    hand = run_handwired(ws, bench_label)
    figures.update(handwired_wall_s=hand["wall_s"], handwired_first_pass_s=hand["first_pass_s"],
                   handwired_worker_stop_s=(hand["steps"] or {}).get("worker_stopped"),
                   handwired_cassandra_boot_s=(hand["steps"] or {}).get("cassandra_ready"),
                   handwired_steps=hand["steps"])

    say("b. reuse: first run keeps the containers, second run reuses them")
    first = run_pytest(ws, ["test_one.py"], REUSE)
    second = run_pytest(ws, ["test_one.py"], REUSE)
    kept = remove_bench_containers(ws, bench_label, kept_only=True)
    # Kept containers carry the run id of the run that started them: none of ours means the
    # first run found someone else's matching kept containers (then both runs were reuses).
    say(f"   removed our kept containers: {kept or 'none (the first run reused foreign kept containers)'}")
    floor = run_import_floor(ws)
    figures.update(import_floor_s=floor["wall_s"] if floor["ok"] else None)
    empty = run_empty_session(ws)
    figures.update(empty_session_s=empty["wall_s"] if empty["ok"] else None)
    figures.update(reuse_first_wall_s=first["wall_s"], reuse_wall_s=second["wall_s"],
                   reuse_first_pass_s=second["first_pass_s"], reuse_first_started=1 if kept else 0)

    say(f"c/d/e. {ws.tests}-test suite, cleanup on, -n 0 (with memory sampling)")
    on = run_pytest(ws, ["test_suite.py"], args=("-n", "0"), sample_cassandra=True)
    stats_on = per_test_figures(on["reports"])
    cpu_on = on.get("cpu") or {}
    figures.update(cpu_n0_cores_busy=cpu_on.get("cores_busy"),
                   cpu_n0_per_test_ms=_per_test_ms(cpu_on, "pytest_s", "containers_s", tests=ws.tests, phase=on),
                   cpu_n0_pytest_per_test_ms=_per_test_ms(cpu_on, "pytest_s", tests=ws.tests, phase=on),
                   cpu_n0_containers_per_test_ms=_per_test_ms(cpu_on, "containers_s", tests=ws.tests, phase=on))
    figures.update(suite_n0_wall_s=on["wall_s"], suite_n0_test_phase_s=on["test_phase_s"],
                   pytest_maxrss_mb=on["maxrss_mb"],
                   cassandra_peak_mb=on.get("cassandra_peak_mb"), cassandra_rss_mb=on.get("cassandra_rss_mb"),
                   cleanup_on_per_test_ms=stats_on.get("per_test_ms"),
                   cleanup_on_call_ms=stats_on.get("call_median_ms"),
                   cleanup_on_teardown_ms=stats_on.get("teardown_median_ms"),
                   cleanup_on_fixture_setup_s=stats_on.get("fixture_setup_s"))

    say(f"c. {ws.tests}-test suite, cleanup on, then the same {ws.tests} tests again (Cassandra warm)")
    warm_on = run_pytest(ws, ["test_suite.py", "test_zzz_warm.py"], args=("-n", "0"))
    stats_warm_on = per_test_figures(warm_on["reports"], only="test_zzz_warm.py")
    figures.update(warm_on_per_test_ms=stats_warm_on.get("per_test_ms"),
                   warm_on_call_ms=stats_warm_on.get("call_median_ms"),
                   warm_on_teardown_ms=stats_warm_on.get("teardown_median_ms"))

    say(f"c. {ws.tests}-test suite, cleanup off, the bare round trip {ws.tests} times, the suite again")
    off = run_pytest(ws, ["test_suite.py", "test_zz_bare.py", "test_zzz_warm.py"], CLEANUP_OFF, args=("-n", "0"))
    stats_off = per_test_figures(off["reports"])
    stats_warm_off = per_test_figures(off["reports"], only="test_zzz_warm.py")
    figures.update(warm_off_per_test_ms=stats_warm_off.get("per_test_ms"),
                   warm_off_call_ms=stats_warm_off.get("call_median_ms"))
    bare, floor = off["bare_s"] or [], off["celery_floor_s"] or []
    bare_each = per_test_figures(off["reports"], only="test_zz_bare.py::test_zz_bare_each")
    figures.update(bare_each_call_ms=bare_each.get("call_median_ms"))
    figures.update(cleanup_off_per_test_ms=stats_off.get("per_test_ms"),
                   cleanup_off_call_ms=stats_off.get("call_median_ms"),
                   bare_mean_ms=1000 * sum(bare) / len(bare) if bare else None,
                   bare_median_ms=1000 * median(bare) if bare else None,
                   celery_floor_median_ms=1000 * median(floor) if floor else None)

    say(f"d. {ws.tests}-test suite, cleanup on, -n 2")
    n2 = run_pytest(ws, ["test_suite.py"], args=("-n", "2"), sample_cassandra=True)
    figures.update(suite_n2_wall_s=n2["wall_s"], suite_n2_test_phase_s=n2["test_phase_s"],
                   cpu_n2_cores_busy=(n2.get("cpu") or {}).get("cores_busy"))

    say("f. canvas: chord of 5 + callback, group of 50 (5 of each)")
    canvas = run_pytest(ws, ["test_canvas.py"])
    timed = canvas["canvas"] or {}
    figures.update(chord_ms=1000 * median(timed["chord_s"]) if timed else None,
                   group50_ms=1000 * median(timed["group50_s"]) if timed else None,
                   group50_warm_ms=1000 * median(timed["group50_warm_s"]) if timed else None)

    runs = {"canvas": canvas, "plugin_cold": cold, "handwired": hand, "reuse_first": first, "reuse_second": second,
            "suite_cleanup_on": on, "suite_warm_cleanup_on": warm_on, "suite_cleanup_off": off, "suite_n2": n2}
    figures["failed"] = sorted(name for name, run in runs.items() if not run["ok"])
    figures["raw"] = {name: {k: v for k, v in run.items() if k not in ("reports", "bare_s", "celery_floor_s", "canvas")}
                      for name, run in runs.items()}
    return figures


def _per_test_ms(cpu: dict, *parts: str, tests: int, phase: dict) -> float | None:
    """CPU milliseconds per test over the sampled part of the test phase."""
    if not cpu or not cpu.get("span_s") or not phase.get("test_phase_s"):
        return None
    tests_in_span = tests * cpu["span_s"] / phase["test_phase_s"]
    return 1000 * sum(cpu[part] for part in parts) / tests_in_span


def summarize(rounds: list[dict]) -> dict:
    """Median of every numeric figure over the rounds, plus the per-round values."""
    names = [k for k, v in rounds[0].items() if isinstance(v, (int, float)) or v is None]
    return {name: {"median": median([r.get(name) for r in rounds]), "values": [r.get(name) for r in rounds]}
            for name in names}


def ratio(a, b):
    return None if a is None or not b else a / b


def targets(f: dict) -> list[dict]:
    """The issue's targets, each as measured value vs limit."""
    m = {name: value["median"] for name, value in f.items()}

    def diff(a, b):
        return None if a is None or b is None else a - b

    return [
        {"target": "cold start <= 0.5x hand-wired (wall)", "value": ratio(m["plugin_cold_wall_s"],
         m["handwired_wall_s"]), "limit": 0.5, "unit": "x"},
        {"target": "cold start <= 0.5x hand-wired (first pass)", "value": ratio(m["plugin_cold_first_pass_s"],
         m["handwired_first_pass_s"]), "limit": 0.5, "unit": "x"},
        {"target": "(bound) first pass: imports + Cassandra boot / hand-wired",
         "value": None if m["handwired_cassandra_boot_s"] is None or m["import_floor_s"] is None else ratio(
             m["import_floor_s"] + m["handwired_cassandra_boot_s"], m["handwired_first_pass_s"]),
         "limit": 0.5, "unit": "x"},
        {"target": "reused start <= 0.1x cold (wall)", "value": ratio(m["reuse_wall_s"], m["plugin_cold_wall_s"]),
         "limit": 0.1, "unit": "x"},
        {"target": "(bound) best reused start: import floor / cold", "value": ratio(m["import_floor_s"],
         m["plugin_cold_wall_s"]), "limit": 0.1, "unit": "x"},
        {"target": "(bound) reused start: empty pytest session, same imports / cold",
         "value": ratio(m["empty_session_s"], m["plugin_cold_wall_s"]), "limit": 0.1, "unit": "x"},
        {"target": "per-test overhead <= 5 ms over bare (cleanup on)",
         "value": diff(m["warm_on_per_test_ms"], m["bare_mean_ms"]), "limit": 5.0, "unit": "ms"},
        {"target": "per-test overhead <= 5 ms over bare (cleanup off)",
         "value": diff(m["warm_off_per_test_ms"], m["bare_mean_ms"]), "limit": 5.0, "unit": "ms"},
        {"target": "(info) the same, JIT cold, cleanup on",
         "value": diff(m["cleanup_on_per_test_ms"], m["bare_mean_ms"]), "limit": 5.0, "unit": "ms"},
        {"target": "embedded round trip <= 1.5x bare (medians; default: cleanup on)",
         "value": ratio(m["warm_on_call_ms"], m["bare_median_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "(info) the same, cleanup off (after the bare test's rows)",
         "value": ratio(m["warm_off_call_ms"], m["bare_median_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "(info) the same, JIT cold",
         "value": ratio(m["cleanup_on_call_ms"], m["bare_median_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "(info) like for like: embedded / bare, each one round trip per test (median calls)",
         "value": ratio(m["warm_on_call_ms"], m["bare_each_call_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "(info) Celery's own queries / bare (medians)",
         "value": ratio(m["celery_floor_median_ms"], m["bare_median_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "(info) embedded round trip / Celery's own queries",
         "value": ratio(m["warm_on_call_ms"], m["celery_floor_median_ms"]), "limit": 1.5, "unit": "x"},
        {"target": "-n 2 <= 0.6x -n 0 (wall)", "value": ratio(m["suite_n2_wall_s"], m["suite_n0_wall_s"]),
         "limit": 0.6, "unit": "x"},
        {"target": "chord of 5 + callback <= 100 ms", "value": m["chord_ms"], "limit": 100.0, "unit": "ms"},
        {"target": "group of 50 <= 200 ms", "value": m["group50_ms"], "limit": 200.0, "unit": "ms"},
        {"target": "(info) group of 50, Cassandra warmer (10 more, after those 5)", "value": m["group50_warm_ms"],
         "limit": 200.0, "unit": "ms"},
        {"target": "(info) group of 50 as 50 serial loops of Celery's queries",
         "value": None if m["celery_floor_median_ms"] is None else 50 * m["celery_floor_median_ms"],
         "limit": 200.0, "unit": "ms"},
        {"target": "(bound) best -n 2 / -n 0 on 2 cores: cores busy at -n 0 / 2",
         "value": None if m["cpu_n0_cores_busy"] is None else m["cpu_n0_cores_busy"] / 2, "limit": 0.6, "unit": "x"},
        {"target": "(info) -n 2 <= 0.6x -n 0 (first call to last)",
         "value": ratio(m["suite_n2_test_phase_s"], m["suite_n0_test_phase_s"]), "limit": 0.6, "unit": "x"},
    ]


ROWS = [  # (figure, label, unit)
    ("plugin_cold_wall_s", "a. plugin cold start, pytest wall", "s"),
    ("plugin_cold_first_pass_s", "a. plugin cold start, to first pass", "s"),
    ("handwired_wall_s", "a. hand-wired cold start, wall", "s"),
    ("handwired_first_pass_s", "a. hand-wired cold start, to first pass", "s"),
    ("handwired_worker_stop_s", "a.   of which start_worker() stopping", "s"),
    ("handwired_cassandra_boot_s", "a.   of which Cassandra's boot (alone)", "s"),
    ("reuse_first_wall_s", "b. reuse, first run (keeps containers)", "s"),
    ("reuse_wall_s", "b. reuse, second run, wall", "s"),
    ("reuse_first_pass_s", "b. reuse, second run, to first pass", "s"),
    ("reuse_first_started", "b. first run started its containers (1/0)", ""),
    ("import_floor_s", "b. floor: pytest + celery + driver imports", "s"),
    ("empty_session_s", "b. floor: one empty test, same imports, no plugin", "s"),
    ("cleanup_on_per_test_ms", "c. per test, cleanup on, JIT cold", "ms"),
    ("cleanup_on_call_ms", "c.   of which call (median)", "ms"),
    ("cleanup_on_teardown_ms", "c.   of which teardown (median)", "ms"),
    ("cleanup_off_per_test_ms", "c. per test, cleanup off, JIT cold", "ms"),
    ("cleanup_off_call_ms", "c.   round trip via worker (median)", "ms"),
    ("warm_on_per_test_ms", "c. per test, cleanup on, warm", "ms"),
    ("warm_on_call_ms", "c.   of which call (median)", "ms"),
    ("warm_on_teardown_ms", "c.   of which teardown (median)", "ms"),
    ("warm_off_per_test_ms", "c. per test, cleanup off, warm", "ms"),
    ("warm_off_call_ms", "c.   round trip via worker, warm (median)", "ms"),
    ("bare_mean_ms", "c. bare round trip, mean", "ms"),
    ("bare_median_ms", "c. bare round trip, median", "ms"),
    ("bare_each_call_ms", "c. bare round trip, one per test (median call)", "ms"),
    ("celery_floor_median_ms", "c. bare with Celery's own queries, median", "ms"),
    ("cleanup_on_fixture_setup_s", "c. session fixture setup (first test)", "s"),
    ("suite_n0_wall_s", "d. suite -n 0, wall", "s"),
    ("suite_n2_wall_s", "d. suite -n 2, wall", "s"),
    ("suite_n0_test_phase_s", "d. suite -n 0, first call to last", "s"),
    ("suite_n2_test_phase_s", "d. suite -n 2, first call to last", "s"),
    ("pytest_maxrss_mb", "e. pytest peak RSS (-n 0 suite)", "MB"),
    ("cassandra_peak_mb", "e. Cassandra cgroup peak (incl. cache)", "MB"),
    ("cassandra_rss_mb", "e. Cassandra RSS, sampled max", "MB"),
    ("cpu_n0_cores_busy", "g. cores busy during the -n 0 suite", "x"),
    ("cpu_n2_cores_busy", "g. cores busy during the -n 2 suite", "x"),
    ("cpu_n0_per_test_ms", "g. CPU per test at -n 0 (pytest + containers)", "ms"),
    ("cpu_n0_pytest_per_test_ms", "g.   of which pytest (test + embedded worker)", "ms"),
    ("cpu_n0_containers_per_test_ms", "g.   of which Cassandra + RabbitMQ", "ms"),
    ("chord_ms", "f. chord of 5 + callback, .get() (median)", "ms"),
    ("group50_ms", "f. group of 50, .get() (median)", "ms"),
    ("group50_warm_ms", "f. group of 50, 10 more after those (median)", "ms"),
]


def fmt(value, unit="") -> str:
    if value is None:
        return "n/a"
    if unit == "":
        return f"{value:g}"
    return f"{value:.1f}" if unit in ("ms", "MB") else f"{value:.2f}"


def table(figures: dict, checks: list[dict]) -> str:
    lines = [f"{'figure':<42} {'median':>9}  unit  runs"]
    for name, label, unit in ROWS:
        entry = figures[name]
        runs = ", ".join(fmt(v, unit) for v in entry["values"])
        lines.append(f"{label:<42} {fmt(entry['median'], unit):>9}  {unit:<4}  {runs}")
    lines.append("")
    lines.append(f"{'target':<52} {'value':>8} {'limit':>7}  result")
    for check in checks:
        value = check["value"]
        verdict = "n/a" if value is None else ("PASS" if value <= check["limit"] else "MISS")
        check["result"] = verdict
        lines.append(f"{check['target']:<52} {fmt(value, check['unit']):>7}{check['unit']:<1} "
                     f"{check['limit']:>6g}{check['unit']:<1}  {verdict}")
    return "\n".join(lines)


def git_state() -> str:
    """Which plugin code was measured: the commit, and whether pytest_celery_astra/ had local edits."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "pytest_celery_astra")
    return git("rev-parse", "--short", "HEAD") + (" (pytest_celery_astra/ modified)" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds; each figure is the median (default 3)")
    parser.add_argument("--quick", action="store_true", help="one round, for a smoke test")
    parser.add_argument("--tests", type=int, default=200, help="tests in the generated suite (default 200)")
    options = parser.parse_args()
    rounds_wanted = 1 if options.quick else options.runs
    bench_label = uuid.uuid4().hex[:10]
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {text}", flush=True)

    ws = Workspace(options.tests)
    rounds = []
    try:
        for number in range(1, rounds_wanted + 1):
            say(f"round {number}/{rounds_wanted} (workspace {ws.path})")
            rounds.append(one_round(ws, bench_label, say))
    finally:
        removed = remove_bench_containers(ws, bench_label)
        say(f"removed leftover containers: {removed or 'none'}")
    duration = time.monotonic() - started

    figures = summarize(rounds)
    checks = targets(figures)
    print()
    print(table(figures, checks))
    failed = sorted({name for r in rounds for name in r["failed"]})
    if failed:
        print(f"\nWARNING: runs that did not pass (their figures are suspect): {', '.join(failed)}")
    print(f"\nbench duration {duration:.0f} s, {len(rounds)} round(s), {options.tests} tests per suite, "
          f"plugin at {git_state()}")

    RESULTS.mkdir(exist_ok=True)
    report = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rounds": len(rounds), "tests": options.tests, "duration_s": round(duration, 1),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "images": {k: v for k, v in os.environ.items() if k.startswith("CELERY_ASTRA_") and k.endswith("_IMAGE")},
            "failed_runs": failed, "git": git_state(),
        },
        "figures": figures, "targets": checks, "rounds": rounds,
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {RESULTS / 'latest.json'}")
    from chart import write_chart

    chart = write_chart(figures, CHART, f"medians of {len(rounds)} round(s), {os.cpu_count()} cores, "
                                        f"plugin at {git_state()}")
    print(f"wrote {chart}" if chart else "no chart: matplotlib is not installed (pip install -e . --group bench)")
    ws.remove()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
