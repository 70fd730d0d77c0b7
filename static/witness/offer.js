// An offer on the desk (A7): the case, a countdown, accept or decline. The server
// decides when it closes (offer_closed); the countdown only shows the time left.

import { $ } from '../js/dom.js';
import { caseRows } from './text.js';

const DEFAULT_OFFER_SECONDS = 20; // if the offer does not say
const OFFER_GRACE_MS = 5000; // after the countdown, wait this long for offer_closed
const TICK_MS = 250;

/** The offer chime. Audio may start only after a user gesture: the Ready click primes it. */
function createChime() {
  let audio = null;
  return {
    prime() {
      try {
        audio = audio || new AudioContext();
        if (audio.state === 'suspended') audio.resume().catch(() => {});
      } catch {
        audio = null;
      }
    },
    /** Two short tones: an offer arrived (the desk may not be in view). */
    play() {
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
    },
  };
}

/**
 * @param {{ messages: ReturnType<import('./messages.js').createMessages>,
 *           send: (message: object) => boolean, onChange: () => void }} deps
 */
export function createOffers({ messages, send, onChange }) {
  const box = $('#work-offer');
  const acceptBtn = $('#offer-accept');
  const declineBtn = $('#offer-decline');
  const baseTitle = document.title;
  const chime = createChime();
  let offer = null; // { id, deadline, total, application, timer }

  function clear() {
    if (offer) clearInterval(offer.timer);
    offer = null;
    document.title = baseTitle;
  }

  function tick() {
    if (!offer) return;
    const leftMs = offer.deadline - Date.now();
    $('#offer-seconds').textContent = String(Math.max(0, Math.ceil(leftMs / 1000)));
    $('#offer-progress').value = Math.max(0, (leftMs / (offer.total * 1000)) * 100);
    if (leftMs <= 0) {
      acceptBtn.disabled = true;
      declineBtn.disabled = true;
      box.classList.add('is-expired');
    }
    if (leftMs <= -OFFER_GRACE_MS) {
      // offer_closed never came (connection trouble): the offer has surely gone.
      clear();
      onChange();
    }
  }

  function show(message) {
    clear();
    messages.clearNotice();
    const total = Math.max(1, Number(message.expires_in) || DEFAULT_OFFER_SECONDS);
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
    box.classList.remove('is-expired');
    tick();
    offer.timer = setInterval(tick, TICK_MS);
    document.title = `【新的见证请求 New request】${baseTitle}`;
    onChange();
    acceptBtn.focus();
    chime.play();
  }

  /** offer_closed: timed out, declined, or withdrawn. */
  function close(message) {
    if (!offer || offer.id !== message.offer_id) return;
    clear();
    if (message.reason === 'timeout') {
      messages.notice('该见证请求超时未接受，已转给其他见证人员；系统已将您设为暂停接单。回到座位后请点击“开始接单”。',
        'The request was not accepted in time and went to another witness; you were set to not ready. Click Ready when you are back at your desk.',
        'warn');
    } else if (message.reason === 'declined') {
      messages.notice('您已拒绝该请求，投资者将分配给其他见证人员；您已被设为暂停接单。',
        'You declined the request; the investor goes to another witness. You were set to not ready.');
    } else {
      messages.notice('该见证请求已撤回。', 'The request was withdrawn.');
    }
    onChange();
  }

  /** The desk socket closed: that withdraws the offer (the investor keeps their place). */
  function withdrawn() {
    if (!offer) return;
    clear();
    messages.notice('连接中断，待接受的请求已撤回。', 'The connection dropped; the pending request was withdrawn.', 'warn');
  }

  function answer(type) {
    if (!offer) return;
    acceptBtn.disabled = true;
    declineBtn.disabled = true;
    send({ type, offer_id: offer.id });
  }
  acceptBtn.addEventListener('click', () => answer('accept'));
  declineBtn.addEventListener('click', () => answer('decline'));

  return {
    show,
    close,
    clear,
    withdrawn,
    primeChime: chime.prime,
    /** The offer on the desk, or null. */
    current: () => offer,
  };
}
