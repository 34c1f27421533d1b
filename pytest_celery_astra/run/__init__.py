"""One pytest process's run: its context (settings and choices), the report header, interruptions, recovery."""
