"""Frames of the wrong shape on every socket get an error reply and the socket stays open;
relayed messages carry only their allowed fields and are rate limited (issue 15 item 5).

The fuzz test sends generated frames (random JSON values and shapes, wrong-typed fields
for every known message, poisoned values, random text and binary) to the four sockets of
one real call: both parties' ``/ws/session/{id}``, ``/ws/investor`` and ``/ws/witness``.
After each batch the socket still answers a ping, nothing was logged as an error, no row
changed and the other party received nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from server.app import create_app
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, SessionEvent, WitnessSession
from server.web.session_messages import MAX_CHAT, MESSAGES, RELAY_BURST
from tests.call_flow import FAST_PAIRING, next_of, paired
from tests.server_config import make_config

REPLY_SECONDS = 3.0

# --- the call under test -------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any logger, while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@dataclass(frozen=True)
class Socket:
    """One of the call's sockets: how it is opened, and what answers its ping."""

    path: str
    pong: str
    first: str  # a message it sends on opening


@dataclass
class Call:
    client: Any
    session_id: str
    application_id: str
    sockets: dict[str, Socket]
    open: dict[str, Any] = field(default_factory=dict)

    async def ws(self, name: str) -> Any:
        """The named socket, opened again if a previous example got it closed (so each
        example is judged on its own frames)."""
        ws = self.open.get(name)
        if ws is None or ws.closed:
            spec = self.sockets[name]
            ws = await self.client.ws_connect(spec.path)
            await next_of(ws, spec.first)
            self.open[name] = ws
        return ws

    async def rows(self) -> tuple[int, int, str, str]:
        """What a refused frame must not change."""
        async with self.client.app[RUNTIME].db.begin() as tx:
            events = await tx.scalar(
                select(func.count())
                .select_from(SessionEvent)
                .where(SessionEvent.session_id == self.session_id)
            )
            audit = await tx.scalar(select(func.count()).select_from(AuditEntry))
            witness_session = await tx.get(WitnessSession, self.session_id)
            application = await tx.get(Application, self.application_id)
            assert witness_session is not None and application is not None
            return int(events or 0), int(audit or 0), witness_session.state, application.state


@pytest.fixture
async def mclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> Any:
    """The conftest's app, but presence and queue grace long enough that the queue's own
    expiry (an audit row, "witness.presence_expired") cannot land in the middle of a
    generated batch on a loaded machine: it is not what these tests check."""
    pairing = {**FAST_PAIRING, "witness_presence_ttl_seconds": 600, "investor_grace_seconds": 600}
    cfg = make_config(
        tmp_path,
        db_url,
        pairing=pairing,
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3, "keyframe_interval_seconds": 2},
    )
    return await aiohttp_client(create_app(cfg))


@pytest.fixture
async def call(mclient: Any) -> AsyncIterator[Call]:
    sid, w_token, i_token, extra = await paired(mclient)
    async with mclient.app[RUNTIME].db.begin() as tx:
        witness_session = await tx.get(WitnessSession, sid)
        assert witness_session is not None
        application_id = witness_session.application_id
    the_call = Call(
        mclient,
        sid,
        application_id,
        {
            "witness_session": Socket(f"/ws/session/{sid}?token={w_token}", "pong", "joined"),
            "investor_session": Socket(f"/ws/session/{sid}?token={i_token}", "pong", "joined"),
            "investor_queue": Socket("/ws/investor", "queue", "queue"),
            "witness_queue": Socket("/ws/witness", "state", "state"),
        },
        {"investor_queue": extra[1], "witness_queue": extra[2]},
    )
    await the_call.ws("witness_session")
    await the_call.ws("investor_session")
    # The media session, as the first offer would open it: from here on a refused frame
    # changes nothing.
    await mclient.app[RUNTIME].media.session(sid)
    yield the_call
    extra[0].cancel()
    for ws in the_call.open.values():
        await ws.close()


async def _send(ws: Any, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)


async def error_for(ws: Any, frame: str | bytes) -> dict[str, Any]:
    """Send a frame; its error reply (other messages, e.g. state updates, skipped)."""
    await _send(ws, frame)
    deadline = time.monotonic() + REPLY_SECONDS
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"no error reply to {frame!r:.300}") from None
        assert msg.type is WSMsgType.TEXT, f"socket dropped after {frame!r:.300}: {msg}"
        data = json.loads(msg.data)
        if data.get("type") == "error":
            error = data["error"]
            assert {"code", "message", "message_zh"} <= set(error), data
            return error  # type: ignore[no-any-return]


async def still_answers(ws: Any, pong: str) -> list[dict[str, Any]]:
    """A ping gets its reply: what arrived before it."""
    await ws.send_json({"type": "ping"})
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + REPLY_SECONDS
    while True:
        msg = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        assert msg.type is WSMsgType.TEXT, f"socket dropped: {msg}"
        data = json.loads(msg.data)
        if data.get("type") == pong:
            return seen
        seen.append(data)


# --- the frames found to break the sockets, one by one ---------------------------------

POISON: dict[str, str | bytes] = {
    "type is a list": '{"type": ["ping"]}',
    "type is an object": '{"type": {"ping": 1}}',
    "no type": '{"kind": "ping"}',
    "not an object": '"ping"',
    "null": "null",
    "not JSON": "ping",
    "deep nesting": '{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    "deep but parseable": '{"type": "ping", "x": ' + "[" * 50 + "]" * 50 + "}",
    "huge integer": '{"type": "ping", "n": ' + "9" * 5000 + "}",
    "unsafe integer": '{"type": "ping", "n": 9007199254740993}',
    "NaN": '{"type": "ping", "n": NaN}',
    "Infinity": '{"type": "ping", "n": -Infinity}',
    "overflowing float": '{"type": "ping", "n": 1e400}',
    "lone surrogate in type": '{"type": "\\ud800"}',
    "lone surrogate in a field": '{"type": "ping", "s": "\\udc00"}',
    "NUL in a field": '{"type": "ping", "s": "a\\u0000b"}',
    "binary frame": b'{"type": "ping"}',
    "wrong-typed sdp": '{"type": "offer", "sdp": 5}',
    "wrong-typed attempt": '{"type": "offer", "sdp": "v=0", "attempt": [1]}',
    "wrong-typed index": '{"type": "step_mark", "index": "x", "mark": "clear"}',
    "wrong-typed mark": '{"type": "step_mark", "index": 0, "mark": ["clear"]}',
    "wrong-typed result": '{"type": "verdict", "result": ["pass"]}',
    "wrong-typed mute": '{"type": "mute", "audio": "yes", "video": false}',
    "NaN mute": '{"type": "mute", "audio": NaN, "video": false}',
    "wrong-typed chat": '{"type": "chat", "text": {"a": 1}}',
    "surrogate chat": '{"type": "chat", "text": "\\ud83d"}',
    "overlong chat": json.dumps({"type": "chat", "text": "字" * (MAX_CHAT + 1)}),
    "wrong-typed offer id": '{"type": "accept", "offer_id": {"id": 1}}',
    "wrong-typed session id": '{"type": "end", "session_id": [1]}',
}


@pytest.mark.parametrize(
    "name", ["witness_session", "investor_session", "investor_queue", "witness_queue"]
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(
    call: Call, error_log: ErrorLog, name: str
) -> None:
    before = await call.rows()
    ws = await call.ws(name)
    for frame in POISON.values():
        await error_for(ws, frame)  # any refusal will do: the socket answered
    await still_answers(ws, call.sockets[name].pong)
    assert not ws.closed
    assert await call.rows() == before
    assert error_log.records == []


async def test_an_oversized_frame_still_closes_the_socket(call: Call) -> None:
    ws = await call.ws("investor_session")
    await ws.send_str(json.dumps({"type": "chat", "text": "x" * 70_000}))
    msg = await asyncio.wait_for(ws.receive(), REPLY_SECONDS)
    while msg.type is WSMsgType.TEXT:  # e.g. peer_joined, sent before
        msg = await asyncio.wait_for(ws.receive(), REPLY_SECONDS)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009


async def test_a_failing_handler_is_an_error_reply_logged_once_without_the_message(
    call: Call, error_log: ErrorLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    witnessing = call.client.app[RUNTIME].witnessing

    async def broken(**_: Any) -> dict[str, Any]:
        # A bug below the handler, e.g. a field looked up that the message lacks.
        fields: dict[str, dict[str, Any]] = {}
        return fields["secret-field-值"]

    monkeypatch.setattr(witnessing, "act", broken)
    ws = await call.ws("witness_session")
    frame = json.dumps({"type": "step_start", "index": 0, "note": "身份证 110105199001011234"})
    assert (await error_for(ws, frame))["code"] == "bad_message"
    await still_answers(ws, "pong")
    assert len(error_log.records) == 1
    logged = error_log.records[0]
    line = logged.getMessage() + repr(logged.exc_info) + repr(logged.__dict__)
    assert "KeyError" in line
    for secret in ("secret-field", "110105199001011234", "身份证"):
        assert secret not in line


# --- relayed messages ------------------------------------------------------------------


async def test_relayed_messages_carry_only_their_fields(call: Call) -> None:
    investor, witness = await call.ws("investor_session"), await call.ws("witness_session")
    await investor.send_json(
        {
            "type": "mute",
            "audio": True,
            "video": False,
            "from": "witness",
            "sdp": "v=0",
            "html": "<script>",
        }
    )
    assert await next_of(witness, "mute") == {
        "type": "mute",
        "audio": True,
        "video": False,
        "from": "investor",
    }
    await witness.send_json({"type": "chat", "text": "你好", "from": "investor", "x": [1]})
    assert await next_of(investor, "chat") == {"type": "chat", "text": "你好", "from": "witness"}


async def test_relayed_messages_are_rate_limited(call: Call) -> None:
    investor, witness = await call.ws("investor_session"), await call.ws("witness_session")
    sent = RELAY_BURST * 3
    refused = 0
    for i in range(sent):
        await investor.send_json({"type": "chat", "text": f"line {i}"})
        for reply in await still_answers(investor, "pong"):
            if reply.get("type") == "error":
                assert reply["error"]["code"] == "too_many"
                refused += 1
    assert sent - RELAY_BURST - 3 <= refused <= sent - RELAY_BURST
    for _ in range(sent - refused):
        assert (await next_of(witness, "chat"))["from"] == "investor"
    assert not [m for m in await still_answers(witness, "pong") if m.get("type") == "chat"]


# --- the fuzz ----------------------------------------------------------------------------

TEXT = st.text(max_size=12) | st.text(st.characters(categories=["Cs", "Cc", "Zs"]), max_size=4)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)


def _not(*kinds: type) -> st.SearchStrategy[Any]:
    """Any JSON value but these types (a bool is not an int here, as in the browser)."""
    return JSON.filter(
        lambda v: not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds)
    )


ANY = JSON
# Per known message, fields that make it wrong, each drawn with the rest of the message.
SESSION_WRONG: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "offer": {"sdp": _not(str) | TEXT, "attempt": ANY},
    "mute": {"audio": _not(bool), "video": ANY},
    "chat": {"text": _not(str) | st.just("字" * (MAX_CHAT + 1)) | st.just(" \n")},
    "step_start": {"index": _not(int)},
    "step_mark": {"index": _not(int), "mark": ANY, "note": ANY},
    "face_judge": {"judgement": _not(str) | TEXT},
    "verdict": {"result": _not(str) | TEXT, "reason_code": ANY, "notes": ANY},
}
# No fields to get wrong: only poisoned values and junk fields are sent (a valid one acts).
FIELDLESS = {"ping", "capture_still", "unmask_id", "disclosure_show", "disclosure_confirm"}
WITNESS_QUEUE_WRONG: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "accept": {"offer_id": _not(str)},
    "decline": {"offer_id": _not(str)},
    "end": {"session_id": _not(str)},
}
KNOWN = {
    "witness_session": set(MESSAGES),
    "investor_session": set(MESSAGES),
    "investor_queue": {"ping", "leave"},
    "witness_queue": {"ping", "ready", "not_ready", "accept", "decline", "end"},
}
WITNESS_ONLY = sorted(k for k, (who, _) in MESSAGES.items() if who is not None)


def _wrong(kind: str, fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[str]:
    first, *rest = fields  # the first field is always wrong; the others may be anything
    return st.fixed_dictionaries(
        {"type": st.just(kind), first: fields[first]},
        optional={name: fields[name] for name in rest},
    ).map(json.dumps)


def _poisoned(kinds: set[str]) -> st.SearchStrategy[str]:
    """A known message made unreadable by one value: deep, huge, non-finite, surrogate."""
    poison = st.one_of(
        st.integers(20, 4000).map(lambda n: "[" * n + "]" * n),
        st.integers(17, 6000).map(lambda n: "9" * n),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9007199254740993"]),
        st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04x}"'),
        st.just('"a\\u0000"'),
    )
    return st.builds(
        lambda kind, value: f'{{"type": {json.dumps(kind)}, "x": {value}}}',
        st.sampled_from(sorted(kinds)),
        poison,
    )


def _is_known(text: str, kinds: set[str]) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") in kinds


def frames(name: str) -> st.SearchStrategy[str | bytes]:
    kinds = KNOWN[name]
    refused_type = _not(str) | TEXT.filter(lambda t: t not in kinds)
    shapes: list[st.SearchStrategy[str | bytes]] = [
        st.binary(max_size=64),
        st.text(max_size=64).filter(lambda t: not _is_known(t, kinds)),
        JSON.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
        st.fixed_dictionaries({"type": refused_type}, optional={"x": ANY, "sdp": ANY}).map(
            json.dumps
        ),
        _poisoned(kinds),
    ]
    if name.endswith("_session"):
        shapes += [_wrong(kind, fields) for kind, fields in SESSION_WRONG.items()]
    if name == "investor_session":  # anything of the witness's, whatever its fields
        shapes.append(
            st.builds(
                lambda kind, extra: json.dumps({**extra, "type": kind}),
                st.sampled_from(WITNESS_ONLY),
                st.dictionaries(TEXT, ANY, max_size=3),
            )
        )
    if name == "witness_queue":
        shapes += [_wrong(kind, fields) for kind, fields in WITNESS_QUEUE_WRONG.items()]
    return st.one_of(shapes)


def test_every_session_message_is_fuzzed_with_wrong_fields_or_poison() -> None:
    assert set(MESSAGES) == set(SESSION_WRONG) | FIELDLESS


PEER = {"witness_session": "investor_session", "investor_session": "witness_session"}


@pytest.mark.parametrize(
    "name", ["witness_session", "investor_session", "investor_queue", "witness_queue"]
)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_frames_are_refused_and_the_socket_stays_open(
    call: Call, error_log: ErrorLog, name: str, data: st.DataObject
) -> None:
    batch = data.draw(st.lists(frames(name), min_size=1, max_size=6), label="frames")
    ws = await call.ws(name)
    before = await call.rows()
    error_log.records.clear()
    for frame in batch:
        await error_for(ws, frame)
    await still_answers(ws, call.sockets[name].pong)
    assert await call.rows() == before, "a refused frame changed a row"
    assert [r.getMessage() for r in error_log.records] == []
    if name in PEER:  # nothing of a refused frame reached the other party
        seen = await still_answers(await call.ws(PEER[name]), "pong")
        assert not [m for m in seen if m.get("type") in ("chat", "mute")], seen
