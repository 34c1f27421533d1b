"""The app's own table, ``sorted_words``, emptied after every test like the result table.

On Astra DB the keyspace is shared: ``sorted_words`` is then one table for every xdist worker, and each
worker empties it after each of its tests. These tests expect the table to themselves, so with --astra
they run under -n 0 only (skipped under -n, with that reason).
"""

import os

import pytest

from tasks import storeSortedWords


@pytest.fixture(autouse=True)
def _alone_in_the_table(celery_astra_database):
    if celery_astra_database.target.is_astra and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("on Astra DB sorted_words is shared by the xdist workers, which empty it after each test: "
                    "run these with -n 0")


def test_task_writes_its_own_table(celery_astra_worker, celery_astra_cassandra, sorted_words_table):
    assert storeSortedWords.delay("b a").get(timeout=30) == "a b"
    row = celery_astra_cassandra.execute("SELECT sorted FROM sorted_words WHERE text = 'b a'").one()
    assert row.sorted == "a b"


def test_the_next_test_finds_it_empty(celery_astra_worker, celery_astra_cassandra, sorted_words_table):
    assert celery_astra_cassandra.execute("SELECT * FROM sorted_words").one() is None
    storeSortedWords.delay("d c").get(timeout=30)
