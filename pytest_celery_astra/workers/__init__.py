"""The workers that run tasks: a thread in the test process, a real ``celery worker`` process, who consumes when."""
