"""An argon2 hasher that counts how many checks run at once and holds them until told:
the concurrency bound of server/services/password_checks.py observed, not timed."""

from __future__ import annotations

import threading
from typing import Literal

from argon2 import PasswordHasher


class GatedHasher(PasswordHasher):
    def __init__(self) -> None:
        # Cheap parameters: the work is held by the gate, not by the hash.
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            self.gate.wait(timeout=30)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1
