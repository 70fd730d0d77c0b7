// The witness queue and the session hand-off (A7, A17.3).
//
// /ws/investor pushes the place in the queue; the page must ping every heartbeat_seconds
// or the place is given up after the server's grace period (docs/pairing.md). When a
// witness accepts, "matched" carries a token for /ws/session/<id> on the node holding the
// session; static/js/call.js then runs the video call through that node.

import { $ } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { startCallIn } from '../js/call.js';
import { LiveSocket } from '../js/socket.js';
import { isService, serviceBox, showService } from './service.js';
import { busy, clearAlert, showAlert } from './ui.js';

const DEFAULT_HEARTBEAT = 10; // seconds, until the server's first message says otherwise

function wsBase(origin) {
  return origin.replace(/^http/, 'ws');
}


/** Minutes for people; null when the server cannot estimate yet. */
function waitText(seconds) {
  if (seconds === null || seconds === undefined) {
    return bi('暂时无法估计', 'Cannot be estimated yet');
  }
  if (seconds < 60) return bi('不到 1 分钟', 'Under a minute');
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return bi(`约 ${minutes} 分钟`, `About ${minutes} min`);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return bi(`约 ${h} 小时${m ? ` ${m} 分钟` : ''}`, `About ${h} h${m ? ` ${m} min` : ''}`);
}

const SESSION_TEXT = {
  connecting: ['见证人员已接入，正在连接…', 'A witness has joined, connecting…'],
  joined: ['已连接，等待见证人员…', 'Connected, waiting for the witness…'],
  live: ['已与见证人员建立连接', 'Connected to your witness'],
  reconnecting: ['网络中断，正在重新连接…请勿关闭页面', 'Connection lost, reconnecting… keep this page open'],
  away: ['见证人员网络中断，请稍候…', 'The witness lost their connection; please wait…'],
};
// A holder's service after the call (or the online confirmation): where it stands.
const SERVICE_PROGRESS = {
  witnessed: ['视频见证已完成，正在复核', 'Witnessing complete; your request is being reviewed'],
  in_review: ['正在复核', 'Your request is being reviewed'],
  approved: ['复核已通过，等待回访或办理', 'Approved; awaiting our callback or the account system'],
  callback_confirmed: ['回访已确认，正在办理', 'Callback confirmed; your request is being carried out'],
};
const SERVICE_PROGRESS_TEXT = {
  zh: '我们会在办理完成后以短信通知您，届时可在本页查看结果。',
  en: 'We will send you a text message when it is done; the result then shows on this page.',
};
const SERVICE_PASSED = ['witnessed', 'in_review', 'approved', 'callback_confirmed', 'completed',
  'service_refused'];
const BACK_AT_FRONT = {
  zh: '连接中断，您已回到队列最前。请保持本页面打开，稍后将再次为您连线。',
  en: 'The connection dropped; you are back at the front of the queue. Keep this page open: you will be connected again shortly.',
};

export function setupQueue(ctx) {
  const waiting = $('#queue-waiting');
  const sessionPanel = $('#queue-session');
  const conn = $('#queue-conn');
  const alertBox = $('#queue-alert');
  const leaveBtn = $('#queue-leave');
  const confirmBox = $('#queue-leave-confirm');
  const sessionStatus = $('#session-status');

  let active = false;
  let queueSocket = null;
  let session = null; // { id, phase }
  let heartbeat = DEFAULT_HEARTBEAT;
  let pingTimer = null;
  let shown = {}; // last rendered values, so screen readers hear only changes
  let checking = false;

  /** Replace a node's content only when its value changed (live regions stay quiet). */
  function setText(node, key, signature, make) {
    if (shown[key] === signature) return;
    shown[key] = signature;
    node.replaceChildren(make());
  }

  function renderStatus(status) {
    const position = status.position ?? null;
    const ahead = position ? position - 1 : null;
    const wait = status.estimated_wait_seconds ?? null;
    setText($('#queue-position'), 'position', position, () => String(position ?? '–'));
    setText($('#queue-ahead'), 'ahead', ahead, () => (ahead === null ? '–'
      : bi(`${ahead} 人`, ahead === 1 ? '1 person' : `${ahead} people`)));
    // Minutes only: a wait re-estimated every few seconds should not flicker.
    const bucket = wait === null ? null : wait < 60 ? 0 : Math.ceil(wait / 60);
    setText($('#queue-wait'), 'wait', bucket, () => waitText(wait));
  }

  function showPanel(which) {
    waiting.hidden = which !== 'waiting';
    sessionPanel.hidden = which !== 'session';
    $('#queue-done').hidden = which !== 'done';
  }

  /** Once opened (A9): the numbers and the confirmation PDF. */
  async function showAccount() {
    let account;
    try {
      account = await ctx.api.get('/application/account');
    } catch {
      return; // not opened yet
    }
    $('#acct-unified').textContent = account.unified_account_number;
    const names = { sh: ['沪市证券账户', 'Shanghai account'], sz: ['深市证券账户', 'Shenzhen account'] };
    $('#acct-subs').replaceChildren(...Object.entries(account.sub_accounts || {}).map(([k, v]) => {
      const line = document.createElement('span');
      line.append(bi(...(names[k] || [k, k])), ` ${v} `);
      return line;
    }));
    $('#acct-blocked').hidden = account.status !== 'blocked';
    $('#done-pass').hidden = true;
    $('#done-account').hidden = false;
  }

  /** A holder's service once past the call: in progress, or the outcome per account. */
  function showServiceDone(app) {
    const state = app.state;
    const done = state === 'completed';
    const refused = state === 'service_refused';
    const partly = done && (app.service.outcomes || []).some((o) => o.status !== 'done');
    const panel = $('#done-service');
    panel.dataset.state = state;
    panel.classList.toggle('is-ok', done && !partly);
    panel.classList.toggle('is-fail', refused);
    const icon = $('#service-icon');
    icon.classList.toggle('tick', done && !partly);
    icon.textContent = refused || partly ? '!' : '';
    icon.hidden = !done && !refused;
    let title;
    let text;
    if (done) {
      title = partly ? ['业务已部分办理', 'Your request was carried out in part']
        : ['业务已办理完成', 'Your request has been carried out'];
      text = partly ? ['以下为各账户的办理结果；未办理的账户请按提示处理后重新申请。',
        'The result for each account is below; for an account not done, follow the advice and apply again.']
        : ['办理结果如下，我们已向您发送通知。', 'The result is below; we have sent you a notice.'];
    } else if (refused) {
      title = ['账户系统未能办理您的业务', 'The account system could not carry out your request'];
      text = ['以下为各账户未能办理的原因。请按提示处理后重新申请，如有疑问请致电客服热线。',
        'Below is the reason for each account. Deal with it and apply again; questions? Call our hotline.'];
    } else {
      title = SERVICE_PROGRESS[state] || ['业务正在办理', 'Your request is being carried out'];
      text = [SERVICE_PROGRESS_TEXT.zh, SERVICE_PROGRESS_TEXT.en];
    }
    $('#service-title').replaceChildren(bi(...title));
    $('#service-text').replaceChildren(bi(...text));
    $('#service-result').replaceChildren(serviceBox(app, { withOutcomes: done || refused }));
    $('#service-pdf').hidden = !done;
    panel.hidden = false;
  }

  /** The witness reached a verdict: the call is over for good. */
  function showDone(result) {
    stop();
    active = false;
    showPanel('done');
    const service = isService(ctx.app);
    $('#done-pass').hidden = result !== 'pass' || service;
    $('#done-fail').hidden = result === 'pass';
    $('#done-account').hidden = true;
    $('#done-service').hidden = true;
    if (result === 'pass' && service) {
      showServiceDone({ ...ctx.app, state: SERVICE_PASSED.includes(ctx.app.state) ? ctx.app.state : 'witnessed' });
      // The verdict arrived over the socket: the application says where things stand now.
      ctx.api.get('/application').then((body) => {
        ctx.setApp(body.application);
        if (isService(body.application) && SERVICE_PASSED.includes(body.application.state)) {
          showServiceDone(body.application);
        }
      }).catch(() => {});
    } else if (result === 'pass') showAccount();
    leaveBtn.hidden = true;
    confirmBox.hidden = true;
    $('#h-queue').focus();
  }

  function setConnDown(down) {
    conn.hidden = !down;
    waiting.classList.toggle('is-stale', down);
  }

  function startPings() {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      queueSocket?.send({ type: 'ping' });
    }, heartbeat * 1000);
  }

  // ── the session socket ───────────────────────────────────────────────────────────
  function setPhase(phase) {
    if (!session) return;
    session.phase = phase;
    sessionStatus.dataset.phase = phase;
    sessionStatus.replaceChildren(bi(...SESSION_TEXT[phase]));
  }

  function sessionUrl(nodeUrl, id, token) {
    const origin = nodeUrl ? nodeUrl.replace(/\/+$/, '') : location.origin;
    return `${wsBase(origin)}/ws/session/${encodeURIComponent(id)}?token=${encodeURIComponent(token)}`;
  }

  function openSession(message) {
    if (session && session.id === message.session_id) return; // re-sent after a reconnect
    closeSession();
    clearAlert(alertBox);
    confirmBox.hidden = true;
    const current = { id: message.session_id, phase: 'connecting', call: null };
    session = current;
    setPhase('connecting');
    showPanel('session');
    const url = sessionUrl(message.node_url, message.session_id, message.token);
    startCallIn($('#queue-session .call'), url, {
      onPhase(phase) {
        if (session !== current) return;
        if (phase === 'waiting') setPhase('joined');
        else if (phase in SESSION_TEXT) setPhase(phase);
      },
      onEnded(reason) {
        if (session !== current) return;
        if (reason === 'pass' || reason === 'fail') {
          showDone(reason);
          return;
        }
        // Ended while we were away (e.g. a verdict during a reconnect): the application
        // says where things stand; otherwise we are back in the queue.
        ctx.api.get('/application').then((body) => {
          const state = body.application.state;
          if (state === 'witnessed' || state === 'witness_failed') {
            showDone(state === 'witnessed' ? 'pass' : 'fail');
          } else if (session === current) {
            sessionEnded({ requeued: true });
          }
        }).catch(() => {
          if (session === current) sessionEnded({ requeued: true });
        });
      },
      onError(error) {
        showAlert(alertBox, errorOf({ error }));
      },
      onMessage(data) {
        if (data.type === 'prompt') showPromptStep(data);
      },
    }).then((call) => {
      if (session === current) current.call = call;
      else call.stop();
    }).catch(() => {
      // No camera: the call box says why and how to fix it. The witness sees no video
      // and can end the session; the investor then returns to the head of the queue.
    });
  }

  /** The step number on the prompt band (call.js fills the rest), and the band in view. */
  function showPromptStep(data) {
    const n = Number.isInteger(data.index) ? data.index + 1 : null;
    $('#queue-session [data-call="prompt-step"]').textContent = n && data.step ? `第 ${n} 步 · Step ${n}` : '';
    if (data.step) requestAnimationFrame(promptInView);
  }

  /** The statement to read stays in view, also when the window changes (a phone's toolbar
   * hiding, a rotation). */
  function promptInView() {
    const band = $('#queue-session [data-call="prompt"]');
    if (!session || band.hidden) return;
    // The picture at the top of the screen, the band under it (both fit: investor.css).
    const call = $('#queue-session .call');
    const bottom = band.getBoundingClientRect().bottom;
    if (call.getBoundingClientRect().top < 0 || bottom > window.innerHeight) call.scrollIntoView({ block: 'start' });
  }
  window.addEventListener('resize', () => requestAnimationFrame(promptInView));

  function closeSession() {
    const call = session && session.call;
    if (session) session.call = null;
    if (call) call.stop();
  }

  /** The session is over (either socket may say so first); idempotent. */
  function sessionEnded({ requeued }) {
    const had = session !== null;
    closeSession();
    session = null;
    showPanel('waiting');
    if (requeued && (had || alertBox.hidden)) {
      showAlert(alertBox, BACK_AT_FRONT, { kind: 'info' });
      if (had) $('#h-queue').focus();
    }
  }

  function errorOf(data) {
    const e = data.error || {};
    return { zh: e.message_zh || e.message || '出现错误，请稍后重试。', en: e.message || e.code || 'Something went wrong.' };
  }

  // ── the queue socket ─────────────────────────────────────────────────────────────
  async function checkStillQueued() {
    // Told we are not in the queue: the application says whether we were dropped
    // (grace period passed, left in another tab) or are about to be matched.
    if (checking) return;
    checking = true;
    try {
      const body = await ctx.api.get('/application');
      if (!active) return;
      ctx.setApp(body.application);
      if (!['queued', 'witnessing'].includes(body.application.state)) {
        stop();
        await ctx.resume(body.application);
        ctx.notify('您已不在排队中，可重新加入见证排队。', 'You are no longer in the queue; you can join it again.');
      }
    } catch {
      // Network trouble: the socket's reconnect will ask again.
    } finally {
      checking = false;
    }
  }

  function onQueueMessage(data) {
    if (!active) return;
    if (data.heartbeat_seconds && data.heartbeat_seconds !== heartbeat) {
      heartbeat = Math.max(1, Number(data.heartbeat_seconds) || DEFAULT_HEARTBEAT);
      startPings();
    }
    switch (data.type) {
      case 'queue':
        if (data.queued) {
          renderStatus(data);
        } else if (!session) {
          checkStillQueued();
        }
        break;
      case 'matched':
        openSession(data);
        break;
      case 'session_ended':
        showDone(data.result);
        break;
      case 'peer_left':
        if (data.requeued) {
          sessionEnded({ requeued: true });
        } else {
          // Not put back in the queue: the application moved on; it says where.
          session = null;
          closeSession();
          showPanel('waiting');
          checkStillQueued();
        }
        break;
      case 'error':
        showAlert(alertBox, errorOf(data));
        break;
      default:
        break;
    }
  }

  function start() {
    stop();
    active = true;
    shown = {};
    heartbeat = DEFAULT_HEARTBEAT;
    setConnDown(false);
    queueSocket = new LiveSocket(`${wsBase(location.origin)}/ws/investor`, {
      onMessage: onQueueMessage,
      onUp: () => {
        setConnDown(false);
        queueSocket.send({ type: 'ping' });
      },
      onDown: () => setConnDown(true),
      onRetry: (attempt) => {
        setConnDown(true);
        // A refused upgrade looks like a network error: ask the API whether we are
        // still signed in (a 401 takes the page back to the phone step).
        if (attempt >= 2) checkStillQueued();
      },
    });
    queueSocket.start();
    startPings();
  }

  function stop() {
    active = false;
    clearInterval(pingTimer);
    pingTimer = null;
    closeSession();
    session = null;
    queueSocket?.stop();
    queueSocket = null;
  }

  async function leave() {
    clearAlert(alertBox);
    try {
      await ctx.api.del('/application/queue');
    } catch (err) {
      showAlert(alertBox, err);
      return;
    }
    stop();
    try {
      const body = await ctx.api.get('/application');
      await ctx.resume(body.application);
    } catch (err) {
      await ctx.go('check');
      if (err.status !== 401) showAlert($('#global-alert'), err);
      return;
    }
    ctx.notify('您已离开排队。需要时可重新加入。', 'You have left the queue. You can join again at any time.');
  }

  leaveBtn.addEventListener('click', () => {
    confirmBox.hidden = false;
    leaveBtn.hidden = true;
    $('#queue-stay').focus();
  });
  $('#queue-stay').addEventListener('click', () => {
    confirmBox.hidden = true;
    leaveBtn.hidden = false;
    leaveBtn.focus();
  });
  $('#queue-leave-yes').addEventListener('click', (event) => busy(event.currentTarget, leave));

  document.addEventListener('visibilitychange', () => {
    if (!active || document.hidden) return;
    // Timers may have been throttled while hidden: prove presence now.
    queueSocket?.nudge();
    queueSocket?.send({ type: 'ping' });
  });
  window.addEventListener('online', () => queueSocket?.nudge());

  return {
    /** opts.status: the POST /queue answer, shown before the socket's first message. */
    async enter(opts = {}) {
      clearAlert(alertBox);
      const PASSED = ['witnessed', 'in_review', 'approved', 'callback_confirmed', 'account_opened', 'active',
        'completed', 'service_refused'];
      const FAILED = ['witness_failed', 'review_rejected', 'callback_failed'];
      if (ctx.app && (PASSED.includes(ctx.app.state) || FAILED.includes(ctx.app.state))) {
        showDone(PASSED.includes(ctx.app.state) ? 'pass' : 'fail');
        return;
      }
      confirmBox.hidden = true;
      leaveBtn.hidden = false;
      showService($('#queue-service'), ctx.app);
      showPanel('waiting');
      start();
      if (opts.status && opts.status.queued) renderStatus(opts.status);
      if (opts.message) showAlert(alertBox, opts.message, { kind: 'info' });
    },
    leave() {
      stop();
    },
  };
}
