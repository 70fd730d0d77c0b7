"""What the statement's quality control (A18.5) knows of the investor's sound. Pure."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VoiceSample"]


@dataclass(frozen=True)
class VoiceSample:
    """One stretch of decoded sound (silero VAD's window, 32 ms at 16 kHz, or several)."""

    # Session clock (ms since the session started) of the stretch's start, and its length.
    at_ms: int
    duration_ms: int
    # silero's probability that the stretch is speech, 0–1.
    speech: float
    # Largest absolute sample, as a share of full scale (1.0 = the format's limit).
    peak: float
    # Share of samples at or within 0.1 % of full scale (clipping).
    clipped: float
    # Root mean square level, as a share of full scale.
    rms: float
