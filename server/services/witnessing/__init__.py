"""Witnessing (A12, A14, A17.3, A17.4): the live call. Media sessions of this node and
their database side, crash recovery, the witness's script actions and the face aid."""
