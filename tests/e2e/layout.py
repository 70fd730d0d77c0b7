"""The call's geometry, measured in the page (issue 17): shared by the Chromium layout test
(tests/e2e/test_call_layout_browser.py) and the Firefox one (test_firefox_screens.py).

``MEASURE`` is a page function ``([root, wantPrompt]) => {problems}``: Playwright passes it
to ``page.evaluate``; in Firefox (Marionette) ``firefox_measure`` wraps it."""

from __future__ import annotations

from typing import Any

PHONES = ({"width": 390, "height": 844}, {"width": 360, "height": 640})
DESKS = ({"width": 1280, "height": 720}, {"width": 1920, "height": 1080})
INVESTOR_ROOT = "#queue-session"
DESK_ROOT = "#work-session"

# Geometry of one page, measured in the page. Rectangles are in viewport pixels.
MEASURE = """([root, wantPrompt]) => {
  const problems = [];
  const vw = document.documentElement.clientWidth;
  const vh = window.innerHeight;
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return { l: r.left, t: r.top, r: r.right, b: r.bottom };
  };
  const fmt = (b) => `[${[b.l, b.t, b.r, b.b].map(Math.round).join(',')}]`;
  const inView = (b) => b.l >= -1 && b.t >= -1 && b.r <= vw + 1 && b.b <= vh + 1;
  const meets = (a, b) => a.l < b.r - 1 && b.l < a.r - 1 && a.t < b.b - 1 && b.t < a.b - 1;
  // The face region: the centre half (both ways) of the picture actually drawn.
  const face = (v) => {
    const b = box(v);
    let { l, t } = b;
    let w = b.r - b.l;
    let h = b.b - b.t;
    if (getComputedStyle(v).objectFit === 'contain' && v.videoWidth && v.videoHeight) {
      const s = Math.min(w / v.videoWidth, h / v.videoHeight);
      l += (w - v.videoWidth * s) / 2;
      t += (h - v.videoHeight * s) / 2;
      w = v.videoWidth * s;
      h = v.videoHeight * s;
    }
    return { l: l + w / 4, t: t + h / 4, r: l + 3 * w / 4, b: t + 3 * h / 4 };
  };
  const scope = document.querySelector(root);
  const remote = scope.querySelector('[data-call=remote]');
  const local = scope.querySelector('[data-call=local]');
  const band = scope.querySelector('[data-call=prompt]');
  if (!inView(box(remote))) problems.push(`other party's video out of view ${fmt(box(remote))}`);
  if (meets(box(local), face(remote))) {
    problems.push(`own picture ${fmt(box(local))} over the other's face ${fmt(face(remote))}`);
  }
  if (wantPrompt) {
    const b = box(band);
    if (band.hidden) problems.push('prompt band hidden');
    if (!inView(b)) problems.push(`prompt band not wholly in view ${fmt(b)} in ${vw}×${vh}`);
    for (const v of [remote, local]) {
      if (meets(b, face(v))) {
        problems.push(`prompt band ${fmt(b)} over the face of ${v.dataset.call} ${fmt(face(v))}`);
      }
    }
    for (const part of ['step', 'zh', 'en']) {
      const e = band.querySelector(`[data-call=prompt-${part}]`);
      if (!e.textContent.trim() || e.getClientRects().length === 0) {
        problems.push(`prompt ${part} empty or not shown`);
      }
    }
    for (const lang of ['zh', 'en']) {
      const who = band.querySelector(`[data-call=prompt-who] .${lang}`);
      if (!who || who.getClientRects().length === 0) problems.push(`who speaks: ${lang} not shown`);
    }
    const size = parseFloat(getComputedStyle(band.querySelector('[data-call=prompt-zh]')).fontSize);
    if (size < 16) problems.push(`prompt text ${size}px, smaller than 16px`);
  }
  const scroll = document.documentElement.scrollWidth;
  if (scroll > vw) problems.push(`horizontal overflow: ${scroll}px in ${vw}px`);
  // No shown text squeezed narrower than its first two characters: the widest line of
  // every text run must hold them (one character per line fails).
  const ctx = document.createElement('canvas').getContext('2d');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const chars = [...n.textContent.trim()];
    const e = n.parentElement;
    if (chars.length < 2 || e.closest('.visually-hidden, script, style, select')) continue;
    range.selectNodeContents(n);
    const lines = Array.from(range.getClientRects()).filter((r) => r.width > 0);
    if (lines.length === 0 || getComputedStyle(e).visibility === 'hidden') continue;
    const cs = getComputedStyle(e);
    ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const need = ctx.measureText(chars.slice(0, 2).join('')).width;
    const widest = Math.max(...lines.map((r) => r.width));
    if (widest + 1 < need) {
      problems.push(`"${chars.slice(0, 12).join('')}" at most ${Math.round(widest)}px wide`);
    }
  }
  return { problems };
}"""


# On a desk the whole call must fit the window at every step (issue 17): every control of
# the call bar (mute, camera, hang-up, ...) wholly inside the viewport, not cut at its foot.
CALL_BAR = """([root]) => {
  const vw = document.documentElement.clientWidth;
  const vh = window.innerHeight;
  const problems = [];
  const bar = document.querySelector(root).querySelector('.call-bar');
  const controls = bar ? Array.from(bar.querySelectorAll('button, [data-call=quality]')) : [];
  if (controls.length === 0) problems.push('call bar: no controls');
  // As the page is now, and with the session's top at the window's top (where the desk puts
  // it as the call starts, session.js): the page scrolls only by its heading, so the bar
  // must fit both ways.
  const { scrollX, scrollY } = window;
  const check = (where) => { for (const c of controls) {
    if (c.getClientRects().length === 0) continue;  // hidden (e.g. a button not offered)
    const r = c.getBoundingClientRect();
    if (!(r.left >= -1 && r.top >= -1 && r.right <= vw + 1 && r.bottom <= vh + 1)) {
      const name = c.dataset.call || c.textContent.trim().slice(0, 12);
      problems.push(`call bar control ${name} not wholly in view (${where}) ` +
        `[${[r.left, r.top, r.right, r.bottom].map(Math.round).join(',')}] in ${vw}×${vh}`);
    }
  } };
  check('as scrolled');
  const v = document.querySelector(root)
    .querySelector('[data-call=remote]').getBoundingClientRect();
  const b = bar ? bar.getBoundingClientRect() : null;
  document.querySelector(root).scrollIntoView({ block: 'start' });
  check('session at top');
  const top = bar ? bar.getBoundingClientRect().bottom : null;
  window.scrollTo(scrollX, scrollY);
  return { problems, bar_bottom: b ? b.bottom : null, bar_bottom_at_top: top,
           video: [v.width, v.height] };
}"""


# The control's box, the desk video's box and the ID front image's box (the witness
# compares the face on the video with it), after the control was brought into view the way
# a click or a focus would.
CONTROL_AND_VIDEO = """([sel]) => {
  const b = (e) => {
    const r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  };
  return { control: b(document.querySelector(sel)),
           video: b(document.querySelector('#work-session [data-call=remote]')),
           front: b(document.querySelector('#docs figure:first-child img')),
           vw: document.documentElement.clientWidth, vh: window.innerHeight };
}"""


async def firefox_measure(fx: Any, root: str, *, prompt: bool) -> list[str]:
    """The problems MEASURE finds in Firefox's page (``fx``: tests.firefox.AsyncFirefox)."""
    got = await fx.js(f"return ({MEASURE})([arguments[0], arguments[1]]);", root, prompt)
    return list(got["problems"])
