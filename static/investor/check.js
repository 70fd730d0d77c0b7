// Step 7: summary, submission and the identity registry check (A13, A17.2).

import { $, $$, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { NATIONALITIES } from './idnumber.js';
import { setupOnewayChoice } from './oneway.js';
import { NO_WEBRTC, callSupported, setupPrecall } from './precall.js';
import { isService, showService } from './service.js';
import { busy, clearAlert, clearFieldErrors, showAlert, showFieldError } from './ui.js';

const EARLIER = [
  ['identity', '身份信息', 'identity'],
  ['id_images', '证件照片', 'ID photos'],
  ['frontal_photo', '正面照', 'face photo'],
  ['suitability', '适当性评估', 'suitability assessment'],
  ['disclosure', '风险揭示', 'risk disclosure'],
];
const STATES = {
  queued: ['正在排队等待视频见证。', 'You are in the queue for video witnessing.'],
  witnessing: ['视频见证进行中。', 'Video witnessing is in progress.'],
  witnessed: ['视频见证已完成，资料正在复核。', 'Witnessing is done; your application is being reviewed.'],
  in_review: ['资料正在复核。', 'Your application is being reviewed.'],
  approved: ['复核已通过，等待回访或开户。', 'Approved; awaiting the callback or account opening.'],
  one_way_recorded: ['录制已提交，等待见证人员审核。', 'Recording submitted; a witness will review it.'],
  callback_confirmed: ['回访已确认，正在开立账户。', 'Callback confirmed; your account is being opened.'],
  account_opened: ['账户已开立，回访确认后即可使用。', 'Your account is opened and will be usable after the callback.'],
  active: ['账户已开立并可以使用。', 'Your account is open and ready to use.'],
  // A3 screening: neutral words only; never say why (no list, no match).
  screening_hold: ['您的申请需要进一步审核，我们会尽快与您联系。',
    'Your application needs further checks. We will contact you soon.'],
  approval_hold: ['您的申请需要进一步审核，我们会尽快与您联系。',
    'Your application needs further checks. We will contact you soon.'],
  screening_refused: ['很抱歉，我们暂时无法受理您的开户申请。如有疑问，请联系客服。',
    'We are sorry, we cannot proceed with your application. Please contact customer service.'],
};
// A holder's service (A20–A22) words some states differently.
const SERVICE_STATES = {
  ...STATES,
  approved: ['复核已通过，等待回访或办理。', 'Approved; awaiting the callback or the account system.'],
  callback_confirmed: ['回访已确认，正在办理。', 'Callback confirmed; your request is being carried out.'],
  completed: ['业务已办理。', 'Your request has been carried out.'],
  service_refused: ['账户系统未能办理您的业务。', 'The account system could not carry out your request.'],
  screening_refused: ['很抱歉，我们暂时无法受理您的申请。如有疑问，请联系客服。',
    'We are sorry, we cannot proceed with your request. Please contact customer service.'],
};
const DOCS = [
  ['id_front', '人像面', 'Photo side'],
  ['id_back', '国徽面', 'Emblem side'],
  ['frontal_photo', '正面照', 'Face photo'],
];
const BUSY_REGISTRY = {
  zh: '核验服务繁忙，请稍后重试。本次核验请求已记录。',
  en: 'The identity check service is busy. Please try again shortly; this attempt has been recorded.',
};

export function setupCheck(ctx) {
  const review = $('#check-review');
  const verified = $('#check-verified');
  const failed = $('#check-failed');
  const status = $('#check-status');
  const alertBox = $('#check-alert');
  const submitBtn = $('#check-submit');
  const joinBtn = $('#join-queue');
  const online = $('#check-online');
  let options = null;
  const oneway = setupOnewayChoice(ctx); // A18: one-way beside the two-way queue
  // Issue 16: joining waits for a check that did not fail (weak joins with its warning).
  const precall = setupPrecall(ctx, {
    onChange() {
      joinBtn.disabled = !precall.mayJoin;
    },
  });

  async function summary(app) {
    const id = app.identity || {};
    try {
      options = options || await ctx.options();
    } catch {
      options = null; // labels fall back to the stored codes
    }
    const docType = options && options.document_types.find((d) => d.id === id.document_type);
    const job = options && options.occupations.find((o) => o.id === id.occupation);
    const nation = NATIONALITIES[id.nationality];
    const ack = app.disclosure && app.disclosure.acknowledged_at;
    const service = isService(app);
    const rows = [
      ['姓名', 'Name', id.name],
      ['证件类型', 'Document', docType ? bi(docType.zh, docType.en) : id.document_type],
      ['证件号码', 'Number', id.id_number_masked],
      ['性别', 'Sex', id.sex === 'M' ? bi('男', 'Male') : id.sex === 'F' ? bi('女', 'Female') : ''],
      ['出生日期', 'Date of birth', id.birth_date],
      ['有效期', 'Valid', id.valid_until ? `${id.valid_from} – ${id.valid_until}`
        : bi(`${id.valid_from} 起长期`, `${id.valid_from}, long-term`)],
      ['国籍/地区', 'Nationality', nation ? bi(nation[0], nation[1]) : id.nationality],
      ['联系地址', 'Address', id.address],
      ['职业', 'Occupation', job ? bi(job.zh, job.en) : id.occupation],
      ['电子邮箱', 'Email', id.email || '—'],
      ...(service ? [] : [
        ['风险等级', 'Risk level', app.suitability ? app.suitability.level : '—'],
        ['风险揭示', 'Disclosure', ack ? bi('已阅读并确认', 'Read and confirmed') : '—'],
      ]),
    ];
    showService($('#check-service'), app);
    $('#check-summary').replaceChildren(...rows.flatMap(([zh, en, value]) => [
      el('dt', {}, bi(zh, en)), el('dd', {}, value ?? ''),
    ]));
    $('#check-thumbs').replaceChildren(...DOCS.filter(([kind]) => app.documents[kind]).map(
      ([kind, zh, en]) => el('figure', {},
        el('img', {
          src: `${ctx.api.base}/application/documents/${kind}?v=${app.documents[kind].sha256.slice(0, 16)}`,
          alt: '',
        }),
        el('figcaption', {}, bi(zh, en))),
    ));
  }

  function show(panel) {
    for (const p of [review, verified, online, failed, status]) p.hidden = p !== panel;
  }

  async function render() {
    const app = ctx.app;
    clearAlert(alertBox);
    if (app.state === 'identity_verified' && isService(app) && app.method === 'online') {
      // A22: accounts opened online may be served online: a confirmation, no call.
      clearAlert($('#online-alert'));
      clearFieldErrors(online);
      showService($('#online-service'), app);
      $('#online-confirm').checked = false;
      $('#online-confirm-text').replaceChildren(bi(
        `我确认办理“${app.service.label_zh}”，涉及上述账户，并已了解办理后的后果。`,
        `I confirm I want to “${app.service.label_en.toLowerCase()}” for the accounts above and understand the consequences.`,
      ));
      show(online);
      return online;
    }
    if (app.state === 'identity_verified') {
      clearAlert($('#join-alert'));
      showService($('#verified-service'), app);
      const check = app.identity_check;
      $('#check-reference').replaceChildren(check && check.reference
        ? bi(`核验编号：${check.reference}`, `Check reference: ${check.reference}`) : '');
      show(verified);
      joinBtn.disabled = true;
      await Promise.all([oneway.render(), precall.enter()]);
      joinBtn.disabled = !precall.mayJoin;
      return verified;
    }
    if (app.state === 'identity_failed') {
      clearAlert($('#correct-alert'));
      show(failed);
      return failed;
    }
    if (app.state !== 'draft' && app.state !== 'submitted') {
      const text = (isService(app) ? SERVICE_STATES : STATES)[app.state]
        || [`当前状态：${app.state}`, `Current state: ${app.state}`];
      $('#check-status-text').replaceChildren(bi(...text));
      show(status);
      return status;
    }
    show(review);
    await summary(app);
    for (const b of $$('[data-back]', review)) b.hidden = app.state !== 'draft';
    const done = new Set(app.completed);
    const skipped = isService(app) ? ['suitability', 'disclosure'] : [];
    const missing = EARLIER.filter(([step]) => !done.has(step) && !skipped.includes(step));
    submitBtn.disabled = missing.length > 0;
    if (missing.length) {
      showAlert(alertBox, {
        zh: `请先完成：${missing.map((m) => m[1]).join('、')}。`,
        en: `Please complete first: ${missing.map((m) => m[2]).join(', ')}.`,
      });
    }
    if (app.state === 'submitted') {
      submitBtn.replaceChildren(bi('重新核验', 'Check again'));
      if (app.identity_check && app.identity_check.result === 'unavailable') {
        showAlert(alertBox, BUSY_REGISTRY);
      }
    } else {
      submitBtn.replaceChildren(bi('提交并核验身份', 'Submit and verify identity'));
    }
    return review;
  }

  function focusResult(panel) {
    const heading = $('h3', panel) || $('#h-check');
    heading.tabIndex = -1;
    heading.focus();
  }

  async function refresh() {
    try {
      const body = await ctx.api.get('/application');
      ctx.setApp(body.application);
    } catch {
      // The error that brought us here is already shown.
    }
  }

  async function submit() {
    clearAlert(alertBox);
    const note = $('#check-busy');
    note.hidden = false;
    try {
      const body = await ctx.api.post('/application/submit', {}, { timeoutMs: 60000 });
      ctx.setApp(body.application);
      focusResult(await render());
    } catch (err) {
      if (err.code === 'identity_registry_unavailable') {
        await refresh();
        await render();
        showAlert(alertBox, BUSY_REGISTRY);
      } else {
        if (err.status !== 401) await refresh();
        if (ctx.app) await render();
        showAlert(alertBox, err);
      }
      alertBox.scrollIntoView({ block: 'center' });
    } finally {
      note.hidden = true;
    }
  }

  async function correct() {
    const box = $('#correct-alert');
    clearAlert(box);
    try {
      const body = await ctx.api.post('/application/correct');
      ctx.setApp(body.application);
      await ctx.go('identity', {
        edit: true,
        problem: {
          zh: '请对照证件核对姓名和证件号码，修改后保存，再重新提交核验。',
          en: 'Compare your name and document number with your document, save, then submit again.',
        },
      });
    } catch (err) {
      showAlert(box, err);
    }
  }

  /** POST /application/queue (A17.2: identity verified first), then the waiting panel. */
  async function joinQueue() {
    const box = $('#join-alert');
    clearAlert(box);
    if (!callSupported()) {
      showAlert(box, NO_WEBRTC);
      joinBtn.disabled = true;
      return;
    }
    let status;
    try {
      status = await ctx.api.post('/application/queue');
    } catch (err) {
      if (err.status === 401) return;
      if (err.code === 'network_check_required' || err.code === 'network_check_failed') {
        showAlert(box, err);
        await precall.enter();
        joinBtn.disabled = !precall.mayJoin;
        return;
      }
      if (err.status === 409) {
        // Already queued (another tab) or no longer verified: go where the server says.
        await refresh();
        if (ctx.app && ctx.app.state !== 'identity_verified') {
          await ctx.resume(ctx.app);
          return;
        }
      }
      showAlert(box, err);
      return;
    }
    precall.leave(); // the call opens the camera again
    await refresh(); // state: queued
    await ctx.go('queue', { status });
  }

  /** POST /application/online-confirmation, then where the application stands. */
  async function confirmOnline() {
    const box = $('#online-alert');
    clearAlert(box);
    clearFieldErrors(online);
    if (!$('#online-confirm').checked) {
      showFieldError(online, 'confirm', {
        zh: '请勾选确认后再提交。', en: 'Tick the box to confirm first.',
      });
      $('#online-confirm').focus();
      return;
    }
    let body;
    try {
      body = await ctx.api.post('/application/online-confirmation', { confirm: true }, { timeoutMs: 60000 });
    } catch (err) {
      if (err.status === 401) return;
      if (err.status === 409) {
        await refresh();
        if (ctx.app && ctx.app.state !== 'identity_verified') {
          await ctx.resume(ctx.app);
          return;
        }
      }
      showAlert(box, err);
      return;
    }
    await ctx.resume(body.application);
  }

  submitBtn.addEventListener('click', () => busy(submitBtn, submit));
  $('#online-submit').addEventListener('click', (e) => busy(e.currentTarget, confirmOnline));
  $('#join-queue').addEventListener('click', (e) => busy(e.currentTarget, joinQueue));
  $('#check-correct').addEventListener('click', (e) => busy(e.currentTarget, correct));

  return {
    async enter() {
      await render();
    },
    leave() {
      precall.leave();
    },
  };
}
