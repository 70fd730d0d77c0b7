// The reviewer console (A17.5). Each player reports, about once a second while playing,
// the span it moved through, its playback rate and whether the page is visible; the
// server merges what counts (api/review.py) and refuses approval until every
// recording is covered and every document opened. Seeking never reports a jump.

import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';

const root = $('#review');
const sid = root.dataset.session;
const base = `/api/v1/review/sessions/${encodeURIComponent(sid)}`;
const csrf = document.querySelector('input[name="csrf_token"]')?.value || '';
const alertBox = $('#review-alert');

function showError(error) {
  alertBox.replaceChildren(bi(error.message_zh || '', error.message || error.code || 'Error'));
  alertBox.hidden = false;
}

async function call(path, method = 'GET', body = undefined) {
  const resp = await fetch(base + path, {
    method,
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw data.error || { code: `http_${resp.status}` };
  return data;
}

function render(status) {
  for (const rec of status.recordings || []) {
    const fig = root.querySelector(`[data-recording="${rec.id}"]`);
    if (!fig) continue;
    const pct = Math.floor(rec.fraction * 100);
    fig.querySelector('.bar').style.width = `${pct}%`;
    fig.querySelector('.coverage').setAttribute('aria-valuenow', String(pct));
    fig.querySelector('.coverage-text').textContent = rec.complete
      ? `${pct}% ✓ 已完整播放 fully played`
      : `${pct}% — 最长未播放 ${Math.round(rec.largest_gap_ms / 1000)} s unplayed`;
    fig.classList.toggle('is-complete', rec.complete);
  }
  for (const button of document.querySelectorAll('.doc')) {
    button.classList.toggle('is-opened', (status.opened || []).includes(button.dataset.item));
  }
  const problems = status.approve_problems || [];
  $('#approve').disabled = problems.length > 0;
  $('#approve-problems').replaceChildren(...problems.map((p) => el('li', {},
    p.startsWith('recording_not_covered') ? '有录像尚未完整播放 A recording is not fully played'
      : p.startsWith('document_not_opened') ? `未查看 Not opened: ${p.split(':')[1]}` : p)));
}

// ── damaged stretches (issue 16) ─────────────────────────────────────────────────────
// Drawn on a strip under each player, where they lie in the file (CSP: positions are
// set from here, never in style attributes).
for (const fig of root.querySelectorAll('[data-recording]')) {
  const strip = fig.querySelector('.damage-strip');
  if (!strip) continue;
  const duration = Math.max(1, Number(fig.dataset.duration) || 1);
  let stretches = [];
  try {
    stretches = JSON.parse(strip.dataset.damage || '[]');
  } catch {
    stretches = [];
  }
  for (const d of stretches) {
    const zh = d.kind === 'video' ? '视频受损' : '音频缺失';
    const mark = el('span', { className: `mark ${d.kind}`, title: `${zh} ${d.kind} ${d.reason} ${(d.length_ms / 1000).toFixed(1)} s` });
    mark.style.left = `${Math.min(100, (d.start_ms / duration) * 100)}%`;
    mark.style.width = `max(2px, ${Math.min(100, (d.length_ms / duration) * 100)}%)`;
    strip.append(mark);
  }
}

// ── playback reports ─────────────────────────────────────────────────────────────────
for (const fig of root.querySelectorAll('[data-recording]')) {
  const video = fig.querySelector('video');
  let from = null; // position (ms) where the current unreported stretch began
  let timer = null;
  const flush = async () => {
    if (from === null) return;
    const to = Math.round(video.currentTime * 1000);
    const span = { recording_id: fig.dataset.recording, from_ms: from, to_ms: to,
      rate: video.playbackRate, visible: document.visibilityState === 'visible' };
    from = video.paused ? null : to;
    if (to <= span.from_ms) return;
    try {
      render(await call('/playback', 'POST', span));
    } catch (err) {
      showError(err);
    }
  };
  video.addEventListener('playing', () => {
    from = Math.round(video.currentTime * 1000);
    clearInterval(timer);
    timer = setInterval(flush, 1000);
  });
  video.addEventListener('pause', () => { flush(); clearInterval(timer); });
  video.addEventListener('ended', () => { flush(); clearInterval(timer); });
  video.addEventListener('seeking', () => { from = null; }); // a jump is not playback
  video.addEventListener('seeked', () => {
    if (!video.paused) from = Math.round(video.currentTime * 1000);
  });
  video.addEventListener('ratechange', () => {
    // Report what was played at the old rate before the new one applies.
    flush().then(() => { if (!video.paused) from = Math.round(video.currentTime * 1000); });
  });
}
document.addEventListener('visibilitychange', () => {
  // Hidden time never counts: close the running spans at the switch.
  for (const video of root.querySelectorAll('video')) video.dispatchEvent(new Event('ratechange'));
});

/** Seek every player to a moment of the session clock (files share it). */
function seekAll(sessionMs) {
  for (const fig of root.querySelectorAll('[data-recording]')) {
    const local = Math.max(0, (sessionMs - Number(fig.dataset.start)) / 1000);
    fig.querySelector('video').currentTime = local;
  }
}
for (const button of document.querySelectorAll('[data-seek]')) {
  button.addEventListener('click', () => seekAll(Number(button.dataset.seek)));
}
$('#play-all').addEventListener('click', () => {
  seekAll(0);
  for (const video of root.querySelectorAll('video')) video.play().catch(() => {});
});

// ── documents ────────────────────────────────────────────────────────────────────────
for (const button of document.querySelectorAll('.doc')) {
  button.addEventListener('click', async () => {
    const item = button.dataset.item;
    const view = $('#doc-view');
    $('#app-data').hidden = item !== 'application_data';
    $('#suitability-answers').hidden = item !== 'application_data';
    if (item === 'application_data') {
      view.hidden = true;
    } else {
      view.replaceChildren(el('img', { alt: item, src: `/staff/review/${encodeURIComponent(sid)}/documents/${item}` }));
      view.hidden = false;
    }
    try {
      render(await call('/opened', 'POST', { item }));
    } catch (err) {
      showError(err);
    }
  });
}

// ── decision ─────────────────────────────────────────────────────────────────────────
async function decide(body) {
  try {
    const result = await call('/decision', 'POST', body);
    const done = $('#decision-done');
    const witnessStage = done.dataset.stage === 'witness'; // A18.6: a witness's review
    if (witnessStage) {
      done.textContent = result.decision === 'approve'
        ? '审核通过，待复核 Passed; a reviewer reviews it next' : '审核不通过 Failed';
    } else {
      done.textContent = result.decision === 'approve' ? '已复核通过 Approved' : '已驳回 Rejected';
    }
    done.hidden = false;
    $('#approve').disabled = true;
    $('#reject').disabled = true;
  } catch (err) {
    showError(err);
  }
}
$('#approve').addEventListener('click', () => decide({ decision: 'approve' }));
$('#reject').addEventListener('click', () => decide({
  decision: 'reject', reason_code: $('#reject-reason').value, notes: $('#reject-notes').value,
}));

// The recordings are served only to the reviewer holding the review: claim first.
call('/claim', 'POST').then((status) => {
  for (const video of root.querySelectorAll('video[data-src]')) video.src = video.dataset.src;
  render(status);
}).catch(showError);
