"""Reusable helpers for the test suite (real servers started on loopback, cleaned up after)."""
