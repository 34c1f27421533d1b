import pytest


@pytest.fixture(scope="session")
def sorted_words_table(celery_astra_database):
    """The app's own table, created once in the test keyspace and emptied after every test."""
    celery_astra_database.create_table(
        "sorted_words", cql="CREATE TABLE sorted_words (text text PRIMARY KEY, sorted text)")
    return "sorted_words"
