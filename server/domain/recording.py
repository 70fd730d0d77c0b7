"""The statuses of a recording segment and of a still (A15, A19)."""

from __future__ import annotations

from enum import StrEnum


class RecordingStatus(StrEnum):
    RECORDING = "recording"  # open: frames are still being written
    COMPLETE = "complete"  # finalized at the end of its segment
    RECOVERED = "recovered"  # finalized after a crash from what reached the disk
    EMPTY = "empty"  # closed without a single frame
    FAILED = "failed"  # nothing playable could be made of it


# What a reviewer can play and the retrieval API serves as a recording.
PLAYABLE = frozenset({RecordingStatus.COMPLETE, RecordingStatus.RECOVERED})
# Closed for good: retention may purge these once their time is up.
FINISHED = frozenset(
    {
        RecordingStatus.COMPLETE,
        RecordingStatus.RECOVERED,
        RecordingStatus.FAILED,
        RecordingStatus.EMPTY,
    }
)


class StillKind(StrEnum):
    AUTO = "auto"  # taken at the investor's first keyframe
    MANUAL = "manual"  # the witness pressed "take frontal photo"
    # A18.4: frontal photos the system took during a one-way attempt's instructions.
    LIVENESS = "liveness"
