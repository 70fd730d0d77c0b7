"""Review (A17.5): a second person plays every recording in full and approves or rejects."""
