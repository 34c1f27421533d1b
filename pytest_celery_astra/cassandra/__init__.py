"""The Cassandra side: where it is, the test keyspace and tables, the result backend, and per-test cleanup."""
