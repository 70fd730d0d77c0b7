"""Firefox (the investor) and Chromium (the witness) through a witnessed call: the steps
shared by the Firefox tests (tests/e2e/test_firefox_*.py), driven like tests/e2e/pages.py
drives Chromium. Firefox is driven over Marionette (tests/firefox.py)."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.async_api import Page, expect

from server.domain.script import ScriptStep
from tests.e2e.conftest import artifact
from tests.e2e.pages import API_INTAKE, PHONE, ZHANG, ZHANG_SAN, url, witness_desk
from tests.firefox import AsyncFirefox

# Every RTCPeerConnection the page makes, kept where the test can read its stats. Put in
# place before the page opens any (the call starts after pairing, without a reload).
KEEP_PCS = """
if (!window.__pcs) {
  window.__pcs = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
}
"""

# The newest connection's view of the call: video received (frames decoded, codec) and
# sent (codec), and the candidate types of the pair carrying it.
CALL_STATS = """
const pc = window.__pcs && window.__pcs[window.__pcs.length - 1];
if (!pc) return null;
const stats = await pc.getStats();
const out = { state: pc.connectionState, inbound: null, outbound: null, pair: null };
const codec = (id) => { const c = id && stats.get(id); return c ? c.mimeType : null; };
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video') {
    out.inbound = { framesDecoded: s.framesDecoded || 0, codec: codec(s.codecId),
                    width: s.frameWidth || 0 };
  } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
    out.outbound = { framesEncoded: s.framesEncoded || 0, codec: codec(s.codecId) };
  } else if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) {
    const l = stats.get(s.localCandidateId), r = stats.get(s.remoteCandidateId);
    out.pair = { local: l && l.candidateType, remote: r && r.candidateType,
                 protocol: l && (l.relayProtocol || l.protocol) };
  }
});
return out;
"""


def jpeg_file(path: Path, color: str) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (856, 540), color).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


async def photograph(fx: AsyncFirefox, kind: str) -> None:
    """The in-page camera (static/investor/capture.js) with Firefox's fake camera."""
    await fx.click(f".tile[data-kind={kind}] [data-action=camera]")
    await fx.wait_visible("#camera")
    await fx.click("#camera-shoot", timeout=15.0)
    await fx.click("#camera-use")
    await fx.wait_visible(f".tile[data-kind={kind}].is-stored", timeout=15.0)


async def firefox_sign_in(fx: AsyncFirefox) -> None:
    """The phone step: the number, the sandbox's one-time code."""
    await fx.fill("#phone", PHONE)
    await fx.click("#otp-send")
    code = await fx.wait(
        "const e = document.querySelector('#sandbox-otp-code');"
        "return e && /^\\d{6}$/.test(e.innerText) ? e.innerText : null;",
        what="sandbox OTP",
    )
    await fx.fill("#code", code)
    await fx.click("#phone-submit")


async def firefox_verified_investor(fx: AsyncFirefox, server: Any) -> None:
    """Sign in, the intake through the page's own API, the registry check: what
    tests/e2e/pages.verified_investor does in Chromium."""
    await fx.goto(url(server, "/open"))
    await firefox_sign_in(fx)
    await fx.wait_visible("#step-identity")
    await fx.js(f"return await ({API_INTAKE})(arguments[0]);", ZHANG)
    await fx.reload()
    await fx.click("#check-submit")
    await fx.wait_visible("#check-verified", timeout=15.0)


async def firefox_intake(fx: AsyncFirefox, server: Any, tmp_path: Path) -> None:
    """Every intake step through the investor pages, as a person would, in Firefox."""
    await fx.goto(url(server, "/open"))
    # 1 phone
    await firefox_sign_in(fx)
    # 2 identity: the sandbox registry's 张三
    await fx.click("#sandbox-identities summary")
    await fx.click(f"[data-fill-identity][data-id-number='{ZHANG_SAN}']")
    await fx.js(
        "const s = document.querySelector('#occupation'); s.value = 'retired';"
        "s.dispatchEvent(new Event('change', {bubbles: true}));"
    )
    assert await fx.js("return document.querySelector('#birth_date').value") == "1949-12-31"
    await fx.fill("#address", "北京市朝阳区建国路88号")
    await fx.click("#identity-submit")
    # 3 ID images: the front by the camera, the back by file
    await fx.wait_visible("#step-id_images")
    await photograph(fx, "id_front")
    await fx.upload(
        ".tile[data-kind=id_back] input[type=file]", jpeg_file(tmp_path / "back.jpg", "#c9d3e6")
    )
    await fx.wait_visible(".tile[data-kind=id_back].is-stored", timeout=15.0)
    try:
        await fx.wait(
            "const i = document.querySelector('.tile[data-kind=id_front] .tile-img');"
            "return i && i.complete && i.naturalWidth > 0;",
            what="front thumbnail decoded",
            timeout=20.0,
        )
    except TimeoutError as e:
        got = await fx.js(
            "const i = document.querySelector('.tile[data-kind=id_front] .tile-img');"
            "const r = await fetch(i.src); const b = await r.blob();"
            "return [i.src, i.complete, i.naturalWidth, r.status, b.type, b.size,"
            " document.cookie, isSecureContext];"
        )
        raise AssertionError(f"{e}: {got}") from None
    await fx.screenshot(artifact("firefox-intake-3-id-images.png"))
    await fx.click("#step-id_images [data-next]")
    # 4 frontal photo: camera only
    await fx.wait_visible("#step-frontal_photo")
    await photograph(fx, "frontal_photo")
    await fx.click("#step-frontal_photo [data-next]")
    # 5 suitability: the second choice of every question
    await fx.wait_visible("#step-suitability fieldset.question")
    questions = await fx.js(
        "return [...document.querySelectorAll('fieldset.question')].map((f) => f.id)"
    )
    assert questions
    for qid in questions:
        await fx.click(f"#{qid} label.choice:nth-of-type(2)")
    await fx.click("#suit-submit")
    level = await fx.wait(
        "const e = document.querySelector('#suit-level');"
        "return e && /^C[1-5]$/.test(e.innerText) ? e.innerText : null;",
        what="suitability level",
    )
    assert re.fullmatch(r"C[1-5]", level)
    await fx.click("#suit-result [data-next]")
    # 6 disclosure: scrolled to the end, then agreed
    await fx.wait_visible("#step-disclosure")
    await fx.js("const b = document.querySelector('#disc-box'); b.scrollTop = b.scrollHeight;")
    await fx.wait_text("#disc-hint", "已阅读至文末")
    await fx.click("#disc-agree")
    await fx.click("#disc-confirm")
    # 7 summary and the registry check
    await fx.wait_visible("#step-check")
    assert await fx.js("return document.querySelectorAll('#check-thumbs img').length") == 3
    await fx.click("#check-submit")
    await fx.wait_visible("#check-verified", timeout=15.0)
    await fx.screenshot(artifact("firefox-intake-7-verified.png"))


async def call_stats(fx: AsyncFirefox | Page, *, frames: int, within: float = 20.0) -> Any:
    """Wait until the remote video has ``frames`` decoded frames; return the stats."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if isinstance(fx, AsyncFirefox):
            stats = await fx.js(CALL_STATS)
        else:
            stats = await fx.evaluate(f"async () => {{ {CALL_STATS} }}")
        inbound = (stats or {}).get("inbound") or {}
        if inbound.get("framesDecoded", 0) >= frames:
            return stats
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"remote video not decoding: {stats}")
        await asyncio.sleep(0.5)


DIAGNOSE = """
const pcs = window.__pcs || [];
const last = pcs[pcs.length - 1];
const ice = [];
if (last) (await last.getStats()).forEach((s) => {
  if (s.type.includes('candidate')) ice.push(JSON.stringify(s));
});
return { ice, watch: window.__watch, phase: document.querySelector('#queue-session').dataset.phase,
  pcs: pcs.map((pc) => { try { return { state: pc.connectionState,
    ice: pc.iceConnectionState }; }
    catch (e) { return String(e); } }) };
"""


async def firefox_remote_playing(fx: AsyncFirefox) -> None:
    video = "#queue-session [data-call=remote]"
    try:
        await fx.wait(
            f"return document.querySelector('{video}').readyState === 4;",
            timeout=20.0,
            what="remote video ready",
        )
    except TimeoutError as e:
        raise AssertionError(f"{e}: {await fx.js(DIAGNOSE)}") from None
    await fx.wait(
        f"return document.querySelector('{video}').readyState === 4;",
        timeout=20.0,
        what="remote video ready",
    )
    first = await fx.js(f"return document.querySelector('{video}').currentTime")
    await asyncio.sleep(1)
    assert await fx.js(f"return document.querySelector('{video}').currentTime") > first
    assert await fx.js(f"return document.querySelector('{video}').videoWidth") == 640
    assert await fx.js(
        f"return document.querySelector('{video}').srcObject.getAudioTracks()"
        ".some(t => t.readyState === 'live')"
    )


async def witness_remote_playing(wit: Page) -> None:
    """The investor's Firefox camera arrives at the desk and keeps advancing."""
    video = wit.locator("#work-session [data-call=remote]")
    await expect(video).to_have_js_property("readyState", 4, timeout=20_000)
    first = await video.evaluate("v => v.currentTime")
    await asyncio.sleep(1)
    assert await video.evaluate("v => v.currentTime") > first
    assert await video.evaluate("v => v.videoWidth") > 0
    assert await video.evaluate(
        "v => v.srcObject.getAudioTracks().some(t => t.readyState === 'live')"
    )


async def firefox_precall(fx: AsyncFirefox) -> str:
    """The pre-call check on the verified panel, to a verdict that may join."""
    await fx.click("#precall-start")
    verdict = await fx.wait(
        "const v = document.querySelector('#precall-verdict');"
        "return v && !v.hidden && v.dataset.verdict;",
        timeout=40.0,
        what="pre-call verdict",
    )
    assert verdict in ("ok", "weak"), await fx.text("#precall")
    await fx.wait("return !document.querySelector('#join-queue').disabled;", what="join enabled")
    return str(verdict)


async def firefox_joins_queue(fx: AsyncFirefox) -> None:
    await fx.js(KEEP_PCS)
    await fx.click("#join-queue")
    await fx.wait_text("#queue-position", "1")


async def witness_takes_the_call(server: Any, fx: AsyncFirefox, wit: Page) -> dict[str, Any]:
    """The witness (Chromium) takes the investor (Firefox, queued) from the desk; both see
    each other; frames decode at each party. Returns Firefox's call stats."""
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=15_000)
    await wit.click("#offer-accept")
    await firefox_remote_playing(fx)
    await witness_remote_playing(wit)
    await fx.wait_text("#session-status", "已与见证人员建立连接")
    # Frames decoded at each party; Firefox sends and receives VP8.
    ff_stats = await call_stats(fx, frames=30)
    wit_stats = await call_stats(wit, frames=30)
    assert ff_stats["inbound"]["codec"] == "video/VP8", ff_stats
    assert ff_stats["outbound"]["codec"] == "video/VP8", ff_stats
    assert wit_stats["inbound"]["codec"] == "video/VP8", wit_stats
    return ff_stats  # type: ignore[no-any-return]


async def witness_runs_the_script(
    fx: AsyncFirefox,
    wit: Page,
    steps: Sequence[ScriptStep],
    ff_stats: dict[str, Any],
    *,
    shots: str = "firefox",
) -> None:
    """Disclosure card, every step, a still, the face judgement and a pass, each seen on
    the investor's Firefox page; Firefox keeps decoding VP8 throughout."""
    # A12: the disclosure card, over Firefox's video.
    await wit.click("#disclosure-show")
    await fx.wait_text("#queue-session [data-call=disclosure]", "S0850120090042")
    await fx.screenshot(artifact(f"{shots}-witnessing-disclosure.png"))
    await wit.click("#disclosure-confirm")
    await fx.wait_visible("#queue-session [data-call=disclosure-done]")

    # A17.4: every step of the script over the investor's video.
    for i, step in enumerate(steps):
        await expect(wit.locator("#step-next")).to_be_enabled()
        await wit.click("#step-next")
        await fx.wait_text("#queue-session [data-call=prompt-zh]", step.text_zh)
        await asyncio.sleep(0.5)
        if step.expects_answer:
            await wit.click(".marks [data-mark=clear]")
            await expect(wit.locator("#script-steps li").nth(i).locator(".mark")).to_be_visible()
    await fx.screenshot(artifact(f"{shots}-witnessing-prompt.png"))

    # A17.3: a still from Firefox's video, the face judgement, the verdict.
    await wit.click("#still-capture")
    await expect(wit.locator("#still-list li[data-kind=manual] img")).to_have_count(
        1, timeout=10_000
    )
    await wit.check("#face-judge input[value=match]")
    await expect(wit.locator("#verdict-pass")).to_be_enabled()
    late = await call_stats(fx, frames=ff_stats["inbound"]["framesDecoded"] + 30)
    assert late["inbound"]["codec"] == "video/VP8"
    await wit.click("#verdict-pass")
    await fx.wait_visible("#done-pass", timeout=10.0)
    await expect(wit.locator("#desk-notice")).to_contain_text("见证通过")
    await fx.screenshot(artifact(f"{shots}-witnessing-done.png"))
