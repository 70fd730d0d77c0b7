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
const refusedBy = (a) => Boolean(a.precheck && !a.precheck.ok);

/** One account of the service, with the precheck's word on it: a refusal names its reason
 *  in both languages on lines of their own, the code after the heading. */
function accountItem(account) {
  const check = account.precheck;
  const state = !check ? 'none' : check.ok ? 'ok' : 'refused';
  const head = el('span', { className: 'account-head' },
    el('span', { className: 'mono' }, account.number_masked),
    ' ', pair(MARKETS, account.market),
    ' · ', pair(STATUSES, account.status));
  let verdict;
  if (state === 'none') {
    verdict = el('span', { className: 'precheck' }, bi('未预检', 'not prechecked'));
  } else if (state === 'ok') {
    verdict = el('span', { className: 'precheck precheck-ok' }, '✓ ', bi('预检通过', 'precheck passed'));
  } else {
    verdict = el('div', { className: 'precheck precheck-refused' },
      el('p', { className: 'refusal-head' },
        el('strong', {}, '✗ ', bi('账户系统将拒绝办理', 'The account system would refuse')),
        check.error_code ? el('code', {}, check.error_code) : ''),
      check.message_zh ? el('p', { lang: 'zh' }, check.message_zh) : '',
      check.message_en ? el('p', { lang: 'en' }, check.message_en) : '');
  }
  return el('li', { className: state === 'refused' ? 'is-refused' : 'is-ok',
    dataset: { account: account.number_masked, precheck: state } }, head, verdict);
}

/** The business name as a row value (the case summary) and the block under it. */
export function businessLabel(view) {
  return view && view.label_zh ? bi(view.label_zh, view.label_en) : '—';
}

/** Fill ``box`` with the accounts of a holder's service (empty and hidden for an opening).
 *  Compact, so that it never pushes the desk's controls far down its column: a <details>
 *  whose summary gives the count and how many the precheck refused, the refused accounts
 *  first inside. Open by itself only on a window with room for it. */
export function renderBusiness(box, summary, view) {
  const dd = summary.querySelector('dd[data-field="business"]');
  if (dd && view) {
    dd.replaceChildren(businessLabel(view));
    dd.dataset.business = view.business_type;
  }
  // A holder's service has no suitability: its empty risk-level row is left out.
  const risk = summary.querySelector('dd[data-field="risk_level"]');
  if (risk && view && view.business_type !== 'open' && risk.textContent.trim() === '—') {
    risk.hidden = true;
    if (risk.previousElementSibling) risk.previousElementSibling.hidden = true;
  }
  const accounts = (view && view.accounts) || [];
  if (!accounts.length) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const refused = accounts.filter(refusedBy);
  const ordered = [...refused, ...accounts.filter((a) => !refusedBy(a))];
  const n = accounts.length;
  const verdict = refused.length
    ? el('span', { className: 'business-verdict precheck-refused' },
      '✗ ', bi(`${refused.length} 个预检未通过`, `${refused.length} refused by the precheck`))
    : el('span', { className: 'business-verdict precheck-ok' },
      '✓ ', bi('均已通过预检', 'all passed the precheck'));
  const roomy = window.matchMedia('(min-width: 1600px) and (min-height: 900px)').matches;
  box.replaceChildren(el('details', { className: 'business-details', open: roomy },
    el('summary', {},
      el('strong', {}, bi(`办理账户 ${n} 个`, `${n} account${n === 1 ? '' : 's'}`)),
      ' · ', verdict),
    el('ul', { className: 'business-accounts' }, ...ordered.map(accountItem)),
    refused.length
      ? el('p', { className: 'small business-hint' },
        bi('请向投资者说明原因；继续办理时，这些账户将保持原状。',
          'Tell the investor why; if they go on, these accounts are left as they are.'))
      : ''));
  box.dataset.refused = String(refused.length);
  box.hidden = false;
}
