// The business of a session (A20–A22): its name beside the investor's, and for a holder's
// service the accounts it is for (masked number, market, status) with the account
// system's precheck. An account the system would refuse is shown with its reason in both
// languages. The view is server/services/service_requests.py service_view.

import { el } from '../js/dom.js';
import { bi } from '../js/i18n.js';

const MARKETS = {
  unified: ['一码通账户', 'Unified account'],
  sh: ['沪市证券账户', 'Shanghai account'],
  sz: ['深市证券账户', 'Shenzhen account'],
  bj: ['北交所证券账户', 'Beijing account'],
};
const STATUSES = {
  normal: ['正常', 'normal'],
  dormant: ['休眠', 'dormant'],
  loss_reported: ['已挂失', 'loss reported'],
  cancelled: ['已注销', 'cancelled'],
};

const pair = (table, key) => (table[key] ? bi(...table[key]) : String(key ?? '—'));

/** One account of the service, with the precheck's word on it. */
function accountItem(account) {
  const check = account.precheck;
  const refused = Boolean(check && !check.ok);
  const verdict = !check
    ? el('span', { className: 'precheck' }, bi('未预检', 'not prechecked'))
    : check.ok
      ? el('span', { className: 'precheck' }, bi('✓ 账户系统预检通过', '✓ Account system precheck passed'))
      : el('span', { className: 'precheck precheck-refused', role: 'alert' },
        el('strong', {}, bi('✗ 账户系统将拒绝办理：', '✗ The account system would refuse: ')),
        el('span', { lang: 'zh' }, check.message_zh || ''), ' ',
        el('span', { lang: 'en' }, check.message_en || ''),
        check.error_code ? el('code', {}, ` ${check.error_code}`) : '');
  return el('li', { className: refused ? 'is-refused' : 'is-ok',
    dataset: { account: account.number_masked, precheck: !check ? 'none' : (check.ok ? 'ok' : 'refused') } },
  el('span', { className: 'mono' }, account.number_masked),
  ' · ', pair(MARKETS, account.market),
  ' · ', pair(STATUSES, account.status),
  el('br'), verdict);
}

/** The business name as a row value (the case summary) and the block under it. */
export function businessLabel(view) {
  return view && view.label_zh ? bi(view.label_zh, view.label_en) : '—';
}

/** Fill ``box`` with the accounts of a holder's service (empty and hidden for an opening). */
export function renderBusiness(box, summary, view) {
  const dd = summary.querySelector('dd[data-field="business"]');
  if (dd && view) {
    dd.replaceChildren(businessLabel(view));
    dd.dataset.business = view.business_type;
  }
  const accounts = (view && view.accounts) || [];
  if (!accounts.length) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const refused = accounts.filter((a) => a.precheck && !a.precheck.ok).length;
  box.replaceChildren(
    el('h5', {}, bi('办理账户', 'Accounts for this service')),
    el('ul', { className: 'business-accounts' }, ...accounts.map(accountItem)),
    refused
      ? el('p', { className: 'small precheck-refused' },
        bi(`${refused} 个账户预检未通过：请向投资者说明原因。`,
          `${refused} account(s) failed the precheck: tell the investor why.`))
      : '',
  );
  box.dataset.refused = String(refused);
  box.hidden = false;
}
