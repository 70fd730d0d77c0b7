"""Intake (A4, A6, A13, A17.1, A17.2): investor sign-in, identity data, ID images,
suitability, risk disclosure, and the identity registry check."""
