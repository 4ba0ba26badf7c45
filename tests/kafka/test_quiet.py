"""A partition's silence is counted from the offset it was read to (no broker needed)."""

from __future__ import annotations

from transforms.kafka import _Quiet

P0, P1 = ("preds", 0), ("preds", 1)


def test_silence_runs_while_the_offset_stays():
    quiet = _Quiet()
    assert quiet.seconds(P0, 10, now=100.0) == 0.0
    assert quiet.seconds(P0, 10, now=102.5) == 2.5
    assert quiet.seconds(P0, 10, now=130.0) == 30.0
    assert quiet.seconds(P1, 10, now=130.0) == 0.0  # partitions are apart
    assert quiet.seconds(P0, 11, now=131.0) == 0.0  # a message came: silence starts again
    assert quiet.seconds(P0, 11, now=134.0) == 3.0


def test_a_reader_back_after_others_read_on_does_not_take_their_messages_for_silence():
    """The runner handed the partition to another DoFn instance while the stream flowed;
    this one had found it empty at the start, and gets it back 53 s later, 500 messages on."""
    quiet = _Quiet()
    assert quiet.seconds(P0, 0, now=0.0) == 0.0
    assert quiet.seconds(P0, 500, now=53.0) == 0.0
    assert quiet.seconds(P0, 500, now=53.5) == 0.5
