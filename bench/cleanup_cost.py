"""Per-test cost of the plugin's cleanup (janitor), by table size.

    python bench/cleanup_cost.py [--rounds 15]

Runs a generated test in a temp dir against the plugin's real Cassandra
container (memory broker: the broker plays no part here), fills Celery's result
table with 0, 1, 100 and 500 rows, times ``Janitor.clean()`` and prints the
median per size. Needs a container engine (see README: scripts/container-engine).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = '''
import json, statistics, time, uuid
from pytest_celery_astra.cassandra.janitor import Janitor

def test_measure(celery_astra_database):
    session, table = celery_astra_database.session, celery_astra_database.result_table
    insert = session.prepare(
        f"INSERT INTO {table} (task_id, status, date_done) VALUES (?, 'SUCCESS', toTimestamp(now()))")
    janitor = Janitor(celery_astra_database)
    figures = {}
    for rows in (0, 1, 100, 500):
        times = []
        for _ in range(ROUNDS):
            for _ in range(rows):
                session.execute(insert, (uuid.uuid4().hex,))
            started = time.perf_counter()
            janitor.clean()
            times.append(time.perf_counter() - started)
            assert session.execute(f"SELECT * FROM {table} LIMIT 1").one() is None
        figures[rows] = statistics.median(times) * 1000
    print("CLEANUP-FIGURES", json.dumps(figures))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "test_cleanup_cost.py").write_text(MEASURE.replace("ROUNDS", str(rounds)))
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--celery-astra-broker", "memory"],
            cwd=directory, capture_output=True, text=True)
    line = next((out for out in completed.stdout.splitlines() if out.startswith("CLEANUP-FIGURES")), None)
    if completed.returncode != 0 or line is None:
        print(completed.stdout[-3000:], completed.stderr[-2000:])
        return 1
    import json

    figures = json.loads(line.split(" ", 1)[1])
    print(f"janitor cost per test (median of {rounds}):")
    for rows, milliseconds in figures.items():
        print(f"  {rows:>4} rows in the result table: {milliseconds:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
