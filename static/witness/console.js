// The witness desk (A7, A17.3): presence and offers over /ws/witness, the session over
// /ws/session/<id> on the node that holds it. Messages: docs/pairing.md.

import { LiveSocket, nodeWs, sameOriginWs } from '../js/socket.js';
import { startCallIn } from '../js/call.js';

const DEFAULT_HEARTBEAT = 10; // seconds, until "hello" says otherwise
const OFFER_GRACE_MS = 5000; // after the countdown, wait this long for offer_closed

const $ = (selector) => document.querySelector(selector);

/** Chinese, then English in a muted span: the staff pages' convention. */
function bi(zh, en) {
  const frag = document.createDocumentFragment();
  frag.append(zh, ' ');
  const span = document.createElement('span');
  span.lang = 'en';
  span.textContent = en ?? zh;
  frag.append(span);
  return frag;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const STATES = {
  offline: ['离线', 'Offline'],
  not_ready: ['暂停接单', 'Not ready'],
  ready: ['等待分配', 'Ready'],
  offered: ['待接受', 'Offer pending'],
  busy: ['见证中', 'In a session'],
  wrap_up: ['整理中', 'Wrap-up'],
};
const HELP = {
  offline: ['工作台未连接，连接后即可开始接单。', 'The desk is not connected; you can go ready once it is.'],
  not_ready: ['点击“开始接单”后，系统将按排队顺序为您分配投资者。', 'Click Ready to be assigned investors in queue order.'],
  ready: ['正在等待分配投资者，请留在座位上，保持本页面打开。', 'Waiting for an investor: stay at your desk and keep this page open.'],
  offered: ['请在倒计时结束前接受或拒绝。', 'Accept or decline before the countdown ends.'],
  busy: ['见证进行中。', 'A session is in progress.'],
  wrap_up: ['会话已结束。整理完毕后点击“开始接单”。', 'The session is over. Click Ready when you have wrapped up.'],
};
const IDLE = {
  offline: ['正在连接工作台…', 'Connecting the desk…'],
  not_ready: ['当前暂停接单', 'You are not taking investors'],
  ready: ['等待投资者…', 'Waiting for an investor…'],
  offered: ['等待投资者…', 'Waiting for an investor…'],
  busy: ['见证进行中', 'Session in progress'],
  wrap_up: ['整理中', 'Wrap-up'],
};
const DOC_TYPES = {
  resident_id: ['居民身份证', 'Resident ID card'],
  hmt_residence_permit: ['港澳台居民居住证', 'HK/Macau/Taiwan residence permit'],
};
const RISK = {
  C1: ['保守型', 'Conservative'],
  C2: ['谨慎型', 'Cautious'],
  C3: ['稳健型', 'Balanced'],
  C4: ['积极型', 'Growth'],
  C5: ['激进型', 'Aggressive'],
};
const SESSION_PHASE = {
  connecting: ['正在连接会话…', 'Connecting to the session…'],
  waiting: ['等待投资者接入…', 'Waiting for the investor…'],
  live: ['投资者已接入', 'The investor has joined'],
  reconnecting: ['连接中断，正在重新连接…', 'Connection lost, reconnecting…'],
  away: ['投资者网络中断，等待其重新连接…', 'The investor lost their connection; waiting for them…'],
};
const SESSION_OVER = {
  ended_by_witness: ['会话已结束，投资者已回到队列最前。整理完毕后请点击“开始接单”。',
    'Session ended; the investor is back at the head of the queue. Click Ready when you have wrapped up.'],
  investor_left: ['投资者已离开，会话已结束；投资者已回到队列最前。您已被设为暂停接单。',
    'The investor left and the session is over; they are back at the head of the queue. You were set to not ready.'],
  join_timeout: ['投资者未在规定时间内接入，会话已取消，投资者已回到队列最前。',
    'The investor did not join in time; the session was cancelled and they are back at the head of the queue.'],
  witness_left: ['您的会话连接中断，会话已结束，投资者已回到队列最前。',
    'Your session connection dropped; the session ended and the investor is back at the head of the queue.'],
  witness_gone: ['您的工作台连接中断，会话已结束，投资者已回到队列最前。',
    'Your desk lost its connection; the session ended and the investor is back at the head of the queue.'],
  pass: ['见证通过，录像已保存并提交复核。整理完毕后请点击“开始接单”。',
    'Passed: the recordings are saved and sent to review. Click Ready when you have wrapped up.'],
  fail: ['见证不通过，结论已记录。整理完毕后请点击“开始接单”。',
    'Failed: the verdict is recorded. Click Ready when you have wrapped up.'],
};

let problemLabels = {};
try {
  problemLabels = JSON.parse($('#problem-labels').textContent || '{}');
} catch {
  problemLabels = {};
}

const desk = $('#desk');
const alertBox = $('#desk-alert');
const noticeBox = $('#desk-notice');
const toggle = $('#toggle');
const acceptBtn = $('#offer-accept');
const declineBtn = $('#offer-decline');
const endBtn = $('#session-end');

let state = 'offline';
let queueLength = null;
let heartbeat = DEFAULT_HEARTBEAT;
let pingTimer = null;
let togglePending = false;
let offer = null; // { id, deadline, total, application, timer }
let session = null; // { id, phase, ws, application }
let lastCase = null; // the application of the offer just accepted

// ── messages to the witness ────────────────────────────────────────────────────────
function showAlert(zh, en, extra = null) {
  alertBox.replaceChildren(el('p', {}, bi(zh, en)));
  if (extra) alertBox.append(extra);
  alertBox.hidden = false;
}

function clearAlert() {
  alertBox.hidden = true;
  alertBox.replaceChildren();
}

function showError(error) {
  const e = error || {};
  const en = e.message || e.code || 'Something went wrong.';
  const zh = e.message_zh || en;
  if (e.code === 'witness_not_eligible') {
    const problems = (e.details && e.details.problems) || [];
    const list = el('ul', { className: 'problem-list' }, ...problems.map((code) => {
      const label = problemLabels[code] || { zh: code, en: code };
      return el('li', { dataset: { code } }, bi(label.zh, label.en), ' ', el('code', {}, code));
    }));
    const ask = el('p', {}, bi('请联系管理员更新劳动合同、培训记录或执业编号。',
      'Ask an admin to update your contract, training or licence record.'));
    showAlert('您目前不具备见证资格（A7），不能开始接单：',
      'You are not eligible to witness (A7) and cannot go ready:', list);
    alertBox.append(ask);
    alertBox.dataset.code = e.code;
    // The same facts as the box shown at page load, but current: show one of them.
    const onLoad = $('#witness-problems');
    if (onLoad) onLoad.hidden = true;
    return;
  }
  showAlert(zh, en);
  alertBox.dataset.code = e.code || '';
}

function notice(zh, en, kind = 'info') {
  noticeBox.replaceChildren(el('p', {}, bi(zh, en)));
  noticeBox.dataset.kind = kind;
  noticeBox.hidden = false;
}

function clearNotice() {
  noticeBox.hidden = true;
  noticeBox.replaceChildren();
}

// ── rendering ────────────────────────────────────────────────────────────────────────
function setConn(mode) {
  const conn = $('#conn');
  conn.dataset.conn = mode;
  const text = {
    up: ['已连接', 'Connected'],
    connecting: ['正在连接…', 'Connecting…'],
    down: ['网络中断，正在重连…', 'Connection lost, reconnecting…'],
    signed_out: ['登录已失效', 'Signed out'],
  }[mode];
  $('#conn-text').replaceChildren(bi(...text));
}

function render() {
  desk.dataset.state = state;
  $('#state-label').replaceChildren(bi(...(STATES[state] || [state, state])));
  $('#state-help').replaceChildren(bi(...(HELP[state] || ['', ''])));
  $('#queue-length').textContent = queueLength === null ? '–' : String(queueLength);

  const canReady = state === 'not_ready' || state === 'wrap_up';
  const canPause = state === 'ready';
  toggle.dataset.action = canPause ? 'not_ready' : 'ready';
  toggle.replaceChildren(canPause ? bi('暂停接单', 'Not ready') : bi('开始接单', 'Ready'));
  toggle.disabled = togglePending || !(canReady || canPause);
  toggle.setAttribute('aria-pressed', String(canPause));

  const busyWithCase = Boolean(offer || session);
  $('#work-offer').hidden = !offer;
  $('#work-session').hidden = !session;
  $('#work-idle').hidden = busyWithCase;
  if (!busyWithCase) {
    const [zh, en] = IDLE[state] || IDLE.offline;
    const idle = $('#idle-text');
    idle.replaceChildren(bi(zh, en));
    if (state === 'ready' && queueLength !== null) {
      idle.append(el('span', { className: 'idle-sub' },
        bi(`当前排队 ${queueLength} 人`, `${queueLength} waiting`)));
    }
  }
}

function caseRows(app) {
  const a = app || {};
  const doc = DOC_TYPES[a.document_type];
  const risk = RISK[a.risk_level];
  const rows = [
    ['姓名', 'Name', a.name || '—', 'name'],
    ['证件类型', 'Document', doc ? bi(...doc) : (a.document_type || '—'), 'document_type'],
    ['证件号码', 'ID number', a.id_number_masked || '—', 'id_number'],
    ['风险等级', 'Risk level', a.risk_level ? bi(`${a.risk_level}${risk ? ` ${risk[0]}` : ''}`,
      `${a.risk_level}${risk ? ` ${risk[1]}` : ''}`) : '—', 'risk_level'],
  ];
  return rows.flatMap(([zh, en, value, key]) => [
    el('dt', {}, bi(zh, en)),
    el('dd', { dataset: { field: key } }, value),
  ]);
}

// ── offers ──────────────────────────────────────────────────────────────────────────
const baseTitle = document.title;
let audio = null;

/** Audio may start only after a user gesture: the Ready click primes it. */
function primeAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === 'suspended') audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
}

/** Two short tones: an offer arrived (the desk may not be in view). */
function chime() {
  if (!audio || audio.state !== 'running') return;
  const now = audio.currentTime;
  for (const [delay, freq] of [[0, 880], [0.2, 1320]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, now + delay);
    gain.gain.exponentialRampToValueAtTime(0.15, now + delay + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + delay + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start(now + delay);
    osc.stop(now + delay + 0.3);
  }
}

function showOffer(message) {
  clearOffer();
  clearNotice();
  const total = Math.max(1, Number(message.expires_in) || 20);
  offer = {
    id: message.offer_id,
    total,
    deadline: Date.now() + total * 1000,
    application: message.application || {},
    timer: null,
  };
  $('#offer-summary').replaceChildren(...caseRows(offer.application));
  acceptBtn.disabled = false;
  declineBtn.disabled = false;
  $('#work-offer').classList.remove('is-expired');
  tick();
  offer.timer = setInterval(tick, 250);
  document.title = `【新的见证请求 New request】${baseTitle}`;
  render();
  acceptBtn.focus();
  chime();
}

function tick() {
  if (!offer) return;
  const leftMs = offer.deadline - Date.now();
  const left = Math.max(0, Math.ceil(leftMs / 1000));
  $('#offer-seconds').textContent = String(left);
  const bar = $('#offer-progress');
  bar.value = Math.max(0, (leftMs / (offer.total * 1000)) * 100);
  if (leftMs <= 0) {
    acceptBtn.disabled = true;
    declineBtn.disabled = true;
    $('#work-offer').classList.add('is-expired');
  }
  if (leftMs <= -OFFER_GRACE_MS) {
    // offer_closed never came (connection trouble): the offer has surely gone.
    clearOffer();
    render();
  }
}

function clearOffer() {
  if (offer) clearInterval(offer.timer);
  offer = null;
  document.title = baseTitle;
}

function closeOffer(message) {
  if (!offer || offer.id !== message.offer_id) return;
  clearOffer();
  if (message.reason === 'timeout') {
    notice('该见证请求超时未接受，已转给其他见证人员；系统已将您设为暂停接单。回到座位后请点击“开始接单”。',
      'The request was not accepted in time and went to another witness; you were set to not ready. Click Ready when you are back at your desk.',
      'warn');
  } else if (message.reason === 'declined') {
    notice('您已拒绝该请求，投资者将分配给其他见证人员；您已被设为暂停接单。',
      'You declined the request; the investor goes to another witness. You were set to not ready.');
  } else {
    notice('该见证请求已撤回。', 'The request was withdrawn.');
  }
  render();
}

// ── the session ─────────────────────────────────────────────────────────────────────
function setPhase(phase) {
  if (!session) return;
  session.phase = phase;
  const status = $('#session-status');
  status.dataset.phase = phase;
  status.replaceChildren(bi(...SESSION_PHASE[phase]));
}

function openSession(message) {
  closeSessionSocket();
  clearOffer();
  clearNotice();
  clearAlert();
  session = { id: message.session_id, phase: 'connecting', call: null };
  $('#session-summary').replaceChildren(...caseRows(lastCase));
  $('#still-list').replaceChildren();
  $('#id-full').textContent = '';
  $('#face-score').textContent = '';
  renderDocs(message.session_id);
  renderScript(null);
  endBtn.disabled = false;
  setPhase('connecting');
  render();
  const path = `/ws/session/${encodeURIComponent(message.session_id)}?token=${encodeURIComponent(message.token)}`;
  const id = message.session_id;
  const current = session;
  startCallIn($('#work-session .call'), nodeWs(message.node_url, path), {
    onPhase(phase) {
      if (session !== current) return;
      if (phase in SESSION_PHASE) setPhase(phase);
    },
    onEnded(reason) {
      if (session && session.id === id) sessionOver(reason);
    },
    onError(error) {
      showError(error);
    },
    onMessage(data) {
      if (data.type === 'still') addStill(data);
      else if (data.type === 'script_state') renderScript(data);
      else if (data.type === 'id_number') $('#id-full').textContent = data.value;
      else if (data.type === 'face_score') showFaceScore(data);
    },
  }).then((call) => {
    if (session === current) current.call = call;
    else call.stop();
  }).catch(() => {
    // The camera could not be opened: the call box says why. The witness can end the
    // session; the investor goes back to the head of the queue.
  });
  endBtn.focus();
}

function sessionPath(rest) {
  return `/staff/witness/sessions/${encodeURIComponent(session.id)}/${rest}`;
}

function figure(src, zh, en) {
  const fig = document.createElement('figure');
  const img = document.createElement('img');
  img.src = src;
  img.alt = `${zh} ${en}`;
  img.loading = 'lazy';
  const cap = document.createElement('figcaption');
  cap.textContent = `${zh} ${en}`;
  fig.append(img, cap);
  return fig;
}

/** The ID images and the intake photo beside the live video (A17.3). */
function renderDocs() {
  $('#docs').replaceChildren(
    figure(sessionPath('documents/id_front'), '证件人像面', 'ID front'),
    figure(sessionPath('documents/id_back'), '证件国徽面', 'ID back'),
    figure(sessionPath('documents/frontal_photo'), '开户照片', 'Intake photo'),
  );
  for (const radio of document.querySelectorAll('#face-judge input')) radio.checked = false;
}

/** The similarity aid: advice only, the witness judges (A17.3). */
function showFaceScore(score) {
  const d = score.distances || {};
  const part = (v) => (v === null || v === undefined ? '未检出人脸 no face' : v.toFixed(2));
  $('#face-score').textContent = `比对参考 Aid: 证件照 ID ${part(d.id_front)} · 开户照 intake ${part(d.frontal_photo)}`
    + ` — ${score.likely_same ? '距离小于' : '距离不小于'} ${score.threshold}`
    + ` ${score.likely_same ? '可能为同一人 likely the same person' : '请仔细核对 check carefully'}（仅供参考 advice only）`;
}

function addStill(still) {
  const item = document.createElement('li');
  const seconds = Math.round((still.offset_ms || 0) / 1000);
  const label = `${still.kind === 'auto' ? '自动' : '手动'} ${seconds}s`;
  item.append(figure(sessionPath(`stills/${encodeURIComponent(still.id)}`), label, ''));
  $('#still-list').append(item);
}

// ── the script (A12, A17.4) ───────────────────────────────────────────────────────────
const MARK_LABEL = { clear: '清楚 clear', unclear: '不清楚 unclear', refused: '拒绝 refused' };
const PROBLEM_TEXT = {
  disclosure_not_done: '尚未完成身份告知 Disclosure not done',
  face_not_matched: '人像比对未确认一致 Face not confirmed as matching',
};
let script = null;

function renderScript(state) {
  script = state;
  const list = $('#script-steps');
  list.replaceChildren();
  const shown = Boolean(state && state.disclosure_shown);
  const confirmed = Boolean(state && state.disclosure_confirmed);
  $('#disclosure-confirm').disabled = !shown || confirmed;
  $('#disclosure-state').textContent = confirmed ? '✓ 已宣读 read out' : shown ? '已展示 shown' : '';
  $('#script-version').textContent = state ? `v ${state.script_version}` : '';
  if (!state) {
    $('#step-next').disabled = true;
    for (const b of document.querySelectorAll('.marks [data-mark]')) b.disabled = true;
    $('#verdict-pass').disabled = true;
    $('#pass-problems').replaceChildren();
    session?.call?.showPrompt?.(null);
    return;
  }
  state.steps.forEach((step, i) => {
    const li = document.createElement('li');
    li.classList.toggle('is-current', state.current === i);
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = step.speaker === 'investor' ? '投资者朗读' : '提问';
    const text = document.createElement('span');
    text.textContent = step.text_zh;
    li.append(who, text);
    if (state.marks[i]) {
      const mark = document.createElement('span');
      mark.className = 'mark';
      mark.dataset.mark = state.marks[i];
      mark.textContent = MARK_LABEL[state.marks[i]] + (state.notes[i] ? ` · ${state.notes[i]}` : '');
      li.append(mark);
    }
    list.append(li);
  });
  const cur = state.current;
  const curStep = cur === null ? null : state.steps[cur];
  const next = cur === null ? 0 : cur + 1;
  const blocked = curStep && curStep.expects_answer && !state.marks[cur];
  $('#step-next').disabled = !confirmed || next >= state.steps.length || Boolean(blocked);
  for (const b of document.querySelectorAll('.marks [data-mark]')) {
    b.disabled = !curStep || !curStep.expects_answer;
  }
  session?.call?.showPrompt?.(curStep);
  for (const radio of document.querySelectorAll('#face-judge input')) {
    radio.checked = radio.value === state.face;
  }
  $('#verdict-fail').disabled = false;
  const problems = state.pass_problems || [];
  $('#verdict-pass').disabled = problems.length > 0;
  $('#pass-problems').replaceChildren(...problems.map((p) => {
    const li = document.createElement('li');
    const [kind, step] = p.split(':');
    const index = state.steps.findIndex((s) => s.id === step);
    li.textContent = PROBLEM_TEXT[p]
      || (kind === 'step_not_taken' ? `第 ${index + 1} 步未进行 Step ${index + 1} not taken`
        : `第 ${index + 1} 步回答未确认清楚 Step ${index + 1} not answered clearly`);
    return li;
  }));
}

function act(message) {
  // Never drop an action silently: during a reconnect the witness is told to retry.
  if (!session || !session.call || !session.call.send(message)) {
    showError({ message: 'Not connected; try again in a moment.', message_zh: '连接中断，请稍后重试。' });
    return false;
  }
  return true;
}

$('#disclosure-show').addEventListener('click', () => act({ type: 'disclosure_show' }));
$('#disclosure-confirm').addEventListener('click', () => act({ type: 'disclosure_confirm' }));
$('#step-next').addEventListener('click', () => {
  if (!script) return;
  $('#step-note').value = '';
  act({ type: 'step_start', index: script.current === null ? 0 : script.current + 1 });
});
for (const button of document.querySelectorAll('.marks [data-mark]')) {
  button.addEventListener('click', () => {
    if (!script || script.current === null) return;
    act({ type: 'step_mark', index: script.current, mark: button.dataset.mark, note: $('#step-note').value });
  });
}
for (const radio of document.querySelectorAll('#face-judge input')) {
  radio.addEventListener('change', () => act({ type: 'face_judge', judgement: radio.value }));
}
$('#unmask-id').addEventListener('click', () => act({ type: 'unmask_id' }));
$('#verdict-pass').addEventListener('click', (event) => {
  // One verdict: the button stays disabled until the server answers (or the session ends).
  if (act({ type: 'verdict', result: 'pass' })) event.currentTarget.disabled = true;
});
$('#verdict-fail').addEventListener('click', () => {
  const reason = $('#fail-reason').value;
  if (!reason) {
    showError({ message: 'Choose a reason.', message_zh: '请选择不通过原因。' });
    $('#fail-reason').focus();
    return;
  }
  const button = $('#verdict-fail');
  if (act({ type: 'verdict', result: 'fail', reason_code: reason, notes: $('#fail-notes').value })) {
    button.disabled = true;
    setTimeout(() => { button.disabled = false; }, 5000); // re-enabled if refused (e.g. no notes)
  }
});

$('#still-capture').addEventListener('click', () => {
  if (session && session.call) session.call.send({ type: 'capture_still' });
});

function closeSessionSocket() {
  const call = session && session.call;
  if (session) session.call = null;
  if (call) call.stop();
}

function sessionOver(reason) {
  if (!session) return;
  closeSessionSocket();
  session = null;
  lastCase = null;
  const [zh, en] = SESSION_OVER[reason] || ['会话已结束。', 'The session is over.'];
  notice(zh, en, ['ended_by_witness', 'pass', 'fail'].includes(reason) ? 'info' : 'warn');
  render();
  toggle.focus();
}

// ── the desk socket ─────────────────────────────────────────────────────────────────
function startPings() {
  clearInterval(pingTimer);
  pingTimer = setInterval(() => {
    socket.send({ type: 'ping' });
  }, heartbeat * 1000);
}

function onMessage(data) {
  switch (data.type) {
    case 'hello':
      heartbeat = Math.max(1, Number(data.heartbeat_seconds) || DEFAULT_HEARTBEAT);
      startPings();
      break;
    case 'state':
      state = data.state in STATES ? data.state : 'offline';
      if (typeof data.queue_length === 'number') queueLength = data.queue_length;
      togglePending = false;
      // A session whose socket is gone ends when the desk is no longer busy.
      if (session && session.call && session.call.ended && state !== 'busy') sessionOver(null);
      render();
      break;
    case 'offer':
      showOffer(data);
      break;
    case 'offer_closed':
      closeOffer(data);
      break;
    case 'matched':
      lastCase = offer ? offer.application : lastCase;
      openSession(data);
      break;
    case 'peer_left':
      if (session && session.id === data.session_id) sessionOver(data.reason);
      break;
    case 'session_ended':
      if (session && session.id === data.session_id) sessionOver(data.result);
      break;
    case 'error':
      togglePending = false;
      if (offer && data.error && data.error.code === 'offer_gone') {
        clearOffer();
      }
      showError(data.error);
      render();
      break;
    default:
      break;
  }
}

async function stillSignedIn() {
  try {
    const response = await fetch('/staff/witness', {
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
      redirect: 'manual',
      cache: 'no-store',
    });
    return !(response.status === 401 || response.status === 403 || response.type === 'opaqueredirect');
  } catch {
    return true; // the network, not the login
  }
}

const socket = new LiveSocket(sameOriginWs('/ws/witness'), {
  onMessage,
  onUp: () => {
    setConn('up');
  },
  onDown: () => {
    setConn('down');
    state = 'offline';
    togglePending = false;
    if (offer) {
      // A closed desk socket withdraws the offer (the investor keeps their place).
      clearOffer();
      notice('连接中断，待接受的请求已撤回。', 'The connection dropped; the pending request was withdrawn.', 'warn');
    }
    render();
  },
  onRetry: async (attempt) => {
    setConn('down');
    if (attempt >= 2 && !(await stillSignedIn())) {
      socket.stop();
      setConn('signed_out');
      const link = el('a', { href: '/staff/login?next=/staff/witness' }, bi('重新登录', 'Log in again'));
      showAlert('登录已失效，请重新登录。', 'Your login has ended; please log in again.', el('p', {}, link));
    }
  },
});

// ── controls ────────────────────────────────────────────────────────────────────────
toggle.addEventListener('click', () => {
  const action = toggle.dataset.action;
  if (action === 'ready') primeAudio();
  clearAlert();
  clearNotice();
  if (socket.send({ type: action })) {
    togglePending = true;
    render();
  }
});

acceptBtn.addEventListener('click', () => {
  if (!offer) return;
  acceptBtn.disabled = true;
  declineBtn.disabled = true;
  socket.send({ type: 'accept', offer_id: offer.id });
});

declineBtn.addEventListener('click', () => {
  if (!offer) return;
  acceptBtn.disabled = true;
  declineBtn.disabled = true;
  socket.send({ type: 'decline', offer_id: offer.id });
});

endBtn.addEventListener('click', () => {
  if (!session) return;
  endBtn.disabled = true;
  if (!socket.send({ type: 'end', session_id: session.id })) endBtn.disabled = false;
});

document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  // Timers may have been throttled while hidden: prove presence now.
  socket.nudge();
  socket.send({ type: 'ping' });
});
window.addEventListener('online', () => socket.nudge());

setConn('connecting');
render();
socket.start();
startPings();
