// The desk socket (/ws/witness, docs/pairing.md): presence (ready / not ready, heartbeat)
// and the status panel. One switch over the server's messages, one delegation each:
// offers to offer.js, sessions to session.js.

import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { LiveSocket, sameOriginWs } from '../js/socket.js';
import { CONN, HELP, IDLE, STATES } from './text.js';

const DEFAULT_HEARTBEAT_SECONDS = 10; // until "hello" says otherwise
const LOGIN_CHECK_AFTER_ATTEMPTS = 2; // a failing reconnect may mean the login has ended

/** Is the staff login still valid? Asked when the desk socket keeps failing. */
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

/**
 * The desk's presence. `offers` and `session` are created with this desk's send and
 * render (see main.js) and are handed in through `attach` before `start`.
 * @param {{ messages: ReturnType<import('./messages.js').createMessages> }} deps
 */
export function createDesk({ messages }) {
  const root = $('#desk');
  const toggle = $('#toggle');
  const presence = {
    state: 'offline', // a key of STATES
    queueLength: null,
    heartbeat: DEFAULT_HEARTBEAT_SECONDS,
    togglePending: false, // ready / not_ready sent, no state back yet
  };
  let offers = null;
  let session = null;
  let pingTimer = null;

  function setConn(mode) {
    $('#conn').dataset.conn = mode;
    $('#conn-text').replaceChildren(bi(...CONN[mode]));
  }

  function render() {
    const { state, queueLength } = presence;
    root.dataset.state = state;
    $('#state-label').replaceChildren(bi(...(STATES[state] || [state, state])));
    $('#state-help').replaceChildren(bi(...(HELP[state] || ['', ''])));
    $('#queue-length').textContent = queueLength === null ? '–' : String(queueLength);

    const canReady = state === 'not_ready' || state === 'wrap_up';
    const canPause = state === 'ready';
    toggle.dataset.action = canPause ? 'not_ready' : 'ready';
    toggle.replaceChildren(canPause ? bi('暂停接单', 'Not ready') : bi('开始接单', 'Ready'));
    toggle.disabled = presence.togglePending || !(canReady || canPause);
    toggle.setAttribute('aria-pressed', String(canPause));

    const hasOffer = offers.current() !== null;
    const inSession = session.active();
    $('#work-offer').hidden = !hasOffer;
    $('#work-session').hidden = !inSession;
    $('#work-idle').hidden = hasOffer || inSession;
    root.classList.toggle('in-session', inSession); // the session layout takes the page
    if (!hasOffer && !inSession) {
      const idle = $('#idle-text');
      idle.replaceChildren(bi(...(IDLE[state] || IDLE.offline)));
      if (state === 'ready' && queueLength !== null) {
        idle.append(el('span', { className: 'idle-sub' },
          bi(`当前排队 ${queueLength} 人`, `${queueLength} waiting`)));
      }
    }
  }

  function onMessage(data) {
    switch (data.type) {
      case 'hello':
        presence.heartbeat = Math.max(1, Number(data.heartbeat_seconds) || DEFAULT_HEARTBEAT_SECONDS);
        startPings();
        break;
      case 'state':
        presence.state = data.state in STATES ? data.state : 'offline';
        if (typeof data.queue_length === 'number') presence.queueLength = data.queue_length;
        presence.togglePending = false;
        // A session whose socket is gone ends when the desk is no longer busy.
        if (presence.state !== 'busy') session.overIfCallEnded();
        render();
        break;
      case 'offer':
        offers.show(data);
        break;
      case 'offer_closed':
        offers.close(data);
        break;
      case 'matched': {
        const application = offers.current()?.application;
        offers.clear();
        session.open(data, application);
        break;
      }
      case 'peer_left':
        session.overIfCurrent(data.session_id, data.reason);
        break;
      case 'session_ended':
        session.overIfCurrent(data.session_id, data.result);
        break;
      case 'error':
        presence.togglePending = false;
        if (data.error && data.error.code === 'offer_gone') offers.clear();
        messages.showError(data.error);
        render();
        break;
      default:
        break;
    }
  }

  const socket = new LiveSocket(sameOriginWs('/ws/witness'), {
    onMessage,
    onUp: () => setConn('up'),
    onDown: () => {
      setConn('down');
      presence.state = 'offline';
      presence.togglePending = false;
      offers.withdrawn();
      render();
    },
    onRetry: async (attempt) => {
      setConn('down');
      if (attempt >= LOGIN_CHECK_AFTER_ATTEMPTS && !(await stillSignedIn())) {
        socket.stop();
        setConn('signed_out');
        const link = el('a', { href: '/staff/login?next=/staff/witness' }, bi('重新登录', 'Log in again'));
        messages.showAlert('登录已失效，请重新登录。', 'Your login has ended; please log in again.', el('p', {}, link));
      }
    },
  });

  function startPings() {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => socket.send({ type: 'ping' }), presence.heartbeat * 1000);
  }

  toggle.addEventListener('click', () => {
    const action = toggle.dataset.action;
    if (action === 'ready') offers.primeChime();
    messages.clearAlert();
    messages.clearNotice();
    if (socket.send({ type: action })) {
      presence.togglePending = true;
      render();
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    // Timers may have been throttled while hidden: prove presence now.
    socket.nudge();
    socket.send({ type: 'ping' });
  });
  window.addEventListener('online', () => socket.nudge());

  return {
    render,
    send: (message) => socket.send(message),
    focusToggle: () => toggle.focus(),
    /** Hand in the offer and session parts (they need this desk's send and render). */
    attach(parts) {
      ({ offers, session } = parts);
    },
    start() {
      setConn('connecting');
      render();
      socket.start();
      startPings();
    },
  };
}
