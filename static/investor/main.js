// Intake step controller: signs the investor in, shows one step at a time and moves
// to where the server says the application stands (application.next_step).

import { Api } from '../js/api.js';
import { $, $$, el } from '../js/dom.js';
import { bi, initLang, onLangChange, t } from '../js/i18n.js';
import { setupCheck } from './check.js';
import { deviceId } from './device.js';
import { setupDisclosure } from './disclosure.js';
import { setupIdentity } from './identity.js';
import { setupImages } from './images.js';
import { setupOneway } from './oneway.js';
import { setupPhone } from './phone.js';
import { setupQueue } from './queue.js';
import { isService } from './service.js';
import { initTextSize } from './textsize.js';
import { setupSuitability } from './suitability.js';
import { busy, clearAlert, showAlert } from './ui.js';

export const API_BASE = '/api/v1/investor';

const OPEN_STEPS = ['phone', 'identity', 'id_images', 'frontal_photo', 'suitability', 'disclosure', 'check'];
// A holder's service (A20–A22) has no suitability or disclosure (server/domain/intake.py).
const SERVICE_STEPS = ['phone', 'identity', 'id_images', 'frontal_photo', 'check'];
let STEPS = OPEN_STEPS;
const TITLES = {
  phone: ['手机验证', 'Phone'],
  identity: ['身份信息', 'Identity'],
  id_images: ['证件照片', 'ID photos'],
  frontal_photo: ['正面照', 'Face photo'],
  suitability: ['适当性评估', 'Suitability'],
  disclosure: ['风险揭示', 'Risk disclosure'],
  check: ['身份核验', 'Verification'],
};
// application.next_step -> the section that handles it.
const SECTION_OF = {
  identity: 'identity',
  id_images: 'id_images',
  frontal_photo: 'frontal_photo',
  suitability: 'suitability',
  disclosure: 'disclosure',
  check: 'check',
  ready: 'check',
  identity_failed: 'check',
  beyond: 'check',
};
// Application states handled by the queue section rather than a numbered step.
const QUEUE_STATES = new Set(['queued', 'witnessing', 'witnessed', 'witness_failed', 'in_review',
  'approved', 'callback_confirmed', 'account_opened', 'active', 'review_rejected', 'callback_failed',
  'completed', 'service_refused']);

const root = $('#intake');
const api = new Api(API_BASE);
api.setHeader('X-Device-Id', deviceId()); // A23 shared_device; advisory, hashed by the server
const globalAlert = $('#global-alert');
const notice = $('#notice');
let current = null;
let optionsPromise = null;

const ctx = {
  api,
  app: null,
  signedIn: false,
  config: {
    otpLength: Number(root.dataset.otpLength) || 6,
    imageMaxBytes: Number(root.dataset.imageMaxBytes) || 8 * 1024 * 1024,
  },
  setApp,
  go,
  resume,
  next: () => next(),
  signIn,
  notify,
  options,
  isDraft: () => Boolean(ctx.app && ctx.app.state === 'draft'),
  setBusiness,
};

const steps = {
  phone: setupPhone(ctx),
  identity: setupIdentity(ctx),
  id_images: setupImages(ctx, 'id_images'),
  frontal_photo: setupImages(ctx, 'frontal_photo'),
  suitability: setupSuitability(ctx),
  disclosure: setupDisclosure(ctx),
  check: setupCheck(ctx),
  queue: setupQueue(ctx),
  oneway: setupOneway(ctx), // A18: recorded alone, reviewed by a witness later
};

/** GET /options once (document types, occupations). */
function options() {
  if (!optionsPromise) {
    optionsPromise = api.get('/options').catch((err) => {
      optionsPromise = null;
      throw err;
    });
  }
  return optionsPromise;
}

function notify(zh, en) {
  notice.replaceChildren(el('p', {}, bi(zh, en)));
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { notice.hidden = true; }, 6000);
}

/** An opening or a holder's service: the steps, and what the page says (.for-open /
 * .for-service in investor.css). Before sign-in the phone step's choice decides. */
function setBusiness(businessType, method = 'witnessed') {
  const service = Boolean(businessType) && businessType !== 'open';
  STEPS = service ? SERVICE_STEPS : OPEN_STEPS;
  document.documentElement.dataset.business = service ? 'service' : 'open';
  document.documentElement.dataset.method = service ? method : 'witnessed';
  renderProgress();
}

function setApp(app) {
  ctx.app = app;
  if (app) setBusiness(app.business_type || 'open', app.method || 'witnessed');
  else renderProgress();
}

function renderProgress() {
  const index = STEPS.indexOf(current);
  const done = new Set(ctx.app ? ctx.app.completed : []);
  if (ctx.signedIn) done.add('phone');
  if (ctx.app && ['ready', 'beyond'].includes(ctx.app.next_step)) done.add('check');
  if (current === 'queue' || current === 'oneway') done.add('check');
  for (const li of $$('#progress-steps li')) {
    const step = li.dataset.step;
    const position = STEPS.indexOf(step);
    if (position < 0) continue; // not a step of this business (hidden by investor.css)
    $('.dot', li).textContent = String(position + 1);
    li.classList.toggle('is-done', done.has(step));
    li.classList.toggle('is-current', position === index);
    if (position === index) li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
    const [zh, en] = TITLES[step];
    const state = done.has(step) ? t('已完成', 'done') : '';
    li.setAttribute('aria-label', `${position + 1} ${t(zh, en)} ${state}`.trim());
  }
  const label = $('#progress-label');
  if (current === 'oneway') {
    label.replaceChildren(bi('资料已全部提交 · 单向视频见证', 'All steps done · One-way video'));
    return;
  }
  if (current === 'queue') {
    const online = ctx.app && isService(ctx.app) && ctx.app.method === 'online';
    label.replaceChildren(online ? bi('资料已全部提交 · 网上办理', 'All steps done · Online')
      : bi('资料已全部提交 · 视频见证', 'All steps done · Video witnessing'));
    return;
  }
  if (index < 0) {
    label.replaceChildren();
    return;
  }
  const [zh, en] = TITLES[current];
  label.replaceChildren(bi(`第 ${index + 1} 步 / 共 ${STEPS.length} 步 · ${zh}`,
    `Step ${index + 1} of ${STEPS.length} · ${en}`));
}

/** Show one step; its module's enter() fills it. Focus goes to the step's heading. */
async function go(step, opts = {}) {
  if (current && current !== step && steps[current].leave) steps[current].leave();
  current = step;
  clearAlert(globalAlert);
  notice.hidden = true;
  $('#step-loading').hidden = true;
  for (const section of $$('#intake > section[data-step]')) {
    section.hidden = section.dataset.step !== step;
  }
  // Going back to change data is possible only while the application is a draft.
  for (const button of $$('[data-back]')) button.hidden = !ctx.isDraft();
  $('#logout').hidden = !ctx.signedIn;
  renderProgress();
  window.scrollTo({ top: 0 });
  const heading = $(`#h-${step}`);
  try {
    await steps[step].enter(opts);
  } catch (err) {
    if (current !== step || err.status === 401) return; // signed out meanwhile: phone step shows why
    showAlert(globalAlert, err);
    const retry = el('button', { type: 'button', className: 'btn secondary' }, bi('重试', 'Try again'));
    retry.addEventListener('click', () => go(step, opts));
    globalAlert.append(retry);
  }
  if (current === step) heading.focus();
}

/** Go where the application stands. */
function resume(app, opts = {}) {
  setApp(app);
  if (app.state === 'one_way_recorded') return go('oneway', opts); // A18: awaiting the witness's review
  if (QUEUE_STATES.has(app.state)) return go('queue', opts);
  return go(SECTION_OF[app.next_step] || 'identity', opts);
}

async function signIn(body) {
  api.setCsrf(body.csrf_token);
  ctx.signedIn = true;
  await resume(body.application);
  if (body.resumed) {
    if (isService(body.application)) {
      notify('欢迎回来，已为您恢复上次的办理进度。', 'Welcome back: your request continues where you left off.');
    } else {
      notify('欢迎回来，已为您恢复上次的开户进度。', 'Welcome back: your application continues where you left off.');
    }
  }
}

function signedOut() {
  ctx.signedIn = false;
  ctx.app = null;
  api.setCsrf('');
}

api.onUnauthorized = (err) => {
  if (!ctx.signedIn) return;
  signedOut();
  go('phone').then(() => showAlert($('#phone-alert'), err));
};

$('#logout').addEventListener('click', (event) => busy(event.currentTarget, async () => {
  try {
    await api.del('/session');
  } catch (err) {
    if (err.status !== 401) {
      showAlert(globalAlert, err);
      return;
    }
  }
  signedOut();
  await go('phone');
  notify('您已退出登录。用同一手机号登录可继续办理。', 'You are signed out. Sign in with the same number to continue.');
}));

/** The following step in order (steps can be revisited while the application is a draft). */
function next() {
  const index = STEPS.indexOf(current);
  return go(STEPS[Math.min(index + 1, STEPS.length - 1)]);
}

// Back / next buttons inside the steps.
root.addEventListener('click', (event) => {
  if (!current || !event.target.closest) return;
  const index = STEPS.indexOf(current);
  const back = event.target.closest('[data-back]');
  if (back && index > 1) go(STEPS[index - 1]);
  const forward = event.target.closest('[data-next]');
  if (forward && !forward.disabled) next();
});

onLangChange(() => {
  renderProgress();
  document.title = `${t('网上开户', 'Open an account')} · ${document.title.split(' · ').pop()}`;
});

async function boot() {
  try {
    const body = await api.get('/application');
    api.setCsrf(body.csrf_token);
    ctx.signedIn = true;
    await resume(body.application);
  } catch (err) {
    if (err.status === 401) {
      await go('phone');
      return;
    }
    $('#step-loading').hidden = true;
    const retry = el('button', { type: 'button', className: 'btn secondary' },
      bi('重试', 'Try again'));
    retry.addEventListener('click', () => {
      clearAlert(globalAlert);
      $('#step-loading').hidden = false;
      boot();
    });
    showAlert(globalAlert, err);
    globalAlert.append(retry);
  }
}

initLang();
initTextSize();
boot();
