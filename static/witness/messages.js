// What the desk tells the witness: one alert box for problems (errors, eligibility,
// signed out) and one notice box for what just happened (an offer or a session ended).

import { el } from '../js/dom.js';
import { bi, biError } from '../js/i18n.js';

/**
 * @param {{ alertBox: HTMLElement, noticeBox: HTMLElement, onLoadProblems: HTMLElement|null,
 *           problemLabels: Object<string, {zh: string, en: string}> }} parts
 */
export function createMessages({ alertBox, noticeBox, onLoadProblems, problemLabels }) {
  function showAlert(zh, en, extra = null) {
    alertBox.replaceChildren(el('p', {}, bi(zh, en)));
    if (extra) alertBox.append(extra);
    alertBox.hidden = false;
  }

  function clearAlert() {
    alertBox.hidden = true;
    alertBox.replaceChildren();
  }

  /** Why the witness may not go ready (A7), one line per problem. */
  function showNotEligible(error) {
    const problems = (error.details && error.details.problems) || [];
    const list = el('ul', { className: 'problem-list' }, ...problems.map((code) => {
      const label = problemLabels[code] || { zh: code, en: code };
      return el('li', { dataset: { code } }, bi(label.zh, label.en), ' ', el('code', {}, code));
    }));
    const ask = el('p', {}, bi('请联系管理员更新劳动合同、培训记录或执业编号。',
      'Ask an admin to update your contract, training or licence record.'));
    showAlert('您目前不具备见证资格（A7），不能开始接单：',
      'You are not eligible to witness (A7) and cannot go ready:', list);
    alertBox.append(ask);
    // The same facts as the box shown at page load, but current: show one of them.
    if (onLoadProblems) onLoadProblems.hidden = true;
  }

  /** An error from the server ({code, message, message_zh, details}) or from the desk. */
  function showError(error) {
    const e = error || {};
    if (e.code === 'witness_not_eligible') {
      showNotEligible(e);
    } else {
      alertBox.replaceChildren(el('p', {}, biError(e)));
      alertBox.hidden = false;
    }
    alertBox.dataset.code = e.code || '';
  }

  /** kind: 'info' or 'warn'. */
  function notice(zh, en, kind = 'info') {
    noticeBox.replaceChildren(el('p', {}, bi(zh, en)));
    noticeBox.dataset.kind = kind;
    noticeBox.hidden = false;
  }

  function clearNotice() {
    noticeBox.hidden = true;
    noticeBox.replaceChildren();
  }

  return { showAlert, clearAlert, showError, notice, clearNotice };
}
