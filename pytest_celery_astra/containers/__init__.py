"""The containers a run starts (RabbitMQ, Redis, Cassandra): the engine, readiness, sharing, reuse and faults."""
