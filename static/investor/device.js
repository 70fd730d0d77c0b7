// A random device id for risk monitoring (A23, the shared_device rule): made once per
// browser with crypto.randomUUID() and kept in localStorage; where storage is unavailable
// (private mode, blocked), one per tab. Sent as X-Device-Id; the server keeps only a keyed
// hash of it. It identifies nothing about the person or the hardware.

const KEY = 'witness.investor.device_id';
const VALID = /^[A-Za-z0-9-]{8,64}$/;

function fresh() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

let perTab = null;

export function deviceId() {
  try {
    const kept = localStorage.getItem(KEY);
    if (kept && VALID.test(kept)) return kept;
    const made = fresh();
    localStorage.setItem(KEY, made);
    return made;
  } catch {
    if (!perTab) perTab = fresh();
    return perTab;
  }
}
