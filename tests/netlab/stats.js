// Added to every lab page before its own scripts (Playwright add_init_script): keeps the
// page's RTCPeerConnections and samples their getStats() every 250 ms into
// window.__lab, so a test reads what the browser itself measured (frames decoded,
// loss, NACK/PLI, the selected candidate pair, the bandwidth estimate). It only
// observes: the connection the page makes is the page's own.
(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig || window.__lab) return;
  const lab = { pcs: [], samples: [], states: [], iceErrors: [] };
  window.__lab = lab;
  function Wrapped(...args) {
    const pc = new Orig(...args);
    const idx = lab.pcs.length;
    lab.pcs.push(pc);
    pc.addEventListener('connectionstatechange', () => {
      lab.states.push({ t: Date.now(), pc: idx, state: pc.connectionState });
    });
    pc.addEventListener('icecandidateerror', (e) => {
      lab.iceErrors.push({ t: Date.now(), pc: idx, url: e.url, code: e.errorCode, text: e.errorText });
    });
    return pc;
  }
  Wrapped.prototype = Orig.prototype;
  Object.setPrototypeOf(Wrapped, Orig);
  window.RTCPeerConnection = Wrapped;

  const pick = (r, keys) => Object.fromEntries(keys.filter((k) => k in r).map((k) => [k, r[k]]));
  const IN = ['framesDecoded', 'framesReceived', 'framesDropped', 'framesPerSecond', 'packetsLost',
    'packetsReceived', 'nackCount', 'pliCount', 'firCount', 'retransmittedPacketsReceived',
    'freezeCount', 'totalFreezesDuration', 'keyFramesDecoded', 'frameWidth', 'bytesReceived'];
  const OUT = ['framesEncoded', 'framesSent', 'bytesSent', 'nackCount', 'pliCount', 'firCount',
    'targetBitrate', 'frameWidth', 'frameHeight', 'framesPerSecond', 'qualityLimitationReason',
    'retransmittedPacketsSent', 'keyFramesEncoded'];
  let busy = false;
  setInterval(async () => {
    const idx = lab.pcs.length - 1;
    const pc = lab.pcs[idx];
    if (!pc || busy || pc.connectionState === 'closed') return;
    busy = true;
    try {
      const report = await pc.getStats();
      const byId = new Map();
      report.forEach((r) => byId.set(r.id, r));
      const sample = { t: Date.now(), pc: idx, state: pc.connectionState, in: null, out: null, pair: null };
      let pairId = null;
      report.forEach((r) => {
        // RTX streams report as inbound-rtp too in some versions: the media one has frames.
        if (r.type === 'inbound-rtp' && r.kind === 'video' && 'framesDecoded' in r) sample.in = pick(r, IN);
        if (r.type === 'outbound-rtp' && r.kind === 'video' && 'framesEncoded' in r) sample.out = pick(r, OUT);
        if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
      });
      const pair = pairId && byId.get(pairId);
      if (pair) {
        const local = byId.get(pair.localCandidateId) || {};
        const remote = byId.get(pair.remoteCandidateId) || {};
        sample.pair = {
          availableOutgoingBitrate: pair.availableOutgoingBitrate,
          rtt: pair.currentRoundTripTime,
          local: pick(local, ['candidateType', 'protocol', 'relayProtocol', 'address', 'port', 'url']),
          remote: pick(remote, ['candidateType', 'protocol', 'address', 'port']),
        };
      }
      lab.samples.push(sample);
      if (lab.samples.length > 4000) lab.samples.splice(0, 1000);
    } catch {
      // closed meanwhile
    } finally {
      busy = false;
    }
  }, 250);
})();
