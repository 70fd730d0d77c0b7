"""A3 screening adapter: the sandbox against list files, the vendor's JSON gateway, and the
[screening] config section.

The HTTP provider runs against a real local aiohttp server scripted per test; sandboxes
get a recording sleep so latency is checked without waiting. Whatever goes wrong, the
answer is UNAVAILABLE, never CLEAR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from server.adapters.identity_registry import DEFAULT_SANDBOX_IDENTITIES
from server.adapters.kinds import AdapterConfigError, BuildContext, build
from server.adapters.screening import SCREENING, HttpScreening, SandboxScreening
from server.adapters.screening_lists import LIST_HEADER, load_list_file
from server.config import DEFAULT_CONFIG_PATH, ConfigError, ScreeningConfig, load_config
from server.domain.identity_document import DocumentType, validate_id_number
from server.domain.screening import (
    ListKind,
    Match,
    MatchBasis,
    Person,
    ScreeningLists,
    ScreeningResult,
)

ZHANG = Person("张三", "11010519491231002X", date(1949, 12, 31), "CHN", "resident_id")
ZHANG_MASKED = "110105********002X"
HEADER = ",".join(LIST_HEADER)
TIMEOUT = 0.2
BACKOFF = 0.01


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers requested delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _person(name: str, id_number: str) -> Person:
    kind = DocumentType.HMT_RESIDENCE_PERMIT if id_number.startswith("81") else None
    born = validate_id_number(
        id_number, kind or DocumentType.RESIDENT_ID, today=date(2030, 1, 1)
    ).birth_date
    return Person(name, id_number, born, "CHN", "resident_id")


# --- sandbox -----------------------------------------------------------------------------


async def test_built_in_lists_hold_two_sandbox_identities_and_clear_the_others() -> None:
    screening = build(SCREENING, ScreeningConfig(sandbox_latency_ms=0))
    assert isinstance(screening, SandboxScreening)
    assert screening.lists.counts() == {"sanctions": 3, "pep": 2, "blocklist": 2}
    found = {}
    for name, number in DEFAULT_SANDBOX_IDENTITIES:
        answer = await screening.screen(_person(name, number))
        found[name] = (answer.result, [(m.list_name, m.entry_id, m.basis) for m in answer.matches])
    # For the wiring's end-to-end tests: 赵六 stops on the blocklist (趙六, by ID number),
    # 王五 is held by a sanctions entry "WANG, Wu" (by name); the people the other tests
    # use pass.
    assert found == {
        "张三": (ScreeningResult.CLEAR, []),
        "李四": (ScreeningResult.CLEAR, []),
        "王五": (ScreeningResult.POSSIBLE_MATCH, [("sanctions", "SBX-S-0002", MatchBasis.NAME)]),
        "赵六": (ScreeningResult.MATCH, [("blocklist", "SBX-B-0001", MatchBasis.ID_NUMBER)]),
        "陈大文": (ScreeningResult.CLEAR, []),
        "孙七": (ScreeningResult.CLEAR, []),
        "周八": (ScreeningResult.CLEAR, []),
    }
    await screening.close()


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_configured_list_files_replace_the_built_in_ones(tmp_path: Path) -> None:
    _write(
        tmp_path / "sanctions.csv",
        "# the agency's copy",
        "",
        HEADER,
        'S-1,"ZHANG, San",張三|Z San,,1949,CHN,wanted',
        "S-2,,,E1234 5678,,,passport only",
    )
    _write(tmp_path / "empty.csv", HEADER)
    section = ScreeningConfig(
        sandbox_latency_ms=0,
        sanctions_file="sanctions.csv",  # relative: resolved the way the context says
        pep_file=str(tmp_path / "empty.csv"),
    )
    screening = build(SCREENING, section, BuildContext(resolve_path=lambda name: tmp_path / name))
    assert isinstance(screening, SandboxScreening)
    assert screening.lists.counts() == {"sanctions": 2, "pep": 0, "blocklist": 2}
    held = await screening.screen(ZHANG)
    assert (held.result, held.matches) == (
        ScreeningResult.POSSIBLE_MATCH,
        (Match("sanctions", "S-1", MatchBasis.NAME, ScreeningResult.POSSIBLE_MATCH),),
    )
    stopped = await screening.screen(Person("Somebody", "e12345678"))
    assert stopped.result is ScreeningResult.MATCH


def test_list_file_entries_are_read_whole(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pep.csv", HEADER, " P-1 , 沙盒官员 , A | B ||, 110105x ,1958-08-08,chn, note "
    )
    (entry,) = load_list_file(path, ListKind.PEP)
    assert (entry.kind, entry.entry_id, entry.name, entry.aliases) == (
        ListKind.PEP,
        "P-1",
        "沙盒官员",
        ("A", "B"),
    )
    assert (entry.id_number, entry.birth_date, entry.nationality, entry.note) == (
        "110105X",
        "1958-08-08",
        "CHN",
        "note",
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("S-9,Name Only,,,1970,CHN", "expected 7 fields"),
        (",Name,,,,,", "entry_id is empty"),
        ("S-9,,alias only,,,,", "needs a name or an id_number"),
        ("S-9,Name,,,1970-13-01,,", "birth_date '1970-13-01': expected YYYY or YYYY-MM-DD"),
        ("S-9,Name,,,70,,", "birth_date '70'"),
        ("S-1,Again,,,,,", "entry_id 'S-1' repeats line 3"),
        ('S-9,"Name,,,,,', "malformed CSV"),
    ],
)
def test_a_malformed_line_stops_the_start_naming_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    _write(tmp_path / "lists.csv", "# header next", HEADER, "S-1,Fine,,,,,", line)
    section = ScreeningConfig(sanctions_file=str(tmp_path / "lists.csv"))
    where = re.escape(f"{tmp_path / 'lists.csv'}:4: ")
    with pytest.raises(
        AdapterConfigError, match=rf"^screening\.sanctions_file: {where}.*{problem}"
    ):
        build(SCREENING, section)


def test_a_list_without_its_header_or_file_stops_the_start(tmp_path: Path) -> None:
    _write(tmp_path / "pep.csv", "P-1,Name,,,,,")
    with pytest.raises(AdapterConfigError, match=r"^screening\.pep_file: .*pep.csv:1: expected"):
        build(SCREENING, ScreeningConfig(pep_file=str(tmp_path / "pep.csv")))
    _write(tmp_path / "blank.csv", "# nothing")
    with pytest.raises(AdapterConfigError, match=r"^screening\.pep_file: .*blank.csv:1: expected"):
        build(SCREENING, ScreeningConfig(pep_file=str(tmp_path / "blank.csv")))
    with pytest.raises(AdapterConfigError, match=r"^screening\.blocklist_file: .*none.csv"):
        build(SCREENING, ScreeningConfig(blocklist_file=str(tmp_path / "none.csv")))


def _sandbox(**kwargs: Any) -> tuple[SandboxScreening, RecordingSleep]:
    sleep = RecordingSleep()
    lists = build(SCREENING, ScreeningConfig())
    assert isinstance(lists, SandboxScreening)
    return SandboxScreening(lists.lists, rng=random.Random(7), sleep=sleep, **kwargs), sleep


async def test_sandbox_waits_latency_plus_jitter() -> None:
    screening, sleep = _sandbox(latency_ms=400, latency_jitter_ms=100)
    for _ in range(20):
        await screening.screen(ZHANG)
    assert all(0.4 <= delay <= 0.5 for delay in sleep.delays) and len(sleep.delays) == 20


async def test_sandbox_failures_are_unavailable_never_clear() -> None:
    busy, _ = _sandbox(failure_rate=1.0)
    answer = await busy.screen(_person("赵六", "310104197506150045"))  # on the blocklist
    assert (answer.result, answer.error_code, answer.matches) == (
        ScreeningResult.UNAVAILABLE,
        "upstream_busy",
        (),
    )
    some, _ = _sandbox(failure_rate=0.5)
    results = [(await some.screen(ZHANG)).result for _ in range(200)]
    assert set(results) == {ScreeningResult.CLEAR, ScreeningResult.UNAVAILABLE}
    assert 60 <= results.count(ScreeningResult.UNAVAILABLE) <= 140
    # Testers' magic number: sequence digits 998.
    never, _ = _sandbox()
    answer = await never.screen(Person("张三", "110105198001019985"))
    assert (answer.result, answer.error_code) == (ScreeningResult.UNAVAILABLE, "upstream_timeout")


def test_sandbox_rejects_impossible_settings() -> None:
    lists = ScreeningLists(())
    with pytest.raises(ValueError, match="failure_rate"):
        SandboxScreening(lists, failure_rate=1.5)
    with pytest.raises(ValueError, match="latencies"):
        SandboxScreening(lists, latency_ms=-1)


async def test_sandbox_raw_response_masks_the_investor() -> None:
    screening, _ = _sandbox()
    answer = await screening.screen(_person("赵六", "310104197506150045"))
    assert answer.raw["id_number"] == "310104********0045" and answer.raw["name"] == "赵*"
    assert "310104197506150045" not in repr(answer.raw) and "赵六" not in repr(answer.raw)
    assert answer.raw["matches"] == [
        {"list": "blocklist", "entry_id": "SBX-B-0001", "basis": "id_number", "result": "match"}
    ]
    assert answer.reference.startswith("SCR") and answer.provider == "sandbox"


# --- a scripted vendor gateway -----------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless ``text`` is given
    text: str | None = None
    delay: float = 0.0


@dataclass
class Gateway:
    url: str
    replies: list[Reply]
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
async def gateway(
    aiohttp_server: AiohttpServer,
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    release = asyncio.Event()  # lets slow handlers finish when the test ends

    async def start(*replies: Reply) -> Gateway:
        state = Gateway(url="", replies=list(replies))

        async def handle(request: web.Request) -> web.StreamResponse:
            state.requests.append((dict(request.headers), await request.json()))
            # The last reply repeats: "always 500" is one Reply.
            reply = state.replies.pop(0) if len(state.replies) > 1 else state.replies[0]
            if reply.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), reply.delay)
            if reply.text is not None:
                return web.Response(status=reply.status, text=reply.text)
            return web.json_response(reply.body, status=reply.status)

        app = web.Application()
        app.router.add_post("/screen", handle)
        server = await aiohttp_server(app)
        state.url = str(server.make_url("/screen"))
        return state

    yield start
    release.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _http(url: str, session: aiohttp.ClientSession, **kwargs: Any) -> HttpScreening:
    options: dict[str, Any] = {
        "api_key": "test-key",
        "timeout_seconds": TIMEOUT,
        "retries": 2,
        "backoff_seconds": BACKOFF,
        "session": session,
        **kwargs,
    }
    return HttpScreening(url=url, **options)


CLEAR_BODY = {"result": "clear", "reference": "V-1", "matches": []}
MATCH_BODY = {
    "result": "match",
    "reference": "V-2",
    "matches": [
        {"list": "UN Consolidated", "entry_id": "QDi.999", "basis": "id_number"},
        {"list": "PEP", "entry_id": "P-7", "basis": "name", "result": "possible_match"},
        {"list": "Own", "entry_id": "X-1", "basis": "fuzzy"},
    ],
}


async def test_http_clear_sends_the_person_and_the_key(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, CLEAR_BODY))
    answer = await _http(gw.url, session).screen(ZHANG)
    assert (answer.result, answer.matches, answer.reference) == (ScreeningResult.CLEAR, (), "V-1")
    assert (answer.error_code, answer.provider, answer.raw["attempts"]) == (None, "http", 1)
    headers, body = gw.requests[0]
    assert headers["Authorization"] == "Bearer test-key"
    assert {k: body[k] for k in ("name", "id_type", "id_number", "birth_date", "nationality")} == {
        "name": "张三",
        "id_type": "resident_id",
        "id_number": ZHANG.id_number,
        "birth_date": "1949-12-31",
        "nationality": "CHN",
    }
    assert len(body["request_id"]) == 32


async def test_http_hits_keep_lists_entries_and_the_masked_answer(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    echoed = {**MATCH_BODY, "echo": {"name": "张三", "id": ZHANG.id_number}}
    gw = await gateway(Reply(200, echoed))
    answer = await _http(gw.url, session).screen(ZHANG)
    assert answer.result is ScreeningResult.MATCH
    assert answer.matches == (
        Match("UN Consolidated", "QDi.999", MatchBasis.ID_NUMBER, ScreeningResult.MATCH),
        Match("PEP", "P-7", MatchBasis.NAME, ScreeningResult.POSSIBLE_MATCH),
        Match("Own", "X-1", MatchBasis.VENDOR, ScreeningResult.MATCH),
    )
    assert answer.raw["response"]["echo"] == {"name": "张*", "id": ZHANG_MASKED}
    assert answer.raw["response"]["matches"] == MATCH_BODY["matches"]


GARBAGE = [
    Reply(200, text="<html>gateway error</html>"),
    Reply(200, ["clear"]),
    Reply(200, {"result": "probably", "reference": "R-9"}),
    Reply(200, {"reference": "R-9"}),
    Reply(200, {"result": "clear", "matches": [{"list": "UN", "entry_id": "Q1"}]}),
    Reply(200, {"result": "match", "matches": "QDi.999"}),
    Reply(200, {"result": "possible_match", "matches": [{"list": "UN"}]}),
    Reply(200, {"result": "possible_match", "matches": [{"list": "", "entry_id": "Q1"}]}),
    Reply(200, {"result": "possible_match", "matches": ["Q1"]}),
]
GARBAGE_IDS = [
    "not-json",
    "not-an-object",
    "unknown-result",
    "no-result",
    "clear-with-hits",
    "matches-not-a-list",
    "hit-without-entry",
    "hit-without-list",
    "hit-not-an-object",
]


@pytest.mark.parametrize("reply", GARBAGE, ids=GARBAGE_IDS)
async def test_http_garbage_is_retried_then_unavailable(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession, reply: Reply
) -> None:
    gw = await gateway(reply)
    answer = await _http(gw.url, session).screen(ZHANG)
    assert (answer.result, answer.error_code, answer.matches) == (
        ScreeningResult.UNAVAILABLE,
        "bad_response",
        (),
    )
    assert len(gw.requests) == 3 and answer.raw["attempts"] == 3
    assert answer.reference.startswith("local-")


async def test_http_garbage_then_an_answer(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, text="not json"), Reply(500), Reply(200, MATCH_BODY))
    sleep = RecordingSleep()
    answer = await _http(gw.url, session, sleep=sleep).screen(ZHANG)
    assert answer.result is ScreeningResult.MATCH and answer.raw["attempts"] == 3
    assert sleep.delays == [BACKOFF, 2 * BACKOFF]  # exponential back-off between attempts


@pytest.mark.parametrize(
    ("reply", "code", "attempts"),
    [
        (Reply(500), "http_500", 3),
        (Reply(503, CLEAR_BODY), "http_503", 3),
        (Reply(429, CLEAR_BODY), "http_429", 3),
        (Reply(200, CLEAR_BODY, delay=5.0), "timeout", 3),
        (Reply(401, CLEAR_BODY), "auth_failed", 1),  # a wrong key does not heal by retrying
        (Reply(400, CLEAR_BODY), "bad_request", 1),
        (Reply(404, CLEAR_BODY), "http_404", 1),
    ],
    ids=["500", "503", "429", "timeout", "401", "400", "404"],
)
async def test_http_failures_are_unavailable_never_clear(
    gateway: Callable[..., Awaitable[Gateway]],
    session: aiohttp.ClientSession,
    reply: Reply,
    code: str,
    attempts: int,
) -> None:
    gw = await gateway(reply)
    answer = await _http(gw.url, session).screen(ZHANG)
    assert (answer.result, answer.error_code) == (ScreeningResult.UNAVAILABLE, code)
    assert len(gw.requests) == attempts and answer.raw["attempts"] == attempts
    if code == "timeout":
        assert answer.latency_ms >= 3 * TIMEOUT * 1000


async def test_http_connection_refused(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = await _http(f"http://127.0.0.1:{port}/screen", session, retries=1).screen(ZHANG)
    assert (answer.result, answer.error_code) == (ScreeningResult.UNAVAILABLE, "connection_error")
    assert answer.raw["attempts"] == 2


async def test_http_never_logs_personal_data(
    gateway: Callable[..., Awaitable[Gateway]],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await gateway(Reply(503), Reply(200, {"result": "maybe", "name": "张三"}))
    caplog.set_level(logging.DEBUG)
    answer = await _http(gw.url, session).screen(ZHANG)
    assert answer.result is ScreeningResult.UNAVAILABLE
    assert caplog.records
    for record in caplog.records:
        dump = repr(vars(record)) + record.getMessage()
        assert ZHANG.id_number not in dump and "张三" not in dump and "test-key" not in dump


async def test_built_http_screening_uses_its_sections_gateway(
    gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gw = await gateway(Reply(200, CLEAR_BODY))
    section = ScreeningConfig(provider="http", http_url=gw.url, http_api_key="screening-key")
    screening = build(SCREENING, section)
    assert isinstance(screening, HttpScreening)
    answer = await screening.screen(ZHANG)
    await screening.close()
    assert answer.result is ScreeningResult.CLEAR
    assert gw.requests[0][0]["Authorization"] == "Bearer screening-key"


# --- the [screening] section -------------------------------------------------------------

_HTTP = {"WITNESS_SCREENING_PROVIDER": "http"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WITNESS_SCREENING_PROVIDER": "worldcheck"},
            "screening.provider: must be 'sandbox' or 'http', got 'worldcheck'",
        ),
        (
            {**_HTTP, "WITNESS_SCREENING_HTTP_API_KEY": "k"},
            "screening.http_url: required when screening.provider = 'http'",
        ),
        (
            {**_HTTP, "WITNESS_SCREENING_HTTP_URL": "https://aml.example.cn/screen"},
            "screening.http_api_key: required when screening.provider = 'http'",
        ),
        (
            {
                **_HTTP,
                "WITNESS_SCREENING_HTTP_URL": "https://aml.example.cn/screen",
                "WITNESS_SCREENING_HTTP_API_KEY": "k",
                "WITNESS_SCREENING_PEP_FILE": "pep.csv",
            },
            "screening.pep_file: only with screening.provider = 'sandbox'",
        ),
        (
            {"WITNESS_SCREENING_SANDBOX_FAILURE_RATE": "1.5"},
            "screening.sandbox_failure_rate: must be between 0 and 1",
        ),
        ({"WITNESS_SCREENING_HTTP_RETRIES": "two"}, "WITNESS_SCREENING_HTTP_RETRIES: expected"),
    ],
)
def test_config_errors_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_config(DEFAULT_CONFIG_PATH, env=env)


def test_shipped_config_screens_in_the_sandbox(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, env={})
    assert cfg.screening == ScreeningConfig()
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        '[screening]\nprovider = "http"\nhttp_url = "https://aml.example.cn/screen"\n'
        'http_api_key = "k"\nhttp_timeout_seconds = 3\n',
        encoding="utf-8",
    )
    cfg = load_config(config_file, env={})
    assert (cfg.screening.provider, cfg.screening.http_timeout_seconds) == ("http", 3.0)
