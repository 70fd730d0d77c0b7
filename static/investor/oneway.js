// One-way video witnessing (A18): the investor records alone. The server watches the
// live picture: random movements (liveness), a comparison of the face with the ID photo,
// then a statement read aloud and checked for quality; a witness reviews the recording
// afterwards. This page only shows what the server decided; it decides nothing.
//
// GET/POST /application/one-way offer and start an attempt; /ws/oneway/<id>?token=…
// carries one WebRTC offer (sent once ICE gathering is done or has found enough, as
// static/js/call.js does) and the server's instructions and results. Closing the socket
// before the end fails the attempt (A18: each attempt is recorded live in one go); the
// investor may then start another while attempts are left. No file is ever uploaded
// (A18.5).

import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { candidateType, openLocalMedia, usefulCandidateTypes } from '../js/call.js';
import { busy, clearAlert, showAlert } from './ui.js';

const GATHER_TIMEOUT_MS = 3000;
const GATHER_SETTLE_MS = 250;

// Why an attempt ended, and what to do next (the server's oneway.done reason).
const REASONS = {
  liveness_not_performed: [
    '未能在规定时间内识别到提示的动作。',
    'The movement asked for was not seen in time.',
    '请在光线充足处正对摄像头，看到提示后再做动作，动作幅度稍大一些。',
    'Sit facing the camera in good light; make each movement after it is shown, a little more clearly.',
  ],
  liveness_wrong_movement: [
    '识别到的动作与提示不一致。',
    'A different movement was made from the one asked for.',
    '请看清每一步的提示后再做动作，完成后回到正对摄像头的姿势。',
    'Read each step before moving, and come back to face the camera after each one.',
  ],
  liveness_no_face: [
    '录制中未能持续看到您的面部。',
    'Your face was not visible throughout.',
    '请保持面部完整出现在画面中，不要遮挡，避免逆光。',
    'Keep your whole face in the picture, uncovered, with the light in front of you.',
  ],
  liveness_second_face: [
    '画面中出现了其他人。',
    'Someone else appeared in the picture.',
    '请确保录制时画面中只有您本人。',
    'Make sure you are alone in the picture while recording.',
  ],
  liveness_face_changed: [
    '录制过程中画面中的人发生了变化。',
    'The person in the picture changed during the recording.',
    '整个录制过程须由您本人完成。',
    'You yourself must do the whole recording.',
  ],
  liveness_not_frontal: [
    '未能拍到您正对摄像头的画面。',
    'You were not seen facing the camera.',
    '请在每个动作之间正对摄像头。',
    'Face the camera between the movements.',
  ],
  face_mismatch: [
    '您的面部与证件照片比对未通过。',
    'Your face did not match the photo on your ID.',
    '您可以改为与见证人员视频连线，或携带身份证件到我司营业部柜台办理。',
    'You can join a video call with a witness instead, or visit one of our branches with your ID.',
  ],
  face_not_comparable: [
    '未能完成人脸比对（画面或证件照片中未能识别出清晰的人脸）。',
    'Your face could not be compared (no clear face in the picture or on your ID photo).',
    '您可以改为与见证人员视频连线，或携带身份证件到我司营业部柜台办理。',
    'You can join a video call with a witness instead, or visit one of our branches with your ID.',
  ],
  statement_quality: [
    '声明录制的质量未达到要求。',
    'The statement recording did not meet the quality requirements.',
    '请在安静、光线充足的地方，看着摄像头清楚地朗读声明。',
    'Somewhere quiet and well lit, look at the camera and read the statement clearly.',
  ],
  left: [
    '录制在完成前中断了。',
    'The recording stopped before it was finished.',
    '请保持本页面打开，直到录制完成。',
    'Keep this page open until the recording is finished.',
  ],
  // Not the server's: the socket closed without a result (network, or refused).
  closed: [
    '与服务器的连接中断，本次录制未能完成。',
    'The connection to the server was lost; this attempt could not be finished.',
    '请检查网络后重试，或改为与见证人员视频连线。',
    'Check your connection and try again, or join a video call with a witness.',
  ],
  server_error: [
    '系统出现问题，本次录制未能完成。',
    'Something went wrong on our side; the recording could not be finished.',
    '请稍后重试，或改为与见证人员视频连线。',
    'Please try again later, or join a video call with a witness.',
  ],
};
const FACE_REASONS = new Set(['face_mismatch', 'face_not_comparable']);
// The last attempt's end is not stored yet (the application is still 'witnessing').
const STILL_CLOSING = {
  zh: '上一次录制仍在结束中，请稍等几秒后再试。',
  en: 'The last attempt is still being closed. Wait a few seconds, then try again.',
};

// An arrow for each movement, as seen in the mirrored preview (the investor's own left
// is the screen's left).
const ARROWS = {
  turn_left: '←', turn_right: '→', tilt: '⤵', nod: '↕', closer: '⊕', back: '⊖',
};

const PHASE_TEXT = {
  camera: ['正在打开摄像头…', 'Opening the camera…'],
  connecting: ['正在连接…', 'Connecting…'],
  face: ['请正对摄像头，让面部位于画面中央', 'Face the camera, with your face in the middle of the picture'],
  baseline: ['请正对摄像头，保持不动', 'Look straight at the camera and hold still'],
  liveness: ['动作检测中：请按下方提示做动作', 'Movement check: do as shown below'],
  comparing: ['正在比对您的面部与证件照片，请稍候…', 'Comparing your face with your ID photo, please wait…'],
  statement_ready: ['请朗读下方声明', 'Read the statement below aloud'],
  statement: ['正在录制，请朗读声明', 'Recording: read the statement aloud'],
  checking: ['正在检查录制质量，请稍候…', 'Checking the recording, please wait…'],
  lost: ['连接中断', 'Connection lost'],
};

function errorText(error) {
  const e = error || {};
  return {
    zh: e.message_zh || e.message || '出现错误，请稍后重试。',
    en: e.message || e.code || 'Something went wrong.',
  };
}

function preferCodecs(transceiver, kind) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpSender?.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities(kind);
  if (!caps) return;
  const wanted = kind === 'video' ? ['video/vp8', 'video/rtx'] : ['audio/opus'];
  const codecs = caps.codecs.filter((c) => wanted.includes(c.mimeType.toLowerCase()));
  if (!codecs.length) return;
  try {
    transceiver.setCodecPreferences(codecs);
  } catch {
    // The server's answer still picks VP8 (or H.264) and Opus.
  }
}

/** Resolves once the offer is worth sending: gathering complete, a useful candidate and
 * a short settle, or the cap. */
function gathered(pc, iceServers) {
  const useful = usefulCandidateTypes(iceServers);
  return new Promise((resolve) => {
    let settle = null;
    const cap = setTimeout(done, GATHER_TIMEOUT_MS);
    function done() {
      clearTimeout(cap);
      clearTimeout(settle);
      pc.removeEventListener('icecandidate', onCandidate);
      pc.removeEventListener('icegatheringstatechange', onState);
      resolve();
    }
    function onCandidate(event) {
      if (!event.candidate) done();
      else if (!settle && useful.includes(candidateType(event.candidate))
        && !/\.local$/i.test(event.candidate.address || '')) settle = setTimeout(done, GATHER_SETTLE_MS);
    }
    function onState() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icecandidate', onCandidate);
    pc.addEventListener('icegatheringstatechange', onState);
  });
}

/** The attempt's socket and its one WebRTC connection (send only: there is nobody to
 * see or hear). No reconnecting: a dropped socket has ended the attempt on the server. */
class OneWayLink {
  constructor(url, stream, { onMessage, onClosed, onError }) {
    this.url = url;
    this.stream = stream;
    this.h = { onMessage, onClosed, onError };
    this.ws = null;
    this.pc = null;
    this.closed = false;
  }

  start() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener('message', (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!data || typeof data !== 'object' || this.closed) return;
      if (data.type === 'joined') {
        this.negotiate(Array.isArray(data.ice_servers) ? data.ice_servers : []);
        this.h.onMessage(data);
      } else if (data.type === 'answer') this.answer(data.sdp);
      else this.h.onMessage(data);
    });
    ws.addEventListener('close', (event) => {
      if (this.closed) return;
      this.closed = true;
      this.closePc();
      this.h.onClosed(event);
    });
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  async negotiate(iceServers) {
    this.closePc();
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    for (const track of this.stream.getTracks()) {
      preferCodecs(pc.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] }), track.kind);
    }
    pc.addEventListener('connectionstatechange', () => {
      if (pc === this.pc && pc.connectionState === 'failed') {
        this.h.onError({ code: 'webrtc_failed', message: 'The video connection failed.', message_zh: '视频连接失败。' });
      }
    });
    const ready = gathered(pc, iceServers);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await ready;
      if (pc !== this.pc || this.closed) return;
      this.send({ type: 'offer', sdp: pc.localDescription.sdp });
    } catch (err) {
      this.h.onError({ code: 'webrtc_failed', message: String(err), message_zh: '建立视频连接失败。' });
    }
  }

  async answer(sdp) {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      this.h.onError({ code: 'webrtc_failed', message: String(err), message_zh: '建立视频连接失败。' });
    }
  }

  closePc() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
  }

  /** Hang up (the server ends the attempt if it was not over). */
  stop() {
    this.closed = true;
    this.closePc();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    this.ws = null;
  }
}

/** Open the camera and start an attempt; errors are ApiErrors or MediaAccessErrors. */
async function startAttempt(ctx) {
  const stream = await openLocalMedia();
  try {
    const started = await ctx.api.post('/application/one-way');
    return { started, stream };
  } catch (err) {
    for (const track of stream.getTracks()) track.stop();
    throw err;
  }
}

/**
 * The choice on the verified panel (check.js): one-way when the server offers it, beside
 * the two-way queue that is always there.
 */
export function setupOnewayChoice(ctx) {
  const box = $('#oneway-choice');
  const panel = $('#check-verified');
  const alertBox = $('#oneway-choice-alert');
  const startBtn = $('#oneway-start');

  async function start() {
    clearAlert(alertBox);
    let result;
    try {
      result = await startAttempt(ctx);
    } catch (err) {
      if (err.status === 401) return;
      if (err.status === 409) {
        try {
          const body = await ctx.api.get('/application');
          if (body.application.state !== 'identity_verified') {
            await ctx.resume(body.application);
            return;
          }
        } catch {
          // The error below says enough.
        }
      }
      showAlert(alertBox, err);
      if (err.status === 403) render();
      return;
    }
    await ctx.go('oneway', result);
  }

  async function render() {
    let offer = null;
    try {
      offer = await ctx.api.get('/application/one-way');
    } catch {
      offer = null; // two-way only
    }
    const offered = Boolean(offer && offer.offered);
    panel.dataset.oneway = offered ? 'offered' : 'no';
    box.hidden = !offered;
    $('#twoway-heading').hidden = !offered;
    const note = $('#oneway-unavailable');
    // Tell why only when it was used up: other reasons are the agency's policy.
    if (offer && !offered && offer.reason === 'attempts_used') {
      note.replaceChildren(bi(offer.message_zh || '单向视频尝试次数已用完，请通过双向视频办理。',
        offer.message || 'You have used every one-way attempt; please join a video call.'));
      note.hidden = false;
    } else {
      note.hidden = true;
    }
    if (offered) {
      const n = offer.attempts_left;
      $('#oneway-attempts').replaceChildren(bi(`还可尝试 ${n} 次`, n === 1 ? '1 attempt left' : `${n} attempts left`));
    }
    return offered;
  }

  startBtn.addEventListener('click', () => busy(startBtn, start));
  return { render };
}

/** The recording screen (section #step-oneway). */
export function setupOneway(ctx) {
  const section = $('#step-oneway');
  const record = $('#ow-record');
  const result = $('#ow-result');
  const alertBox = $('#ow-alert');
  const video = $('#ow-video');
  const status = $('#ow-status');
  const band = $('#ow-band');
  const bandStep = $('#ow-band-step');
  const bandArrow = $('#ow-arrow');
  const bandText = $('#ow-band-text');
  const countdown = $('#ow-countdown');
  const stepsList = $('#ow-steps');
  const statementBox = $('#ow-statement');
  const startBtn = $('#ow-statement-start');
  const doneBtn = $('#ow-statement-done');
  const recNote = $('#ow-rec');
  const findings = $('#ow-findings');
  const cancelBtn = $('#ow-cancel');
  const cancelBox = $('#ow-cancel-confirm');

  let link = null;
  let stream = null;
  let count = 0;
  let timer = null;
  let statement = null; // the last oneway.statement message
  let finished = false;

  function stopTimer() {
    clearInterval(timer);
    timer = null;
  }

  /** A countdown shown under the instruction (not read out: the band's text is). */
  function runCountdown(seconds, render) {
    stopTimer();
    const end = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
      render(left);
      if (left <= 0) stopTimer();
    };
    tick();
    timer = setInterval(tick, 250);
  }

  /** The picture and the instruction under it stay on screen (a phone's toolbar hiding,
   * a rotation, a resized window): the heading goes to the top when either is cut off. */
  function keepInView() {
    if (record.hidden || section.hidden || !statementBox.hidden) return;
    const top = $('.ow-stage', record).getBoundingClientRect().top;
    if (top < 0 || band.getBoundingClientRect().bottom > window.innerHeight) {
      $('#h-oneway').scrollIntoView({ block: 'start' });
    }
  }
  window.addEventListener('resize', () => requestAnimationFrame(keepInView));
  // Larger text (issue 17) or a longer instruction grows the band: still in view.
  if (window.ResizeObserver) new ResizeObserver(() => requestAnimationFrame(keepInView)).observe(band);

  function setPhase(phase) {
    section.dataset.phase = phase;
    status.dataset.phase = phase;
    status.replaceChildren(bi(...(PHASE_TEXT[phase] || PHASE_TEXT.connecting)));
  }

  /** The band under the picture: what to do now. */
  function setBand({ step = '', arrow = '', zh, en, state = 'wait' }) {
    band.dataset.state = state;
    bandStep.replaceChildren(step);
    bandStep.hidden = !step;
    bandArrow.textContent = arrow;
    bandArrow.hidden = !arrow;
    bandText.replaceChildren(bi(zh, en));
  }

  function renderSteps(current = -1, passedUpTo = -1) {
    stepsList.replaceChildren(...Array.from({ length: count }, (_, i) => {
      const passed = i <= passedUpTo;
      const li = el('li', { className: passed ? 'is-done' : i === current ? 'is-current' : '' },
        el('span', { className: 'ow-dot', 'aria-hidden': 'true' }, passed ? '' : String(i + 1)),
        el('span', { className: 'visually-hidden' },
          bi(`第 ${i + 1} 个动作${passed ? '，已完成' : i === current ? '，进行中' : ''}`,
            `Movement ${i + 1}${passed ? ', done' : i === current ? ', now' : ''}`)));
      if (i === current) li.setAttribute('aria-current', 'step');
      return li;
    }));
    stepsList.hidden = count === 0;
  }

  let passedUpTo = -1;

  function onInstruction(data) {
    const n = data.index + 1;
    const total = data.count || count;
    if (total !== count) count = total;
    renderSteps(data.index, passedUpTo);
    setBand({
      step: bi(`第 ${n} 步 / 共 ${total} 步`, `Step ${n} of ${total}`),
      arrow: ARROWS[data.instruction] || '',
      zh: data.label_zh,
      en: data.label_en,
      state: 'instruction',
    });
    band.dataset.instruction = data.instruction || '';
    requestAnimationFrame(keepInView);
    const seconds = Number(data.seconds) || 0;
    if (seconds > 0) {
      runCountdown(seconds, (left) => {
        countdown.replaceChildren(bi(`剩余 ${left} 秒`, `${left} s left`));
        countdown.classList.toggle('is-low', left <= 3);
      });
      countdown.hidden = false;
    }
  }

  function onPassed(data) {
    stopTimer();
    passedUpTo = Math.max(passedUpTo, data.index);
    renderSteps(-1, passedUpTo);
    countdown.hidden = true;
    const n = data.index + 1;
    setBand({
      step: bi(`第 ${n} 步 / 共 ${count} 步`, `Step ${n} of ${count}`),
      arrow: '✓',
      zh: '完成！请回到正对摄像头的姿势',
      en: 'Done! Face the camera again',
      state: 'passed',
    });
  }

  function showStatement(data) {
    statement = data;
    stopTimer();
    countdown.hidden = true;
    renderSteps(-1, count - 1);
    setPhase('statement_ready');
    setBand({ zh: '比对通过。请朗读下方声明', en: 'Face check passed. Read the statement below aloud', state: 'passed', arrow: '✓' });
    $('#ow-statement-text').replaceChildren(bi(data.text_zh, data.text_en));
    $('#ow-statement-max').replaceChildren(bi(`每次最长 ${data.max_seconds} 秒。`, `Up to ${data.max_seconds} seconds each time.`));
    takesText(data.takes_left);
    findings.hidden = true;
    statementBox.hidden = false;
    recNote.hidden = true;
    doneBtn.hidden = true;
    startBtn.hidden = false;
    startBtn.disabled = false;
    startBtn.focus({ preventScroll: true });
    // The small picture, the statement and its button together on a phone's screen.
    requestAnimationFrame(() => {
      $('#h-oneway').scrollIntoView({ block: 'start' });
      if (startBtn.getBoundingClientRect().bottom > window.innerHeight) startBtn.scrollIntoView({ block: 'nearest' });
    });
  }

  function takesText(left) {
    $('#ow-takes').replaceChildren(bi(`可录制 ${left} 次`, left === 1 ? '1 take left' : `${left} takes left`));
  }

  function onRecording() {
    setPhase('statement');
    findings.hidden = true;
    startBtn.hidden = true;
    doneBtn.hidden = false;
    doneBtn.disabled = false;
    recNote.hidden = false;
    setBand({ zh: '正在录制：请看着摄像头朗读声明', en: 'Recording: look at the camera and read the statement', state: 'recording' });
    const max = Number(statement && statement.max_seconds) || 60;
    runCountdown(max, (left) => {
      $('#ow-remaining').replaceChildren(bi(`剩余 ${left} 秒`, `${left} s left`));
    });
    doneBtn.focus({ preventScroll: true });
    requestAnimationFrame(() => {
      if (doneBtn.getBoundingClientRect().bottom > window.innerHeight) doneBtn.scrollIntoView({ block: 'nearest' });
    });
  }

  function onChecking() {
    stopTimer();
    setPhase('checking');
    doneBtn.hidden = true;
    recNote.hidden = true;
    startBtn.hidden = true;
    setBand({ zh: '正在检查录制质量…', en: 'Checking the recording…', state: 'wait' });
  }

  function onStatementResult(data) {
    setPhase('statement_ready');
    const items = (data.findings || []).map((f) => el('li', {}, bi(f.message_zh || f.message_en || f.code,
      f.message_en || f.code)));
    findings.replaceChildren(
      el('p', {}, el('strong', {}, bi('本次朗读未通过质量检查：', 'This take did not pass the quality check:'))),
      el('ul', {}, ...items),
      el('p', {}, bi('请按上述提示调整后，点击“开始朗读”重新录制。', 'Adjust as above, then press “Start reading” to record again.')),
    );
    findings.hidden = false;
    takesText(data.takes_left);
    setBand({ zh: '请重新朗读声明', en: 'Please read the statement again', state: 'retry', arrow: '!' });
    startBtn.hidden = false;
    startBtn.disabled = false;
    doneBtn.hidden = true;
    recNote.hidden = true;
    startBtn.focus({ preventScroll: true });
    requestAnimationFrame(() => startBtn.scrollIntoView({ block: 'nearest' }));
  }

  function onMessage(data) {
    switch (data.type) {
      case 'oneway.phase':
        if (data.phase === 'baseline') {
          setPhase('baseline');
          setBand({ zh: '请正对摄像头，保持不动', en: 'Look straight at the camera and hold still', state: 'wait' });
        } else if (data.phase === 'comparing') {
          stopTimer();
          countdown.hidden = true;
          setPhase('comparing');
          setBand({ zh: '动作已完成。正在比对面部与证件照片…', en: 'Movements done. Comparing your face with your ID photo…', state: 'wait' });
        } else if (data.phase === 'statement') {
          onRecording();
        } else if (data.phase === 'checking') {
          onChecking();
        }
        break;
      case 'oneway.instruction':
        setPhase('liveness');
        onInstruction(data);
        break;
      case 'oneway.instruction_passed':
        onPassed(data);
        break;
      case 'oneway.statement':
        showStatement(data);
        break;
      case 'oneway.statement_result':
        onStatementResult(data);
        break;
      case 'oneway.done':
        finish(data.passed, data.reason);
        break;
      case 'error':
        showAlert(alertBox, errorText(data.error));
        break;
      default:
        break;
    }
  }

  function hangUp() {
    stopTimer();
    link?.stop();
    link = null;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
  }

  /** The application once the attempt's outcome is stored (the socket's "done" comes
   * first): no longer 'witnessing', or as it is after a few seconds. */
  async function settled() {
    for (let i = 0; i < 12; i += 1) {
      try {
        const body = await ctx.api.get('/application');
        ctx.setApp(body.application);
        if (body.application.state !== 'witnessing') return;
      } catch {
        return; // shown as the socket said; the next visit asks again
      }
      await new Promise((resolve) => { setTimeout(resolve, 300); });
    }
  }

  async function finish(passed, reason) {
    if (finished) return;
    finished = true;
    hangUp();
    record.hidden = true;
    result.hidden = false;
    $('#ow-passed').hidden = !passed;
    $('#ow-failed').hidden = passed;
    section.dataset.phase = passed ? 'passed' : 'failed';
    await settled();
    if (passed) {
      $('#ow-passed h3').focus();
      return;
    }
    const [zh, en, adviceZh, adviceEn] = REASONS[reason] || REASONS.server_error;
    $('#ow-fail-reason').replaceChildren(bi(zh, en));
    $('#ow-fail-advice').replaceChildren(bi(adviceZh, adviceEn));
    const face = FACE_REASONS.has(reason);
    $('#ow-failed').dataset.reason = reason || '';
    let offer = null;
    try {
      offer = await ctx.api.get('/application/one-way');
    } catch {
      offer = null;
    }
    const retry = $('#ow-retry');
    const twoWay = $('#ow-two-way');
    // Still 'witnessing' when the attempt's end is slow to be stored: retrying then says
    // to wait a moment (retry() below).
    const may = Boolean(offer && offer.offered);
    retry.hidden = !may;
    if (may) {
      const n = offer.attempts_left;
      retry.replaceChildren(bi(`再试一次（还可 ${n} 次）`, `Try again (${n} left)`));
    }
    $('#ow-no-more').hidden = !(offer && !offer.offered);
    // A18.4: a failed face comparison is guided to a video call with a witness (or the counter).
    twoWay.classList.toggle('primary', face || !may);
    twoWay.classList.toggle('secondary', !(face || !may));
    retry.classList.toggle('primary', !face);
    retry.classList.toggle('secondary', face);
    // The first choice first.
    if (face || !may) retry.before(twoWay);
    else twoWay.before(retry);
    $('#ow-counter').hidden = !face;
    $('#ow-failed h3').focus();
  }

  function onClosed(event) {
    if (finished) return;
    // Closed without a result: refused (token, over) or the network dropped.
    setPhase('lost');
    if (event && event.code === 4401) {
      showAlert(alertBox, { zh: '录制凭证无效或已过期。', en: 'The recording pass is not valid or has expired.' });
    }
    finish(false, 'closed');
  }

  async function begin({ started, stream: media }) {
    finished = false;
    passedUpTo = -1;
    statement = null;
    count = Number(started.instructions) || 0;
    stream = media;
    record.hidden = false;
    result.hidden = true;
    statementBox.hidden = true;
    cancelBox.hidden = true;
    cancelBtn.hidden = false;
    countdown.hidden = true;
    clearAlert(alertBox);
    renderSteps();
    video.srcObject = stream;
    video.play?.().catch(() => {});
    // The picture and the instruction under it fill the screen (the progress bar above
    // is not needed while recording).
    requestAnimationFrame(() => $('#h-oneway').scrollIntoView({ block: 'start' }));
    setPhase('connecting');
    setBand({ zh: '请正对摄像头，让面部位于画面中央', en: 'Face the camera, with your face in the middle of the picture', state: 'wait' });
    const url = `${location.origin.replace(/^http/, 'ws')}${started.socket_url}?token=${encodeURIComponent(started.token)}`;
    link = new OneWayLink(url, stream, {
      onMessage(data) {
        if (data.type !== 'error' && section.dataset.phase === 'connecting') setPhase('face');
        onMessage(data);
      },
      onClosed,
      onError(error) {
        showAlert(alertBox, errorText(error));
      },
    });
    link.start();
  }

  function showRecorded() {
    hangUp();
    finished = true;
    record.hidden = true;
    result.hidden = false;
    $('#ow-passed').hidden = false;
    $('#ow-failed').hidden = true;
    section.dataset.phase = 'passed';
  }

  async function retry() {
    clearAlert(alertBox);
    let next;
    try {
      next = await startAttempt(ctx);
    } catch (err) {
      if (err.status === 401) return;
      showAlert(alertBox, err.code === 'not_ready_for_video' && await stillClosing() ? STILL_CLOSING : err);
      return;
    }
    try {
      const body = await ctx.api.get('/application');
      ctx.setApp(body.application);
    } catch {
      // The state is shown by the recording screen itself.
    }
    await begin(next);
    $('#h-oneway').focus();
  }

  /** Is the application still 'witnessing' (the attempt's end not stored yet)? */
  async function stillClosing() {
    try {
      const body = await ctx.api.get('/application');
      ctx.setApp(body.application);
      return body.application.state === 'witnessing';
    } catch {
      return false;
    }
  }

  /** A18.4: the two-way queue instead (the pre-call check first where the agency wants it). */
  async function twoWay() {
    clearAlert(alertBox);
    let status;
    try {
      status = await ctx.api.post('/application/queue');
    } catch (err) {
      if (err.status === 401) return;
      if (err.code === 'network_check_required' || err.code === 'network_check_failed') {
        await ctx.go('check');
        showAlert($('#join-alert'), err);
        $('#h-precall').focus();
        return;
      }
      if (err.status === 409) {
        if (await stillClosing()) {
          showAlert(alertBox, STILL_CLOSING);
          return;
        }
        if (ctx.app && ctx.app.state !== 'identity_verified') {
          await ctx.resume(ctx.app);
          return;
        }
      }
      showAlert(alertBox, err);
      return;
    }
    try {
      const body = await ctx.api.get('/application');
      ctx.setApp(body.application);
    } catch {
      // The queue section asks again.
    }
    await ctx.go('queue', { status });
  }

  startBtn.addEventListener('click', () => {
    if (!link) return;
    startBtn.disabled = true;
    if (!link.send({ type: 'statement_start' })) startBtn.disabled = false;
  });
  doneBtn.addEventListener('click', () => {
    if (!link) return;
    doneBtn.disabled = true;
    stopTimer();
    link.send({ type: 'statement_done' });
  });
  cancelBtn.addEventListener('click', () => {
    cancelBox.hidden = false;
    cancelBtn.hidden = true;
    $('#ow-cancel-no').focus();
  });
  $('#ow-cancel-no').addEventListener('click', () => {
    cancelBox.hidden = true;
    cancelBtn.hidden = false;
    cancelBtn.focus();
  });
  $('#ow-cancel-yes').addEventListener('click', () => {
    cancelBox.hidden = true;
    link?.stop();
    link = null;
    finish(false, 'left');
  });
  $('#ow-retry').addEventListener('click', (e) => busy(e.currentTarget, retry));
  $('#ow-two-way').addEventListener('click', (e) => busy(e.currentTarget, twoWay));

  return {
    /** opts: {started, stream} from a start; {} to show where the application stands. */
    async enter(opts = {}) {
      if (opts.started && opts.stream) {
        await begin(opts);
        return;
      }
      if (ctx.app && ctx.app.state === 'one_way_recorded') {
        showRecorded();
        return;
      }
      await ctx.go('check');
    },
    leave() {
      if (!finished) {
        finished = true;
        hangUp();
      }
    },
  };
}
