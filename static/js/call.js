// One party's side of a witness session's video call (investor page and witness desk).
//
// The browser holds a single RTCPeerConnection to the media node that owns the session
// (server/media); the node relays the other party and records both. Signalling runs over
// /ws/session/<id>: this page sends one complete offer (no trickle) as soon as it holds a
// candidate that can work, and the node answers with its own. A dropped socket
// reconnects with the same token, and a failed ICE connection is renegotiated; the
// server keeps the session open for media.rejoin_grace_seconds meanwhile and records the
// rejoin as a new segment.

import { bi } from './i18n.js';
import { LiveSocket } from './socket.js';

const GATHER_TIMEOUT_MS = 3000; // the offer goes out by then whatever was gathered
// After the first candidate that can carry the call, wait this long for its siblings
// (the relay over another transport, the other interface's candidate) before sending.
const GATHER_SETTLE_MS = 250;
const DISCONNECTED_GRACE_MS = 5000; // 'disconnected' this long with the socket alive: renegotiate
// Not connected this long after the offer, and TURN gave no relay: say why now. The
// browser's own ICE 'failed' can take minutes while a TURN port still retries (seen in
// the network lab: Chromium stayed 'connecting' 330 s with UDP blocked and TURN refusing).
const STUCK_CONNECTING_MS = 15000;
// ICE went 'disconnected': the signalling socket must answer a ping within this long, or
// it is replaced at once (its 'joined' then starts a new leg).
const SOCKET_CHECK_MS = 2000;
const STATS_EVERY_MS = 2000;
// An offer unanswered this long: the signalling socket is taken for dead. When a phone
// moves from Wi-Fi to mobile data its old TCP connection does not close, it just goes
// quiet, and the browser may go on calling it open for minutes (issue 16 lab).
const ANSWER_TIMEOUT_MS = 6000;

/** A getUserMedia failure the person can act on, in both languages. */
export class MediaAccessError extends Error {
  constructor(code, zh, en) {
    super(en);
    this.code = code;
    this.zh = zh;
    this.en = en;
  }
}

export function mediaErrorFrom(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return new MediaAccessError('permission_denied',
      '未获得摄像头和麦克风权限。请在浏览器地址栏的权限设置中允许本网站使用摄像头和麦克风，然后重试。',
      'Camera and microphone access was refused. Allow this site to use them in the browser’s site settings, then try again.');
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') {
    return new MediaAccessError('no_device',
      '未找到摄像头或麦克风。请连接设备后重试，或换用带摄像头的手机或电脑。',
      'No camera or microphone was found. Connect one and try again, or use a phone or computer that has one.');
  }
  if (name === 'NotReadableError' || name === 'AbortError') {
    return new MediaAccessError('device_in_use',
      '摄像头或麦克风正被其他应用占用。请关闭其他视频通话或相机应用后重试。',
      'The camera or microphone is in use by another app. Close other video calls or camera apps and try again.');
  }
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    return new MediaAccessError('unsupported',
      '此浏览器不支持视频通话。请使用最新版的 Chrome、Edge、Safari 或 Firefox，并通过 https 访问。',
      'This browser cannot make video calls. Use a current Chrome, Edge, Safari or Firefox over https.');
  }
  return new MediaAccessError('media_error',
    '无法打开摄像头或麦克风，请重试。', 'The camera or microphone could not be started. Please try again.');
}

export async function openLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.RTCPeerConnection) {
    throw mediaErrorFrom(null);
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 }, facingMode: 'user' },
    });
  } catch (err) {
    throw mediaErrorFrom(err);
  }
}

// Why a connection failed, told to the person in both languages (issue 16). A TURN
// server answers 401 to credentials that are wrong or expired; error 701 means it could
// not be reached. Either matters only when no relayed candidate was gathered: on a
// network that lets UDP through the call connects directly anyway.
const TURN_AUTH_FAILED = {
  code: 'turn_auth_failed',
  message: 'The video relay server did not accept this call’s credentials (wrong or expired), and your network does not allow a direct connection. Reload the page to try again; if it keeps happening, contact us: it needs fixing on our side.',
  message_zh: '视频中转服务器未接受本次通话的凭证（凭证错误或已过期），而您所在的网络不允许直接连接。请刷新页面重试；如仍无法连接，请联系我们，需由我们修复。',
};
const TURN_UNREACHABLE = {
  code: 'turn_unreachable',
  message: 'Your network blocks video calls and the video relay server cannot be reached from it. Switch to another network (mobile data or another Wi-Fi), then reload the page.',
  message_zh: '您所在的网络阻止了视频通话，且无法连接视频中转服务器。请换用其他网络（手机流量或其他 Wi-Fi）后刷新页面重试。',
};

/** What to tell the person after a connection failed, from what ICE gathering reported;
 * null when there is nothing they can act on (the 'reconnecting' phase says enough). */
export function failureReason(iceServers, ice) {
  const turnUrls = iceServers.flatMap((s) => [].concat(s.urls || []))
    .filter((u) => /^turns?:/.test(u));
  if (!turnUrls.length || ice.relayGathered) return null;
  if (ice.errors.some((e) => e.errorCode === 401 && /^turns?:/.test(e.url || ''))) return TURN_AUTH_FAILED;
  return TURN_UNREACHABLE;
}

function preferCodecs(transceiver, kind) {
  // VP8 and Opus: the node then forwards frames unchanged. A browser without VP8 offers
  // what it has, and the node falls back to H.264 for it (transcoding, docs/media.md).
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities(kind);
  if (!caps) return;
  const wanted = kind === 'video' ? ['video/vp8', 'video/rtx'] : ['audio/opus'];
  const codecs = caps.codecs.filter((c) => wanted.includes(c.mimeType.toLowerCase()));
  if (codecs.length) {
    try {
      transceiver.setCodecPreferences(codecs);
    } catch {
      // Older browsers: the server's answer still picks VP8 (or H.264) and Opus.
    }
  }
}

/** A candidate's type ('host', 'srflx', 'prflx', 'relay'); from the SDP line where the
 * browser does not fill in the field. */
export function candidateType(candidate) {
  if (!candidate) return null;
  if (candidate.type) return candidate.type;
  const m = / typ (host|srflx|prflx|relay)\b/.exec(candidate.candidate || '');
  return m ? m[1] : null;
}

/** A host candidate under an mDNS name (Firefox, Safari: 'xxxx.local') that the media
 * node cannot resolve: it never counts as the candidate that lets the offer go. */
function hiddenHost(candidate) {
  const address = candidate.address || (candidate.candidate || '').split(' ')[4] || '';
  return /\.local$/i.test(address);
}

/** The candidate types worth sending an offer for, given the configured ICE servers:
 * with TURN a relayed one (the only kind that works on a network that blocks UDP, where
 * TURN over TCP or TLS is all that comes), with STUN only a server-reflexive one (or a
 * relayed one), with none any candidate. */
export function usefulCandidateTypes(iceServers) {
  const urls = (iceServers || []).flatMap((s) => [].concat(s.urls || []));
  if (urls.some((u) => /^turns?:/.test(u))) return ['relay'];
  if (urls.some((u) => /^stun:/.test(u))) return ['srflx', 'relay'];
  return ['host', 'srflx', 'relay'];
}

/** Resolves when the offer is worth sending: gathering completed, or a useful candidate
 * came in and GATHER_SETTLE_MS passed for its siblings, or GATHER_TIMEOUT_MS ran out
 * (some networks never finish gathering: send what was found by then). Set up before
 * setLocalDescription, so no candidate event is missed. */
function offerReady(pc, iceServers) {
  const useful = usefulCandidateTypes(iceServers);
  let settle = null;
  let timer = null;
  let finished = false;
  let finish;
  const ready = new Promise((resolve) => {
    finish = resolve;
  });
  const done = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    clearTimeout(settle);
    pc.removeEventListener('icegatheringstatechange', onState);
    pc.removeEventListener('icecandidate', onCandidate);
    finish();
  };
  const onState = () => {
    if (pc.iceGatheringState === 'complete') done();
  };
  const onCandidate = (event) => {
    if (!event.candidate) {
      done(); // end of candidates
    } else if (!settle && useful.includes(candidateType(event.candidate)) && !hiddenHost(event.candidate)) {
      settle = setTimeout(done, GATHER_SETTLE_MS);
    }
  };
  pc.addEventListener('icegatheringstatechange', onState);
  pc.addEventListener('icecandidate', onCandidate);
  return {
    /** Called once setLocalDescription resolved: the cap runs from there. */
    wait() {
      if (pc.iceGatheringState === 'complete') done();
      else if (!finished) timer = setTimeout(done, GATHER_TIMEOUT_MS);
      return ready;
    },
    cancel: done,
  };
}

/**
 * handlers: onPhase(phase) — 'connecting' | 'waiting' | 'live' | 'reconnecting' | 'away';
 * onEnded(reason); onPeerMute({audio, video}); onQuality(level, details);
 * onMessage(data) for anything else (still, script, chat); onError(error object).
 */
export class Call {
  constructor({ url, stream, localVideo, remoteVideo, handlers }) {
    this.url = url;
    this.stream = stream;
    this.localVideo = localVideo;
    this.remoteVideo = remoteVideo;
    this.h = handlers || {};
    this.pc = null;
    this.iceServers = [];
    this.ended = false;
    this.peerPresent = false;
    this.disconnectTimer = null;
    this.statsTimer = null;
    this.lastStats = null;
    this.negotiating = 0;
    this.answerTimer = null;
    this.socket = this.makeSocket();
  }

  makeSocket() {
    return new LiveSocket(this.url, {
      onMessage: (data) => this.onMessage(data),
      onDown: () => {
        if (!this.ended) this.phase('reconnecting');
      },
    });
  }

  /** Drop a socket that went quiet and open a new one; the node's 'joined' on it starts
   * a new leg, with fresh TURN credentials. */
  freshSocket() {
    if (!this.ended) this.socket.reconnectNow();
  }

  /** Is the signalling socket still alive? Asked the moment the connection goes
   * 'disconnected' or fails, and when the browser reports the network back or changed:
   * a socket silent for SOCKET_CHECK_MS is replaced at once, and its 'joined' starts a
   * new leg (issue 16: Wi-Fi to mobile data leaves the old socket hanging). */
  checkSignalling() {
    if (!this.ended) this.socket.check(SOCKET_CHECK_MS);
  }

  start() {
    if (this.localVideo) {
      this.localVideo.srcObject = this.stream;
      this.localVideo.muted = true;
    }
    this.phase('connecting');
    this.socket.start();
    this.statsTimer = setInterval(() => this.sampleQuality(), STATS_EVERY_MS);
    this.pingTimer = setInterval(() => this.socket.send({ type: 'ping' }), 10000);
    this.onNetworkChange = () => this.checkSignalling();
    window.addEventListener('online', this.onNetworkChange);
    navigator.connection?.addEventListener?.('change', this.onNetworkChange);
  }

  phase(p) {
    this.h.onPhase?.(p);
  }

  send(message) {
    return this.socket.send(message);
  }

  onMessage(data) {
    switch (data.type) {
      case 'joined':
        this.iceServers = Array.isArray(data.ice_servers) ? data.ice_servers : [];
        this.phase(this.peerPresent ? 'live' : 'waiting');
        this.negotiate();
        break;
      case 'answer':
        // Only the answer to the latest offer: an older one belongs to a closed leg.
        if (data.attempt === this.negotiating) this.applyAnswer(data.sdp);
        break;
      case 'peer_joined':
        this.peerPresent = true;
        this.phase('live');
        break;
      case 'peer_away':
        this.h.onPhase?.('away', data);
        break;
      case 'mute':
        this.h.onPeerMute?.({ audio: Boolean(data.audio), video: Boolean(data.video) });
        break;
      case 'peer_left':
      case 'session_ended':
        this.finish(data.reason || data.result || data.type);
        break;
      case 'error':
        this.h.onError?.(data.error || {});
        if (data.error && ['session_over', 'session_not_found', 'session_token_invalid'].includes(data.error.code)) {
          this.finish(data.error.code);
        }
        break;
      case 'pong':
        break;
      default:
        this.h.onMessage?.(data);
    }
  }

  async negotiate() {
    if (this.ended) return;
    const attempt = ++this.negotiating;
    clearTimeout(this.retryTimer);
    this.closePc();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    for (const track of this.stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.stream] });
      preferCodecs(transceiver, track.kind);
    }
    const remote = new MediaStream();
    pc.addEventListener('track', (event) => {
      remote.addTrack(event.track);
      if (this.remoteVideo && this.remoteVideo.srcObject !== remote) {
        this.remoteVideo.srcObject = remote;
        this.remoteVideo.play?.().catch(() => {});
      }
    });
    pc.addEventListener('connectionstatechange', () => this.onConnectionState(pc));
    const ice = { errors: [], relayGathered: false };
    this.ice = ice;
    pc.addEventListener('icecandidate', (event) => {
      if (event.candidate && event.candidate.type === 'relay') ice.relayGathered = true;
    });
    pc.addEventListener('icecandidateerror', (event) => {
      ice.errors.push({ url: event.url, errorCode: event.errorCode });
    });
    const gathering = offerReady(pc, this.iceServers);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathering.wait();
      if (attempt !== this.negotiating || this.ended) return;
      this.socket.send({ type: 'offer', sdp: pc.localDescription.sdp, attempt });
      clearTimeout(this.stuckTimer);
      this.stuckTimer = setTimeout(() => this.explainIfStuck(pc), STUCK_CONNECTING_MS);
      clearTimeout(this.answerTimer);
      this.answerTimer = setTimeout(() => {
        if (attempt === this.negotiating && this.pc === pc && pc.signalingState === 'have-local-offer') {
          this.freshSocket();
        }
      }, ANSWER_TIMEOUT_MS);
    } catch (err) {
      gathering.cancel();
      this.h.onError?.({ code: 'webrtc_failed', message: String(err), message_zh: '建立视频连接失败，正在重试。' });
    }
  }

  async applyAnswer(sdp) {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') return;
    clearTimeout(this.answerTimer);
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      this.h.onError?.({ code: 'webrtc_failed', message: String(err), message_zh: '建立视频连接失败。' });
    }
  }

  /** Still not connected: if what ICE gathering reported explains it (a strict network
   * and a TURN server that refused or cannot be reached), tell the person now; the
   * connection keeps trying meanwhile. */
  explainIfStuck(pc) {
    if (pc !== this.pc || this.ended || pc.connectionState === 'connected') return;
    this.explainFailure();
  }

  /** Tell the person what ICE gathering says went wrong, if anything they can act on. */
  explainFailure() {
    const reason = failureReason(this.iceServers, this.ice || { errors: [], relayGathered: false });
    if (reason) this.h.onError?.(reason);
  }

  onConnectionState(pc) {
    if (pc !== this.pc || this.ended) return;
    clearTimeout(this.disconnectTimer);
    this.disconnectTimer = null;
    if (pc.connectionState === 'failed') {
      this.phase('reconnecting');
      this.explainFailure();
      this.checkSignalling();
      this.retryLater();
    } else if (pc.connectionState === 'disconnected') {
      this.phase('reconnecting');
      // A network change kills the socket too: find out now, not after the grace. A dead
      // socket is replaced and its 'joined' renegotiates at once; with the socket alive,
      // ICE gets DISCONNECTED_GRACE_MS to come back by itself (a burst of loss).
      this.checkSignalling();
      this.disconnectTimer = setTimeout(() => {
        if (pc === this.pc && pc.connectionState !== 'connected') this.retryLater();
      }, DISCONNECTED_GRACE_MS);
    } else if (pc.connectionState === 'connected') {
      this.failures = 0;
      this.phase(this.peerPresent ? 'live' : 'waiting');
    }
  }

  /** Renegotiate after a failure: the first time at once, then backing off (2, 4, 8,
   * 15 s) while it keeps failing: with UDP blocked every attempt would otherwise open a
   * new leg on the server at once. */
  retryLater() {
    clearTimeout(this.retryTimer);
    const delay = this.failures ? Math.min(1000 * 2 ** this.failures, 15000) : 250;
    this.failures = (this.failures || 0) + 1;
    this.retryTimer = setTimeout(() => {
      if (!this.ended && this.socket.up) this.negotiate();
    }, delay);
  }

  /** Mute or unmute this side's microphone or camera; the other party is told. */
  setMuted(kind, muted) {
    for (const track of this.stream.getTracks()) {
      if (track.kind === kind) track.enabled = !muted;
    }
    this.send({ type: 'mute', ...this.muteState() });
  }

  muteState() {
    const off = (kind) => this.stream.getTracks().filter((t) => t.kind === kind).every((t) => !t.enabled);
    return { audio: off('audio'), video: off('video') };
  }

  async sampleQuality() {
    const pc = this.pc;
    if (!pc || pc.connectionState !== 'connected') {
      // Issue 17: "connecting" until a first measurement; "not connected" only once a
      // call that was measured has lost its connection.
      this.h.onQuality?.(this.measured ? 'none' : 'connecting', {});
      return;
    }
    let lost = 0;
    let received = 0;
    let rtt = null;
    let fps = null;
    let stats;
    try {
      stats = await pc.getStats();
    } catch {
      return; // closed meanwhile
    }
    if (pc !== this.pc || this.ended) return;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && !s.isRemote) {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (s.kind === 'video' && typeof s.framesPerSecond === 'number') fps = s.framesPerSecond;
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        if (typeof s.currentRoundTripTime === 'number') rtt = s.currentRoundTripTime;
      }
    });
    const prev = this.lastStats;
    this.lastStats = { lost, received };
    if (!prev) {
      this.h.onQuality?.(this.measured ? 'none' : 'connecting', {});
      return;
    }
    this.measured = true;
    const dLost = Math.max(0, lost - prev.lost);
    const dRecv = Math.max(0, received - prev.received);
    const loss = dLost + dRecv ? dLost / (dLost + dRecv) : 0;
    // Media stopped arriving although ICE still says 'connected' (it takes Chromium ~7 s
    // to call a dead path 'disconnected'): ask the signalling socket now, once per stall.
    if (dRecv === 0 && prev.received > 0) {
      if (!this.stalled) this.checkSignalling();
      this.stalled = true;
    } else {
      this.stalled = false;
    }
    let level = 'good';
    if (loss > 0.08 || (rtt !== null && rtt > 0.6) || (fps !== null && fps < 5)) level = 'poor';
    else if (loss > 0.02 || (rtt !== null && rtt > 0.3) || (fps !== null && fps < 10)) level = 'fair';
    this.h.onQuality?.(level, { loss, rtt, fps });
  }

  closePc() {
    clearTimeout(this.disconnectTimer);
    this.disconnectTimer = null;
    clearTimeout(this.stuckTimer);
    const pc = this.pc;
    this.pc = null;
    this.lastStats = null;
    if (pc) pc.close();
  }

  finish(reason) {
    if (this.ended) return;
    this.stop();
    this.h.onEnded?.(reason);
  }

  /** Hang up locally: close the connection, the socket and the camera. */
  stop() {
    this.ended = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.answerTimer);
    clearInterval(this.statsTimer);
    clearInterval(this.pingTimer);
    window.removeEventListener('online', this.onNetworkChange);
    navigator.connection?.removeEventListener?.('change', this.onNetworkChange);
    this.closePc();
    this.socket.stop();
    if (this.remoteVideo) this.remoteVideo.srcObject = null;
    if (this.localVideo) this.localVideo.srcObject = null;
    for (const track of this.stream.getTracks()) track.stop();
  }
}

/** Bilingual label for a connection quality level. */
export function qualityLabel(level) {
  return {
    good: bi('网络良好', 'Good connection'),
    fair: bi('网络一般', 'Fair connection'),
    poor: bi('网络较差', 'Poor connection'),
    none: bi('未连接', 'Not connected'),
    connecting: bi('正在连接…', 'Connecting…'),
  }[level] || bi('未连接', 'Not connected');
}

/**
 * Wire a call to the shared markup (templates/_call.html) inside ``root``: videos, mute
 * buttons, the other party's mute badges, the quality indicator and the "away" notice.
 * Returns the Call, or throws MediaAccessError when the camera cannot be opened (the
 * message is shown in the root's media-error box too).
 */
export async function startCallIn(root, url, handlers = {}) {
  const q = (sel) => root.querySelector(sel);
  const errorBox = q('[data-call="media-error"]');
  errorBox.hidden = true;
  let stream;
  try {
    stream = await openLocalMedia();
  } catch (err) {
    errorBox.replaceChildren(bi(err.zh, err.en));
    errorBox.hidden = false;
    throw err;
  }
  const away = q('[data-call="away"]');
  const quality = q('[data-call="quality"]');
  const micBtn = q('[data-call="mic"]');
  const camBtn = q('[data-call="cam"]');
  const peerMic = q('[data-call="peer-mic"]');
  const peerCam = q('[data-call="peer-cam"]');
  const prompt = q('[data-call="prompt"]');
  const disclosure = q('[data-call="disclosure"]');
  const showPrompt = (step) => {
    if (!step) {
      prompt.hidden = true;
      return;
    }
    q('[data-call="prompt-who"]').replaceChildren(step.speaker === 'investor'
      ? bi('请投资者朗读', 'Investor reads aloud') : bi('见证人员提问', 'The witness asks'));
    q('[data-call="prompt-zh"]').textContent = step.text_zh;
    q('[data-call="prompt-en"]').textContent = step.text_en || '';
    prompt.hidden = false;
  };
  const showCard = (card) => {
    for (const field of disclosure.querySelectorAll('[data-card]')) {
      const value = String(card[field.dataset.card] ?? '');
      field.textContent = value;
      if (field.tagName === 'A') {
        // Only web links from the server's config; never a script URL.
        if (/^https?:\/\//.test(value)) field.href = value;
        else field.removeAttribute('href');
      }
    }
    disclosure.hidden = false;
  };
  // A20: which of a holder's services the call is for (an opening's page says so already).
  const business = q('[data-call="business"]');
  const showBusiness = (data) => {
    if (!business || !data.label_zh || data.business_type === 'open') return;
    business.replaceChildren(bi(data.label_zh, data.label_en));
    business.dataset.business = data.business_type || '';
    business.hidden = false;
  };
  const call = new Call({
    url,
    stream,
    localVideo: q('[data-call="local"]'),
    remoteVideo: q('[data-call="remote"]'),
    handlers: {
      ...handlers,
      onPhase(phase, data) {
        away.hidden = phase !== 'away';
        if (phase === 'live') peerMic.hidden = peerCam.hidden = true;
        root.dataset.phase = phase;
        handlers.onPhase?.(phase, data);
      },
      onPeerMute({ audio, video }) {
        peerMic.hidden = !audio;
        peerCam.hidden = !video;
      },
      onQuality(level, details) {
        quality.dataset.level = level;
        quality.replaceChildren(qualityLabel(level));
        handlers.onQuality?.(level, details);
      },
      onEnded(reason) {
        root.dataset.phase = 'ended';
        showPrompt(null);
        disclosure.hidden = true;
        handlers.onEnded?.(reason);
      },
      onMessage(data) {
        if (data.type === 'prompt') showPrompt(data.step);
        else if (data.type === 'disclosure') showCard(data.card || {});
        else if (data.type === 'disclosure_done') q('[data-call="disclosure-done"]').hidden = false;
        else if (data.type === 'business') showBusiness(data);
        handlers.onMessage?.(data);
      },
    },
  });
  call.showPrompt = showPrompt;
  const bindMute = (btn, kind) => {
    btn.setAttribute('aria-pressed', 'false');
    btn.onclick = () => {
      const muted = btn.getAttribute('aria-pressed') !== 'true';
      btn.setAttribute('aria-pressed', String(muted));
      call.setMuted(kind, muted);
    };
  };
  bindMute(micBtn, 'audio');
  bindMute(camBtn, 'video');
  quality.dataset.level = 'connecting';
  quality.replaceChildren(qualityLabel('connecting'));
  call.start();
  return call;
}
