"""Media benchmark: server CPU and memory per two-way witness session, relay + recording
versus relay alone (issue 5; the full load generator is issue 9).

    python -m bench.media --sessions 1 2 4 --seconds 20

For each mode (record on / off) and each session count it starts a real server process
(SQLite, in-process queue, loopback), takes N investors through the intake API and N
witnesses through the desk socket, pairs them through the queue, and connects an aiortc
client per party that sends pre-encoded 640×480 @ 15 fps VP8 and 20 ms Opus (no encoding
in the client process) and counts what it receives without decoding it. Over a steady
window it reads the server's CPU time from /proc; afterwards it checks every recording
decodes. Loopback only; at most 4 sessions (the sandbox registry's mainland identities).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fractions
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.content import DEFAULT_INTAKE_PATH
from server.media import hooks

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 480, 15
PASSWORD = "benchmark password"  # noqa: S105 - throwaway accounts in a temp database
INVESTORS = [
    ("张三", "11010519491231002X", "F", "1949-12-31"),
    ("李四", "110101200001010010", "M", "2000-01-01"),
    ("王五", "440306199001011236", "M", "1990-01-01"),
    ("赵六", "310104197506150045", "F", "1975-06-15"),
]


# ── pre-encoded media ──────────────────────────────────────────────────────────────────
def encode_clip(seconds: int = 2) -> tuple[list[bytes], list[bytes]]:
    """A looping clip: VP8 frames (first is a keyframe) and 20 ms Opus frames."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, FPS)
    enc.framerate = FPS  # type: ignore[attr-defined]
    enc.bit_rate = 600_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    video: list[bytes] = []
    for i in range(seconds * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        # A moving diagonal ramp with some texture: a realistic-ish bitrate.
        row = bytes((x * 3 + i * 11 + (x * 7919 % 13)) % 256 for x in range(WIDTH + HEIGHT))
        frame.planes[0].update(b"".join(row[y : y + WIDTH] for y in range(HEIGHT)))
        for plane in frame.planes[1:]:
            plane.update(bytes([128 + (i % 20)]) * plane.buffer_size)
        frame.pts = i
        frame.time_base = enc.time_base
        if i == 0:
            frame.pict_type = av.video.frame.PictureType.I  # type: ignore[attr-defined]
        video += [bytes(p) for p in enc.encode(frame)]  # type: ignore[attr-defined]
    video += [bytes(p) for p in enc.encode(None)]  # type: ignore[attr-defined]
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format = 48_000, "mono", "s16"  # type: ignore[attr-defined]
    aenc.time_base = fractions.Fraction(1, 48_000)
    audio: list[bytes] = []
    for i in range(seconds * 50):
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(bytes((i * 37 + n) % 7 for n in range(1920)))
        frame.sample_rate, frame.pts = 48_000, i * 960
        frame.time_base = aenc.time_base
        audio += [bytes(p) for p in aenc.encode(frame)]  # type: ignore[attr-defined]
    return video, audio


class PacketTrack(MediaStreamTrack):
    """Returns pre-encoded packets in real time; aiortc packetizes them unencoded."""

    def __init__(self, kind: str, payloads: list[bytes]) -> None:
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.rate, self.step, self.interval = (
            (90_000, 90_000 // FPS, 1 / FPS) if kind == "video" else (48_000, 960, 0.02)
        )
        self.sent = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.sent * self.interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        packet = av.Packet(self.payloads[self.sent % len(self.payloads)])
        packet.pts = self.sent * self.step
        packet.time_base = fractions.Fraction(1, self.rate)
        self.sent += 1
        return packet


class Party:
    def __init__(self, http: aiohttp.ClientSession, session_id: str, token: str) -> None:
        self.http, self.session_id, self.token = http, session_id, token
        self.received = {"video": 0, "audio": 0}
        self.first_frame_at: float | None = None
        self.pc: RTCPeerConnection | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tracks: list[PacketTrack] = []

    def _count(self, kind: str) -> hooks.FrameSink:
        def sink(_codec: str, _data: bytes, _ts: int) -> None:
            self.received[kind] += 1
            if kind == "video" and self.first_frame_at is None:
                self.first_frame_at = time.monotonic()

        return sink

    async def start(self, video: list[bytes], audio: list[bytes]) -> None:
        self.ws = await self.http.ws_connect(
            f"/ws/session/{self.session_id}?token={self.token}", heartbeat=None
        )
        await _next(self.ws, "joined")
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc = pc
        self.tracks = [PacketTrack("audio", audio), PacketTrack("video", video)]
        for track in self.tracks:
            transceiver = pc.addTransceiver(track, direction="sendrecv")
            # Count what arrives without decoding it (the same tap the server uses).
            hooks.tap_receiver(transceiver.receiver, self._count(track.kind))
        await pc.setLocalDescription(await pc.createOffer())
        await self.ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await _next(self.ws, "answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()


# ── driving the server ─────────────────────────────────────────────────────────────────
async def _next(
    ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 20
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket closed waiting for {kind}: {msg}")
            data = json.loads(msg.data)
            if data.get("type") == kind:
                return data  # type: ignore[no-any-return]
            if data.get("type") == "error":
                raise RuntimeError(f"server error waiting for {kind}: {data}")


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (800, 500), "#3a6").save(buf, "JPEG")
    return buf.getvalue()


async def investor_queued(http: aiohttp.ClientSession, n: int) -> None:
    name, id_number, sex, birth = INVESTORS[n]
    phone = f"1380013{n + 1:04d}"
    api = "/api/v1/investor"
    async with http.post(f"{api}/otp", json={"phone": phone}) as r:
        body = await r.json()
        if "sandbox_code" not in body:
            raise RuntimeError(f"OTP refused: {r.status} {body}")
        code = body["sandbox_code"]
    async with http.post(f"{api}/session", json={"phone": phone, "code": code}) as r:
        h = {"X-CSRF-Token": (await r.json())["csrf_token"]}
    identity = {
        "name": name, "document_type": "resident_id", "id_number": id_number, "sex": sex,
        "birth_date": birth, "valid_from": "2015-06-01", "valid_until_long_term": True,
        "nationality": "CHN", "address": "北京市朝阳区建国路88号", "occupation": "retired",
        "email": "bench@example.cn",
    }  # fmt: skip
    async with http.put(f"{api}/application/identity", json=identity, headers=h) as r:
        assert r.status == 200, await r.text()
    for kind in ("id_front", "id_back", "frontal_photo"):
        hdr = {**h, "Content-Type": "image/jpeg"}
        async with http.put(f"{api}/application/documents/{kind}", data=_jpeg(), headers=hdr) as r:
            assert r.status == 200, await r.text()
    async with http.get(f"{api}/questionnaire") as r:
        q = await r.json()
    answers = {item["id"]: [item["options"][0]["id"]] for item in q["questions"]}
    async with http.put(
        f"{api}/application/suitability", json={"answers": answers}, headers=h
    ) as r:
        assert r.status == 200, await r.text()
    async with http.get(f"{api}/disclosure") as r:
        body = {"version": (await r.json())["version"], "scrolled_to_end": True}
    async with http.post(f"{api}/application/disclosure", json=body, headers=h) as r:
        assert r.status == 200, await r.text()
    async with http.post(f"{api}/application/submit", json={}, headers=h) as r:
        assert (await r.json())["application"]["state"] == "identity_verified"
    async with http.post(f"{api}/application/queue", json={}, headers=h) as r:
        assert r.status == 200, await r.text()


async def witness_login(http: aiohttp.ClientSession, username: str) -> None:
    async with http.get("/staff/login", headers={"Accept": "text/html"}) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
    assert token
    form = {"username": username, "password": PASSWORD, "csrf_token": token[1]}
    async with http.post("/staff/login", data=form, allow_redirects=False) as r:
        assert r.status == 302, r.status


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(cfg: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(done.stderr)


async def run_case(
    sessions: int, record: bool, seconds: float, clip: tuple[list[bytes], list[bytes]]
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-media-"))
    content = tmp / "intake.toml"
    content.write_text(
        re.sub(r"min_read_seconds = \d+", "min_read_seconds = 0", DEFAULT_INTAKE_PATH.read_text())
    )
    cfg = tmp / "config.toml"
    cfg.write_text(
        f"""
[database]
url = "sqlite+aiosqlite:///{tmp / "bench.db"}"
[storage]
recordings_dir = "{tmp / "recordings"}"
[security]
data_key = "{base64.b64encode(os.urandom(32)).decode()}"
create_key_file = false
[intake]
content_file = "{content}"
[identity]
sandbox_latency_ms = 0
[sms]
sandbox_latency_ms = 0
[pairing]
dispatch_interval_seconds = 0.2
[media]
host_addresses = ["127.0.0.1"]
record = {"true" if record else "false"}
[logging]
level = "WARNING"
format = "text"
"""
    )
    _cli(cfg, "migrate")
    for n in range(sessions):
        _cli(
            cfg, "staff", "add", f"bench.w{n}", "--name", f"W{n}", "--roles", "witness",
            "--employee-number", f"B{n}", "--licence", "S0850120090042", "--contract",
            "--training-passed", "2026-01-05", "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("w")
    env = {**os.environ, "WITNESS_SERVER_PUBLIC_URL": base}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(cfg), "serve", "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    https: list[aiohttp.ClientSession] = []
    parties: list[Party] = []
    keepalive: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(150):
                with contextlib.suppress(aiohttp.ClientError):
                    async with probe.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.2)
        rss_idle = _rss_mb(proc.pid)
        for n in range(sessions):
            inv = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
            wit = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
            https += [inv, wit]
            await investor_queued(inv, n)
            await witness_login(wit, f"bench.w{n}")
            inv_ws = await inv.ws_connect("/ws/investor")
            wit_ws = await wit.ws_connect("/ws/witness")
            keepalive.append(asyncio.create_task(_pinger(inv_ws, wit_ws)))
            joined_queue = time.monotonic()
            await wit_ws.send_json({"type": "ready"})
            offer = await _next(wit_ws, "offer")
            await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
            w_match = await _next(wit_ws, "matched")
            i_match = await _next(inv_ws, "matched")
            pair = [
                Party(inv, i_match["session_id"], i_match["token"]),
                Party(wit, w_match["session_id"], w_match["token"]),
            ]
            await asyncio.gather(*(p.start(*clip) for p in pair))
            parties += pair
            while not all(p.first_frame_at for p in pair):
                await asyncio.sleep(0.05)
            pair[0].joined_queue = joined_queue  # type: ignore[attr-defined]
        await asyncio.sleep(2)  # warm-up: every leg flowing
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        sent0 = [sum(t.sent for t in p.tracks if t.kind == "video") for p in parties]
        recv0 = [p.received["video"] for p in parties]
        await asyncio.sleep(seconds)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        sent = sum(sum(t.sent for t in p.tracks if t.kind == "video") for p in parties) - sum(sent0)
        recv = sum(p.received["video"] for p in parties) - sum(recv0)
        rss = _rss_mb(proc.pid)
        join_to_media = [
            p.first_frame_at - p.joined_queue  # type: ignore[attr-defined,operator]
            for p in parties
            if hasattr(p, "joined_queue")
        ]
        for p in parties:
            await p.close()
        await asyncio.sleep(1.5)  # the server closes and finalizes the recordings
    finally:
        for task in keepalive:
            task.cancel()
        for http in https:
            await http.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    recordings = _check_recordings(tmp)
    return {
        "sessions": sessions,
        "record": record,
        "cpu_per_session": (cpu1 - cpu0) / (t1 - t0) / sessions * 100,
        "rss_idle_mb": rss_idle,
        "rss_mb": rss,
        "video_sent": sent,
        "video_received": recv,
        "join_to_first_frame_s": max(join_to_media) if join_to_media else None,
        **recordings,
    }


async def _pinger(*sockets: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        for ws in sockets:
            with contextlib.suppress(ConnectionError):
                if not ws.closed:
                    await ws.send_json({"type": "ping"})
        await asyncio.sleep(2)


def _check_recordings(tmp: Path) -> dict[str, Any]:
    db = sqlite3.connect(tmp / "bench.db")
    rows = db.execute("select path, status, video_frames, duration_ms from recordings").fetchall()
    db.close()
    decodable = 0
    for path, status, frames, _ms in rows:
        if status != "complete":
            continue
        with av.open(str(tmp / "recordings" / path)) as c:
            if sum(1 for _ in c.decode(*c.streams.video)) == frames:
                decodable += 1
    return {
        "recordings": len(rows),
        "recordings_ok": decodable,
        "recorded_video_frames": sum(r[2] for r in rows),
    }


async def main(args: argparse.Namespace) -> None:
    clip = encode_clip()
    print(
        f"# {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"640x480@{FPS} fps VP8 ~600 kbit/s + Opus, {args.seconds:.0f} s steady window"
    )
    print(
        "sessions record  cpu%/session  rss_idle→rss MB  video sent→recv  "
        "recordings ok  join→media s"
    )
    for sessions in args.sessions:
        for record in (True, False):
            r = await run_case(sessions, record, args.seconds, clip)
            mode = "on " if r["record"] else "off"
            print(
                f"{r['sessions']:>8} {mode}    {r['cpu_per_session']:>11.1f}"
                f"  {r['rss_idle_mb']:>6.0f}→{r['rss_mb']:<6.0f}"
                f"   {r['video_sent']:>6}→{r['video_received']:<6}"
                f"  {r['recordings_ok']}/{r['recordings']:<12}"
                f" {r['join_to_first_frame_s'] or 0:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0)
    parsed = parser.parse_args()
    if max(parsed.sessions) > len(INVESTORS):
        parser.error(f"at most {len(INVESTORS)} sessions (sandbox identities)")
    asyncio.run(main(parsed))
