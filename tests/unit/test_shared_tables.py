"""Astra app tables shared by a run's xdist workers (shared_tables.py): only the last user may drop one."""

from pytest_celery_astra.cassandra.shared_tables import TableUsers


def test_the_last_worker_to_release_a_table_is_told_to_drop_it(tmp_path):
    gw0, gw1 = TableUsers(tmp_path, "gw0"), TableUsers(tmp_path, "gw1")
    gw0.add("sorted_words")
    gw1.add("sorted_words")
    gw0.add("sorted_words")                     # twice: still one user
    assert gw0.release("sorted_words") is False  # gw1 still uses it
    assert gw1.release("sorted_words") is True


def test_a_table_nobody_else_uses_is_dropped_and_tables_are_counted_apart(tmp_path):
    gw0, gw1 = TableUsers(tmp_path, "gw0"), TableUsers(tmp_path, "gw1")
    gw0.add("a")
    gw1.add("b")
    assert gw0.release("a") is True
    assert gw1.release("b") is True
    assert not list(tmp_path.glob("*.json"))     # never mistaken for the run's container records
