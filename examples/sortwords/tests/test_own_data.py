from tasks import storeSortedWords


def test_task_writes_its_own_table(celery_astra_worker, celery_astra_cassandra, sorted_words_table):
    assert storeSortedWords.delay("b a").get(timeout=30) == "a b"
    row = celery_astra_cassandra.execute("SELECT sorted FROM sorted_words WHERE text = 'b a'").one()
    assert row.sorted == "a b"


def test_the_next_test_finds_it_empty(celery_astra_worker, celery_astra_cassandra, sorted_words_table):
    assert celery_astra_cassandra.execute("SELECT * FROM sorted_words").one() is None
    storeSortedWords.delay("d c").get(timeout=30)
