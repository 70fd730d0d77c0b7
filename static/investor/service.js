// A holder's service (A20–A22) as the investor sees it: the business, the accounts it is
// for (masked), the account system's precheck and, at the end, the outcome per account.
// application.service comes from GET /application (server/services/intake/view.py).

import { el } from '../js/dom.js';
import { bi } from '../js/i18n.js';

const MARKETS = {
  unified: ['一码通账户', 'Unified account'],
  sh: ['沪市证券账户', 'Shanghai account'],
  sz: ['深市证券账户', 'Shenzhen account'],
  bj: ['北交所证券账户', 'Beijing account'],
  sh_a: ['沪市A股账户', 'Shanghai A-share account'],
  sz_a: ['深市A股账户', 'Shenzhen A-share account'],
  sh_fund: ['沪市基金账户', 'Shanghai fund account'],
  sz_fund: ['深市基金账户', 'Shenzhen fund account'],
};
const STATUSES = {
  normal: ['正常', 'normal'],
  active: ['正常', 'active'],
  open: ['正常', 'open'],
  dormant: ['休眠', 'dormant'],
  cancelled: ['已注销', 'cancelled'],
  closed: ['已注销', 'closed'],
  loss_reported: ['已挂失', 'loss reported'],
  frozen: ['冻结', 'frozen'],
  blocked: ['限制使用', 'restricted'],
};
const METHODS = {
  witnessed: ['视频见证', 'by video'],
  online: ['网上办理', 'online'],
};
const DETAIL_NAMES = {
  phone: ['手机号码', 'mobile number'],
  address: ['联系地址', 'address'],
  email: ['电子邮箱', 'email'],
  occupation: ['职业', 'occupation'],
  to_agency: ['转入机构', 'agency to transfer to'],
  action: ['加挂/撤销', 'add or remove'],
};
// After the account system has acted: the status an account is left in, per business.
const DONE_STATUS = {
  cancel: ['已注销', 'cancelled'],
  reactivate: ['已激活', 'reactivated'],
  lift_loss_report: ['已解挂', 'loss report lifted'],
  change_info: ['信息已变更', 'details changed'],
  transfer_relationship: ['已转移', 'transferred'],
  beijing_mark: ['已办理', 'done'],
  query: ['已查询', 'queried'],
};

const pair = (table, key) => (table[key] ? bi(...table[key]) : bi(key || '—', key || '—'));

export function isService(app) {
  return Boolean(app && app.business_type && app.business_type !== 'open');
}

/** 注销证券账户 · 视频见证 */
export function serviceName(service) {
  const frag = document.createDocumentFragment();
  frag.append(bi(service.label_zh, service.label_en));
  if (METHODS[service.method]) frag.append(' · ', bi(...METHODS[service.method]));
  return frag;
}

function accountLine(account, outcome, businessType) {
  // Once acted on, the status the account system listed before is out of date.
  const meta = el('span', { className: 'acct-meta' },
    account.market ? pair(MARKETS, account.market) : '',
    outcome || !account.status ? '' : ' · ', outcome || !account.status ? '' : pair(STATUSES, account.status));
  const li = el('li', { dataset: { account: account.number_masked } },
    el('div', { className: 'acct-line' }, el('span', { className: 'acct-no' }, account.number_masked), meta));
  if (outcome) {
    if (outcome.status === 'done') {
      li.dataset.outcome = 'done';
      li.append(el('p', { className: 'acct-check outcome-done' }, '✓ ',
        bi(...(DONE_STATUS[businessType] || ['已办理', 'done']))));
    } else {
      li.dataset.outcome = outcome.status;
      li.append(el('p', { className: 'acct-check outcome-not' }, '✗ ', bi('未办理：', 'Not done: '),
        bi(outcome.message_zh || '账户系统拒绝了该业务。', outcome.message_en || 'The account system refused the request.')));
    }
    return li;
  }
  const check = account.precheck;
  if (check && check.ok) {
    li.append(el('p', { className: 'acct-check is-ok' }, '✓ ', bi('账户系统预检通过', 'The account system expects no problem')));
  } else if (check) {
    li.dataset.precheck = check.error_code || 'refused';
    li.append(el('p', { className: 'acct-check is-bad' }, '⚠ ', bi('暂不能办理', 'Cannot be done as it stands')));
  }
  return li;
}

/** Accounts the precheck refused, with what to do: shown prominently (role=alert). */
function warning(service) {
  const refused = service.accounts.filter((a) => a.precheck && !a.precheck.ok);
  if (!refused.length) return null;
  return el('div', { className: 'service-warning', role: 'alert', dataset: { precheck: 'refused' } },
    el('h4', {}, '⚠ ', bi('账户系统预检：以下账户目前无法办理', 'Account system check: these accounts cannot be served as they stand')),
    el('ul', {}, ...refused.map((a) => el('li', { dataset: { code: a.precheck.error_code || '' } },
      el('strong', { className: 'acct-no' }, a.number_masked), ' ',
      bi(a.precheck.message_zh || '账户系统拒绝了该业务。', a.precheck.message_en || 'The account system refused the request.')))),
    el('p', {}, bi(
      '请先按上述提示处理后再办理。您也可以继续视频见证，但账户系统届时将拒绝办理这些账户。如有疑问，请致电客服热线。',
      'Please deal with the above first. You may still continue to the video call, but the account system will then refuse these accounts. Questions? Call our hotline.',
    )));
}

/**
 * The service box: name, accounts (masked number, market, status) and the precheck, or
 * once the account system has acted (withOutcomes), what happened to each account.
 */
export function serviceBox(app, { withOutcomes = false } = {}) {
  const service = app && app.service;
  if (!service) return el('div');
  const outcomes = withOutcomes ? service.outcomes || [] : [];
  const byAccount = new Map(outcomes.map((o) => [o.account_masked, o]));
  const box = el('div', { className: 'service-box', dataset: { business: service.business_type } },
    el('h3', {}, serviceName(service)));
  if (service.accounts.length) {
    box.append(el('ul', { className: 'service-accounts' },
      ...service.accounts.map((a) => accountLine(a, byAccount.get(a.number_masked), service.business_type))));
  } else if (outcomes.length) {
    box.append(el('ul', { className: 'service-accounts' }, ...outcomes.map((o) => accountLine(
      { number_masked: o.account_masked, market: null, status: null }, o, service.business_type))));
  }
  const fields = Object.keys(service.details || {});
  if (fields.length) {
    const names = fields.map((k) => DETAIL_NAMES[k] || [k, k]);
    box.append(el('p', { className: 'service-details-line' },
      bi(`办理内容：${names.map((n) => n[0]).join('、')}`, `Changes: ${names.map((n) => n[1]).join(', ')}`)));
  }
  if (!withOutcomes) {
    const warn = warning(service);
    if (warn) box.append(warn);
  }
  return box;
}

/** Fill a container with the service box (nothing for an opening). */
export function showService(container, app, opts) {
  if (!container) return;
  if (!isService(app)) {
    container.replaceChildren();
    return;
  }
  container.replaceChildren(serviceBox(app, opts));
}
