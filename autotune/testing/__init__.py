"""Helpers that the test suites of autotune (and of new backends) share."""
