"""Tests that run the hub, the lot and the stream drivers in the test process itself,
under gevent (``python -m tests.ingevent`` patches the standard library first, then runs
pytest on this folder; ``tests/test_ingevent.py`` runs it as part of the suite)."""
