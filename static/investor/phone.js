// Step 1: phone number + SMS one-time code -> investor session (POST /otp, POST /session).

import { $, $$, el } from '../js/dom.js';
import { onLangChange, t } from '../js/i18n.js';
import {
  busy, clearAlert, clearFieldErrors, focusControl, showAlert, showFieldError,
} from './ui.js';

export function setupPhone(ctx) {
  const form = $('#phone-form');
  const phone = $('#phone');
  const code = $('#code');
  const send = $('#otp-send');
  const alertBox = $('#phone-alert');
  const sandbox = $('#sandbox-otp');
  let sending = false;
  let resendAt = 0; // ms timestamp before which no new code can be asked for
  let timer = null;
  const business = $('#business');
  const methodBox = $('#method');
  let services = []; // GET /options: [{id, zh, en, methods}]

  // ── A20–A22: which business (an opening, or a holder's service) and by which method ──
  function chosenMethod() {
    const service = services.find((s) => s.id === business.value);
    const methods = service ? service.methods : ['witnessed'];
    if (methods.length === 1) return methods[0];
    const radio = $('input[name=method]:checked', methodBox);
    return radio && methods.includes(radio.value) ? radio.value : methods[0];
  }

  function renderBusiness() {
    const service = services.find((s) => s.id === business.value);
    const methods = service ? service.methods : ['witnessed'];
    methodBox.hidden = business.value === 'open' || methods.length < 2;
    for (const radio of $$('input[name=method]', methodBox)) {
      radio.closest('label').hidden = !methods.includes(radio.value);
    }
    if (!ctx.signedIn) ctx.setBusiness(business.value, chosenMethod());
  }

  async function loadServices() {
    if (services.length) return;
    let options;
    try {
      options = await ctx.options();
    } catch {
      return; // an opening still works without the list
    }
    services = options.services || [];
    const others = services.filter((s) => s.id !== 'open');
    if (!others.length) return;
    const open = services.find((s) => s.id === 'open');
    const keep = business.value;
    business.replaceChildren(
      ...(open || !services.length ? [el('option', { value: 'open', dataset: { zh: '开立证券账户', en: 'Open an account' } },
        t('开立证券账户', 'Open an account'))] : []),
      ...others.map((s) => el('option', { value: s.id, dataset: { zh: s.zh, en: s.en } }, t(s.zh, s.en))),
    );
    if (services.some((s) => s.id === keep)) business.value = keep;
    $('#business-choice').hidden = false;
    renderBusiness();
  }

  business.addEventListener('change', () => {
    clearFieldErrors(form);
    renderBusiness();
  });
  methodBox.addEventListener('change', renderBusiness);

  function renderSend() {
    const left = Math.ceil((resendAt - Date.now()) / 1000);
    if (sending) {
      send.textContent = t('发送中…', 'Sending…');
    } else if (left > 90) {
      const minutes = Math.ceil(left / 60);
      send.textContent = t(`${minutes}分钟后重新获取`, `Resend in ${minutes} min`);
    } else if (left > 0) {
      send.textContent = t(`${left}秒后重新获取`, `Resend in ${left} s`);
    } else {
      send.textContent = resendAt ? t('重新获取', 'Send again') : t('获取验证码', 'Send code');
    }
    send.disabled = sending || left > 0;
    if (left <= 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  function waitBeforeResend(seconds) {
    resendAt = Date.now() + Math.max(0, Number(seconds) || 0) * 1000;
    if (!timer) timer = setInterval(renderSend, 500);
    renderSend();
  }

  function problem(err) {
    if (err.code === 'service_not_offered') {
      focusControl(showFieldError(form, 'business', err));
      return;
    }
    const field = err.details && err.details.field;
    const control = field ? showFieldError(form, field, err) : null;
    if (control) focusControl(control);
    else showAlert(alertBox, err);
  }

  async function requestCode() {
    clearFieldErrors(form);
    clearAlert(alertBox);
    if (!phone.value.trim()) {
      focusControl(showFieldError(form, 'phone', {
        zh: '请输入手机号码。', en: 'Enter your mobile number.',
      }));
      return;
    }
    sending = true;
    renderSend();
    try {
      const sent = await ctx.api.post('/otp', { phone: phone.value.trim() });
      waitBeforeResend(sent.resend_after);
      if (sandbox && sent.sandbox_code) {
        $('#sandbox-otp-code').textContent = sent.sandbox_code;
        sandbox.hidden = false;
      } else {
        ctx.notify('验证码已发送，请查收短信。', 'The code has been sent by text message.');
      }
      code.focus();
    } catch (err) {
      if (err.details.retry_after) waitBeforeResend(err.details.retry_after);
      problem(err);
    } finally {
      sending = false;
      renderSend();
    }
  }

  async function verify() {
    clearFieldErrors(form);
    clearAlert(alertBox);
    const digits = code.value.replace(/\s+/g, '');
    const length = ctx.config.otpLength;
    if (!phone.value.trim()) {
      focusControl(showFieldError(form, 'phone', {
        zh: '请输入手机号码。', en: 'Enter your mobile number.',
      }));
      return;
    }
    if (!new RegExp(`^[0-9]{${length}}$`).test(digits)) {
      focusControl(showFieldError(form, 'code', {
        zh: `请输入短信中的${length}位验证码。`,
        en: `Enter the ${length}-digit code from the text message.`,
      }));
      return;
    }
    try {
      const body = await ctx.api.post('/session', {
        phone: phone.value.trim(),
        code: digits,
        business_type: business.value || 'open',
        method: chosenMethod(),
      });
      code.value = '';
      await ctx.signIn(body);
    } catch (err) {
      problem(err);
    }
  }

  send.addEventListener('click', () => requestCode());
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#phone-submit'), verify);
  });
  // Only digits belong in the code field (IMEs may insert full-width digits).
  code.addEventListener('input', () => {
    const cleaned = code.value.replace(/[０-９]/g, (d) => String(d.charCodeAt(0) - 0xff10))
      .replace(/[^0-9]/g, '');
    if (cleaned !== code.value) code.value = cleaned;
  });
  document.addEventListener('visibilitychange', renderSend);
  onLangChange(renderSend);
  renderSend();

  return {
    async enter() {
      clearFieldErrors(form);
      clearAlert(alertBox);
      renderSend();
      await loadServices();
      renderBusiness();
    },
  };
}
