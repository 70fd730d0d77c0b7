"""Adapters to outside services (identity registry, SMS), each with a sandbox twin."""
