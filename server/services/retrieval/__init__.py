"""Retrieval (A15, A19, A25): what the retrieval API serves, and retention."""
