// The pre-call check before the witness queue (issue 16): the camera's picture, the
// microphone's level, and a short test connection to the media node through the same
// ICE/TURN servers the call uses. The node answers our pings, counts what arrives (our
// video and paced filler on the data channel) and sends a sealed result; we post it with
// what only this browser knows (devices, the candidate pair, its own bitrate estimate)
// and the server stores the check and decides: ok, weak (may join, warned) or failed.

import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { busy, clearAlert, showAlert } from './ui.js';

const GATHER_MS = 3000; // some networks never finish gathering: offer what was found
const FILL_CHUNK = 8192; // bytes of filler per send …
const FILL_EVERY_MS = 60; // … so ~1 Mbit/s: enough to tell "ok" from "weak"
const FILL_BUFFER = 65536; // never queue more than this: a slow link sends less

const PATHS = {
  direct: ['直连', 'Direct'],
  relay: ['经中继服务器', 'Through a relay server'],
  none: ['未连接', 'Not connected'],
};
const VERDICTS = {
  ok: ['检测通过：设备和网络可以进行视频见证。', 'Ready: your device and network can carry the video call.'],
  weak: ['网络较弱：可以继续排队，但通话画面可能不清晰或有停顿。',
    'Weak network: you may join the queue, but the picture may be poor or stall.'],
  failed: ['当前设备或网络无法进行视频见证，原因如下。请处理后点击“重新检测”。',
    'This device or network cannot carry the video call, for the reasons below. Fix them, then try again.'],
};
const DEVICE_PROBLEMS = {
  camera: ['未能打开摄像头。', 'The camera could not be opened.'],
  microphone: ['未能打开麦克风。', 'The microphone could not be opened.'],
};

// Issue 17: a browser without WebRTC (or with it turned off) is told before it queues.
export const NO_WEBRTC = {
  zh: '此浏览器无法进行视频通话（不支持 WebRTC 或已被关闭）。请用最新版 Chrome、Edge、Safari 或 Firefox 打开本页面；'
    + '在微信等应用内打开的，请选择“在浏览器中打开”；使用 Firefox 的，请确认没有关闭 WebRTC'
    + '（about:config 中 media.peerconnection.enabled 为 true）。',
  en: 'This browser cannot make video calls (WebRTC is missing or turned off). Open this page in the latest '
    + 'Chrome, Edge, Safari or Firefox; inside an app such as WeChat, choose “Open in browser”; in Firefox, '
    + 'make sure WebRTC is on (media.peerconnection.enabled is true in about:config).',
};

/** Whether this browser can make the call at all. */
export function callSupported() {
  return Boolean(window.RTCPeerConnection && navigator.mediaDevices
    && typeof navigator.mediaDevices.getUserMedia === 'function');
}

/** Open camera and microphone, each on its own if both at once fail (to say which). */
async function openDevices() {
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia || !window.RTCPeerConnection) return null;
  try {
    return await media.getUserMedia({ video: true, audio });
  } catch {
    const stream = new MediaStream();
    for (const constraints of [{ video: true }, { audio }]) {
      try {
        const one = await media.getUserMedia(constraints);
        for (const track of one.getTracks()) stream.addTrack(track);
      } catch {
        // reported as that device's failure
      }
    }
    return stream;
  }
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, GATHER_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** What getStats says about the path: the selected pair's local candidate and figures. */
async function pathStats(pc) {
  const out = {};
  let stats;
  try {
    stats = await pc.getStats();
  } catch {
    return out;
  }
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) {
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || s.selected)) pair = s;
    });
  }
  if (!pair) return out;
  const local = stats.get(pair.localCandidateId);
  if (local) {
    out.candidate_type = local.candidateType;
    if (['udp', 'tcp', 'tls'].includes(local.protocol)) out.protocol = local.protocol;
    if (['udp', 'tcp', 'tls'].includes(local.relayProtocol)) out.relay_protocol = local.relayProtocol;
  }
  if (typeof pair.currentRoundTripTime === 'number') out.rtt_ms = Math.round(pair.currentRoundTripTime * 1000);
  if (typeof pair.availableOutgoingBitrate === 'number') {
    out.outgoing_kbps = Math.round(pair.availableOutgoingBitrate / 1000);
  }
  return out;
}

export function setupPrecall(ctx, { onChange }) {
  const video = $('#precall-video');
  const placeholder = $('#precall-no-video');
  const meter = $('#precall-meter');
  const progress = $('#precall-progress');
  const results = $('#precall-results');
  const verdictText = $('#precall-verdict');
  const alertBox = $('#precall-alert');
  const startBtn = $('#precall-start');
  const box = $('#precall');

  let stream = null;
  let audioCtx = null;
  let meterTimer = null;
  let running = null; // { pc, timers } while a test connection is up
  let check = null; // the stored check shown
  let required = true;
  let unsupported = false; // no WebRTC: nothing to test, no joining

  function stopDevices() {
    clearInterval(meterTimer);
    meterTimer = null;
    if (audioCtx) audioCtx.close().catch(() => {});
    audioCtx = null;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    placeholder.hidden = false;
    meter.value = 0;
  }

  function stopProbe() {
    if (!running) return;
    for (const timer of running.timers) clearInterval(timer);
    running.pc.close();
    running = null;
  }

  function startMeter(track) {
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    if (!AudioCtx) return;
    audioCtx = new AudioCtx();
    // Started from the button's click, but some browsers still create it suspended.
    audioCtx.resume().catch(() => {});
    meter.dataset.peak = '0';
    const source = audioCtx.createMediaStreamSource(new MediaStream([track]));
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      const rms = Math.sqrt(sum / samples.length);
      // dBFS -60..0 onto 0..100: speech sits in the middle.
      const db = 20 * Math.log10(rms || 1e-6);
      meter.value = Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
      // The loudest seen, for tests and support: the bar itself only shows the moment.
      meter.dataset.peak = String(Math.max(Number(meter.dataset.peak), meter.value));
    }, 100);
  }

  function row(zh, en, value, state) {
    const dd = el('dd', {}, value);
    if (state) dd.dataset.state = state;
    return [el('dt', {}, bi(zh, en)), dd];
  }

  function ok(flag) {
    return flag ? bi('正常', 'Working') : bi('不可用', 'Not working');
  }

  /** A stored check: figures, verdict, reasons; the join button follows may_join. */
  function render(shown) {
    check = shown;
    progress.hidden = true;
    if (!shown) {
      results.hidden = true;
      verdictText.hidden = true;
      clearAlert(alertBox);
      onChange(null);
      return;
    }
    const path = PATHS[shown.path] || PATHS.none;
    results.replaceChildren(
      ...row('摄像头', 'Camera', ok(shown.camera_ok), shown.camera_ok ? 'ok' : 'bad'),
      ...row('麦克风', 'Microphone', ok(shown.microphone_ok), shown.microphone_ok ? 'ok' : 'bad'),
      ...row('连接方式', 'Path', bi(path[0] + (shown.protocol ? ` (${shown.protocol.toUpperCase()})` : ''),
        path[1] + (shown.protocol ? ` (${shown.protocol.toUpperCase()})` : '')), shown.path === 'none' ? 'bad' : 'ok'),
      ...row('往返时延', 'Round trip', shown.rtt_ms === null ? '—' : `${shown.rtt_ms} ms`),
      ...row('上行速率', 'Upstream', shown.upstream_kbps === null ? '—' : `${shown.upstream_kbps} kbit/s`),
    );
    results.hidden = false;
    verdictText.replaceChildren(bi(...(VERDICTS[shown.verdict] || VERDICTS.failed)));
    verdictText.dataset.verdict = shown.verdict;
    verdictText.hidden = false;
    box.dataset.verdict = shown.verdict;
    if (shown.reasons.length) {
      alertBox.replaceChildren(el('ul', { className: 'precall-reasons' },
        ...shown.reasons.map((r) => el('li', { dataset: { code: r.code } }, bi(r.zh, r.en)))));
      alertBox.classList.toggle('info', shown.verdict !== 'failed');
      alertBox.hidden = false;
    } else {
      clearAlert(alertBox);
    }
    if (!shown.fresh) {
      showAlert(alertBox, { zh: '上次检测已过期，请重新检测。', en: 'The last check is too old; please check again.' }, { kind: 'info' });
    }
    startBtn.replaceChildren(bi('重新检测', 'Try again'));
    onChange(shown);
  }

  function say(zh, en) {
    progress.replaceChildren(el('span', { className: 'spinner', 'aria-hidden': 'true' }), bi(zh, en));
    progress.hidden = false;
  }

  /** The test connection: resolves with the node's result message, or null. */
  async function probe(info, videoTrack) {
    const pc = new RTCPeerConnection({ iceServers: info.ice_servers, bundlePolicy: 'max-bundle' });
    running = { pc, timers: [] };
    const current = running;
    const channel = pc.createDataChannel('probe');
    if (videoTrack) pc.addTransceiver(videoTrack, { direction: 'sendonly' });
    const result = new Promise((resolve) => {
      channel.onmessage = (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        if (data.type === 'ping') channel.send(JSON.stringify({ type: 'pong', seq: data.seq }));
        else if (data.type === 'result') resolve(data);
      };
      channel.onopen = () => {
        say('正在测试网络速度…', 'Measuring the network…');
        const filler = new ArrayBuffer(FILL_CHUNK);
        current.timers.push(setInterval(() => {
          if (channel.readyState === 'open' && channel.bufferedAmount < FILL_BUFFER) channel.send(filler);
        }, FILL_EVERY_MS));
      };
      const limit = (info.connect_seconds + info.seconds + 3) * 1000;
      current.timers.push(setTimeout(() => resolve(null), limit));
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    const answer = await ctx.api.post('/application/network-check/probe', { sdp: pc.localDescription.sdp });
    say('正在连接视频服务器…', 'Connecting to the video server…');
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    const message = await result;
    const stats = await pathStats(pc);
    return { message, stats };
  }

  async function run() {
    clearAlert(alertBox);
    stopProbe();
    stopDevices();
    results.hidden = true;
    verdictText.hidden = true;
    onChange(null);
    say('正在打开摄像头和麦克风…', 'Opening the camera and microphone…');
    stream = await openDevices();
    const videoTrack = stream && stream.getVideoTracks()[0];
    const audioTrack = stream && stream.getAudioTracks()[0];
    let cameraOk = false;
    if (videoTrack) {
      video.srcObject = new MediaStream([videoTrack]);
      try {
        await video.play();
        cameraOk = true;
        placeholder.hidden = true;
      } catch {
        cameraOk = false;
      }
    }
    const microphoneOk = Boolean(audioTrack && audioTrack.readyState === 'live');
    if (audioTrack) startMeter(audioTrack);
    const problems = [];
    if (!cameraOk) problems.push(DEVICE_PROBLEMS.camera);
    if (!microphoneOk) problems.push(DEVICE_PROBLEMS.microphone);
    let token = null;
    let client = {};
    try {
      const info = await ctx.api.get('/application/network-check');
      required = info.required;
      const { message, stats } = await probe(info, cameraOk ? videoTrack : null);
      client = stats;
      if (message) token = message.token;
      else client.error = 'no_result';
    } catch (err) {
      stopProbe();
      progress.hidden = true;
      // The node refused (busy, too many tries, not this step): nothing to store.
      if (err && err.status) {
        showAlert(alertBox, err);
        startBtn.replaceChildren(bi('重新检测', 'Try again'));
        return;
      }
      client.error = 'connect_failed';
    } finally {
      stopProbe();
    }
    say('正在保存检测结果…', 'Saving the result…');
    try {
      const body = await ctx.api.post('/application/network-check', {
        token, camera_ok: cameraOk, microphone_ok: microphoneOk, client,
      });
      render(body.check);
    } catch (err) {
      progress.hidden = true;
      showAlert(alertBox, err);
    }
    // The level keeps moving a little longer, then the devices are released for the call.
    setTimeout(() => { if (!running) stopDevices(); }, 3000);
    $('#h-precall').focus();
  }

  startBtn.addEventListener('click', () => busy(startBtn, run));

  return {
    /** Show the stored check (a reload keeps it) or invite a new one. */
    async enter() {
      if (!callSupported()) {
        unsupported = true;
        startBtn.disabled = true;
        box.dataset.verdict = 'failed';
        showAlert(alertBox, NO_WEBRTC);
        onChange(null);
        try {
          // Stored, so that the server refuses the join too and staff can see why.
          const body = await ctx.api.post('/application/network-check', {
            token: null, camera_ok: false, microphone_ok: false, client: { error: 'no_webrtc' },
          });
          render(body.check);
          verdictText.replaceChildren(bi('此浏览器无法进行视频见证，请按下面的提示换用浏览器。',
            'This browser cannot make the video call; change browsers as described below.'));
        } catch {
          // The message above stays.
        }
        startBtn.disabled = true;
        return;
      }
      const info = await ctx.api.get('/application/network-check');
      required = info.required;
      if (info.check) {
        render(info.check);
      } else {
        render(null);
        startBtn.replaceChildren(bi('开始检测', 'Start the check'));
      }
    },
    leave() {
      stopProbe();
      stopDevices();
    },
    get mayJoin() {
      if (unsupported) return false;
      return Boolean(check && check.may_join) || (!required && !(check && check.verdict === 'failed'));
    },
  };
}
