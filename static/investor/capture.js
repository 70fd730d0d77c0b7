// Full-screen camera overlay: live preview with a guide frame, capture, review, use.
// takePhoto() resolves with a JPEG Blob, or null if the investor closes it.

import { Camera } from '../js/camera.js';
import { $, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { clearAlert, showAlert } from './ui.js';

const overlay = $('#camera');
const video = $('#camera-video');
const still = $('#camera-still');
const shoot = $('#camera-shoot');
const retake = $('#camera-retake');
const use = $('#camera-use');
const errorBox = $('#camera-error');
const camera = new Camera(video);

let session = null; // { resolve, blob, url, facing, opener }

// The preview shows the whole frame (what you see is what is stored); the guide is
// sized to the picture's visible rectangle, not to the screen.
function fitGuide() {
  const guide = $('#camera-guide');
  const stage = guide.parentElement;
  const vw = video.videoWidth || 4;
  const vh = video.videoHeight || 3;
  const scale = Math.min(stage.clientWidth / vw, stage.clientHeight / vh);
  const w = vw * scale;
  const h = vh * scale;
  let gw;
  let gh;
  if (guide.dataset.shape === 'face') {
    gh = Math.min(h * 0.8, ((w * 0.62) * 4) / 3);
    gw = (gh * 3) / 4;
  } else {
    gw = Math.min(w * 0.86, h * 0.86 * 1.586);
    gh = gw / 1.586;
  }
  guide.style.width = `${Math.round(gw)}px`;
  guide.style.height = `${Math.round(gh)}px`;
}
window.addEventListener('resize', () => {
  if (session) fitGuide();
});

function setMode(mode) {
  // mode: 'starting' | 'live' | 'review' | 'error'
  video.hidden = mode === 'review';
  still.hidden = mode !== 'review';
  shoot.hidden = mode === 'review' || mode === 'error';
  shoot.disabled = mode !== 'live';
  retake.hidden = mode !== 'review' && mode !== 'error';
  use.hidden = mode !== 'review';
  retake.replaceChildren(mode === 'error' ? bi('重试', 'Try again') : bi('重拍', 'Retake'));
  overlay.dataset.mode = mode;
}

function releaseStill() {
  if (session && session.url) URL.revokeObjectURL(session.url);
  if (session) session.url = null;
  still.removeAttribute('src');
}

async function startLive() {
  releaseStill();
  clearAlert(errorBox);
  setMode('starting');
  try {
    await camera.start(session.facing);
    if (!session) {
      camera.stop();
      return;
    }
    setMode('live');
    fitGuide();
    shoot.focus();
  } catch (err) {
    if (!session) return;
    setMode('error');
    showAlert(errorBox, err);
    if (session.fallback) {
      errorBox.append(el('p', {}, bi(...session.fallback)));
    }
    retake.focus();
  }
}

function close(result) {
  if (!session) return;
  const { resolve, opener } = session;
  camera.stop();
  releaseStill();
  session = null;
  overlay.hidden = true;
  for (const node of document.querySelectorAll('[data-camera-inert]')) {
    node.inert = false;
    node.removeAttribute('data-camera-inert');
  }
  document.documentElement.classList.remove('camera-open');
  if (opener && opener.isConnected) opener.focus();
  resolve(result);
}

shoot.addEventListener('click', async () => {
  if (!session) return;
  shoot.disabled = true;
  try {
    const blob = await camera.capture();
    if (!session) return;
    camera.stop();
    session.blob = blob;
    session.url = URL.createObjectURL(blob);
    still.src = session.url;
    setMode('review');
    use.focus();
  } catch (err) {
    showAlert(errorBox, err);
    shoot.disabled = false;
  }
});
retake.addEventListener('click', () => startLive());
use.addEventListener('click', () => close(session ? session.blob : null));
$('#camera-close').addEventListener('click', () => close(null));
overlay.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') close(null);
});
// A phone call or app switch takes the camera away; stop cleanly rather than freeze.
document.addEventListener('visibilitychange', () => {
  if (document.hidden && session && overlay.dataset.mode === 'live') {
    camera.stop();
    setMode('error');
    showAlert(errorBox, { zh: '拍摄已暂停，请点击“重拍”继续。', en: 'Paused. Tap “Retake” to continue.' });
  }
});

/**
 * Open the camera. facing: 'environment' (documents) or 'user' (face);
 * shape: 'card' or 'face' guide; title/hint: [zh, en]; fallback: [zh, en] shown on errors.
 */
export function takePhoto({ facing, shape, title, hint, fallback = null }) {
  if (session) close(null);
  return new Promise((resolve) => {
    session = { resolve, facing, fallback, blob: null, url: null, opener: document.activeElement };
    $('#camera-title').replaceChildren(bi(...title));
    $('#camera-hint').replaceChildren(bi(...hint));
    $('#camera-guide').dataset.shape = shape;
    overlay.dataset.facing = facing;
    for (const node of [$('#intake'), $('.topbar')]) {
      if (node && !node.inert) {
        node.inert = true;
        node.setAttribute('data-camera-inert', '');
      }
    }
    document.documentElement.classList.add('camera-open');
    overlay.hidden = false;
    startLive();
  });
}

/** Close the overlay if open (e.g. when the step changes). */
export function closeCamera() {
  close(null);
}
