"""The 3-node cluster part: collected only when scripts/test-cluster gives it a cluster
(CELERY_ASTRA_TEST_CLUSTER_HOSTS), so the single-node sessions neither run nor skip it."""

import os

collect_ignore_glob = [] if os.environ.get("CELERY_ASTRA_TEST_CLUSTER_HOSTS") else ["test_*.py"]
