// A witness session (A17.3): the call over /ws/session/<id> on the node that holds it,
// the ID images beside the live video, stills, and the checklist (script.js). The desk
// socket says when a session starts (matched) and ends (peer_left, session_ended).

import { startCallIn } from '../js/call.js';
import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { nodeWs } from '../js/socket.js';
import { renderBusiness } from './business.js';
import { createScriptPanel } from './script.js';
import { CHOSEN_ENDINGS, SESSION_OVER, SESSION_PHASE, caseRows } from './text.js';

/** An image with its caption; the alt text says the same. */
function figure(src, zh, en) {
  return el('figure', {},
    el('img', { src, alt: `${zh} ${en}`, loading: 'lazy' }),
    el('figcaption', {}, `${zh} ${en}`));
}

/** The similarity aid: advice only, the witness judges (A17.3). */
function faceScoreText(score) {
  const d = score.distances || {};
  const part = (v) => (v === null || v === undefined ? '未检出人脸 no face' : v.toFixed(2));
  return `比对参考 Aid: 证件照 ID ${part(d.id_front)} · 开户照 intake ${part(d.frontal_photo)}`
    + ` — ${score.likely_same ? '距离小于' : '距离不小于'} ${score.threshold}`
    + ` ${score.likely_same ? '可能为同一人 likely the same person' : '请仔细核对 check carefully'}（仅供参考 advice only）`;
}

/**
 * @param {{ messages: ReturnType<import('./messages.js').createMessages>,
 *           send: (message: object) => boolean, onChange: () => void,
 *           onOver: () => void }} deps
 */
export function createSession({ messages, send, onChange, onOver }) {
  const endBtn = $('#session-end');
  let session = null; // { id, phase, call }
  let lastCase = null; // the application of the offer that became this session

  const path = (rest) => `/staff/witness/sessions/${encodeURIComponent(session.id)}/${rest}`;

  /** Send an action on the session socket; never drop one silently. */
  function act(message) {
    if (!session || !session.call || !session.call.send(message)) {
      // During a reconnect the witness is told to retry.
      messages.showError({ message: 'Not connected; try again in a moment.', message_zh: '连接中断，请稍后重试。' });
      return false;
    }
    return true;
  }

  const script = createScriptPanel({
    act,
    showError: messages.showError,
    showPrompt: (step) => session?.call?.showPrompt?.(step),
  });

  function setPhase(phase) {
    if (!session) return;
    session.phase = phase;
    const status = $('#session-status');
    status.dataset.phase = phase;
    status.replaceChildren(bi(...SESSION_PHASE[phase]));
  }

  /** The ID images and the intake photo beside the live video (A17.3). */
  function renderDocs() {
    $('#docs').replaceChildren(
      figure(path('documents/id_front'), '证件人像面', 'ID front'),
      figure(path('documents/id_back'), '证件国徽面', 'ID back'),
      figure(path('documents/frontal_photo'), '开户照片', 'Intake photo'),
    );
    script.resetFace();
  }

  /** Every still beside the video, each with its face score when it comes (issue 17): on
   * the still message itself or as a face_score message naming the still. */
  const pendingScores = new Map(); // still id → face_score that came before its still

  function showScore(score) {
    $('#face-score').textContent = faceScoreText(score);
    const item = $('#still-list').querySelector(`li[data-still="${CSS.escape(String(score.still))}"]`);
    if (!item) {
      pendingScores.set(String(score.still), score);
      return;
    }
    const d = score.distances || {};
    const part = (v) => (v === null || v === undefined ? '— no face' : v.toFixed(2));
    item.dataset.likely = score.likely_same ? 'same' : 'check';
    item.querySelector('.still-score').replaceChildren(
      el('span', {}, `证件照 ID ${part(d.id_front)}`),
      el('span', {}, `开户照 intake ${part(d.frontal_photo)}`),
      el('strong', {}, score.likely_same ? '可能一致 likely same' : '请核对 check'),
    );
  }

  function addStill(still) {
    const seconds = Math.round((still.offset_ms || 0) / 1000);
    const [zh, en] = still.kind === 'auto' ? ['自动', 'auto'] : ['手动', 'manual'];
    const id = String(still.id);
    $('#still-list').append(el('li', { dataset: { still: id, kind: still.kind === 'auto' ? 'auto' : 'manual' } },
      figure(path(`stills/${encodeURIComponent(still.id)}`), `${zh} ${seconds}s`, en),
      el('p', { className: 'still-score small' }, '暂无比对参考 no score yet')));
    const inline = still.face_score || still.score;
    const score = inline && typeof inline === 'object' ? { still: still.id, ...inline } : pendingScores.get(id);
    pendingScores.delete(id);
    if (score) showScore(score);
  }

  function onSessionMessage(data) {
    if (data.type === 'still') addStill(data);
    else if (data.type === 'script_state') {
      script.render(data);
      if (data.business) renderBusiness($('#session-business'), $('#session-summary'), data.business);
    }
    else if (data.type === 'id_number') $('#id-full').textContent = data.value;
    else if (data.type === 'face_score') showScore(data);
  }

  function closeCall() {
    const call = session && session.call;
    if (session) session.call = null;
    if (call) call.stop();
  }

  /** matched: the offer was accepted; join the session on its node. */
  function open(message, application) {
    closeCall();
    if (application) lastCase = application;
    messages.clearNotice();
    messages.clearAlert();
    const current = { id: message.session_id, phase: 'connecting', call: null };
    session = current;
    $('#session-summary').replaceChildren(...caseRows(lastCase));
    renderBusiness($('#session-business'), $('#session-summary'), null);
    $('#still-list').replaceChildren();
    pendingScores.clear();
    $('#id-full').textContent = '';
    $('#face-score').textContent = '';
    renderDocs();
    script.render(null);
    endBtn.disabled = false;
    setPhase('connecting');
    onChange();
    const wsPath = `/ws/session/${encodeURIComponent(current.id)}?token=${encodeURIComponent(message.token)}`;
    // Issue 17: 'joined' (the investor is on the session socket) is not 'live' (their
    // picture is arriving): the remote video's first frame says so.
    const remote = $('#work-session .call [data-call="remote"]');
    const hasFrames = () => remote.readyState >= 2 && remote.videoWidth > 0;
    const onFrames = () => {
      if (session === current && current.phase === 'joined' && hasFrames()) setPhase('live');
    };
    for (const kind of ['resize', 'playing', 'loadeddata']) remote.addEventListener(kind, onFrames);
    startCallIn($('#work-session .call'), nodeWs(message.node_url, wsPath), {
      onPhase(phase) {
        if (session !== current || !(phase in SESSION_PHASE)) return;
        setPhase(phase === 'live' && !hasFrames() ? 'joined' : phase);
      },
      onEnded(reason) {
        if (session && session.id === current.id) over(reason);
      },
      onError: messages.showError,
      onMessage: onSessionMessage,
    }).then((call) => {
      if (session === current) current.call = call;
      else call.stop();
    }).catch(() => {
      // The camera could not be opened: the call box says why. The witness can end the
      // session; the investor goes back to the head of the queue.
    });
    endBtn.focus({ preventScroll: true });
    // The session takes the page: its head at the top, the video under it.
    requestAnimationFrame(() => $('#work-session').scrollIntoView({ block: 'start' }));
  }

  /** The session is over (reason: an ending in SESSION_OVER, or null if unknown). */
  function over(reason) {
    if (!session) return;
    closeCall();
    session = null;
    lastCase = null;
    const [zh, en] = SESSION_OVER[reason] || ['会话已结束。', 'The session is over.'];
    messages.notice(zh, en, CHOSEN_ENDINGS.includes(reason) ? 'info' : 'warn');
    onChange();
    onOver();
  }

  /** Desk messages about a session end it only if they are about this one. */
  function overIfCurrent(sessionId, reason) {
    if (session && session.id === sessionId) over(reason);
  }

  /** The desk is no longer busy: a session whose socket has gone is over. */
  function overIfCallEnded() {
    if (session && session.call && session.call.ended) over(null);
  }

  endBtn.addEventListener('click', () => {
    if (!session) return;
    endBtn.disabled = true;
    if (!send({ type: 'end', session_id: session.id })) endBtn.disabled = false;
  });
  $('#still-capture').addEventListener('click', () => {
    if (session && session.call) session.call.send({ type: 'capture_still' });
  });
  $('#unmask-id').addEventListener('click', () => act({ type: 'unmask_id' }));

  return { open, overIfCurrent, overIfCallEnded, active: () => session !== null };
}
