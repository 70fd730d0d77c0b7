"""Compliance (A3, A23): AML screening in the flow and its desk; risk alerts."""
