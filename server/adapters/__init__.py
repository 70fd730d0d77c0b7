"""Adapters to outside services (identity registry, SMS, CSDC account system, email), each
with a sandbox twin; every kind declared, checked and built one way (kinds.py)."""
