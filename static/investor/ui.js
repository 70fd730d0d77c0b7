// The intake steps' own helpers: alerts, field errors, busy buttons. Finding and
// building elements is ../js/dom.js; both languages, ../js/i18n.js.

import { el } from '../js/dom.js';
import { bi, biError } from '../js/i18n.js';

/** Show an ApiError/CameraError, or {zh, en}, in an alert box. */
export function showAlert(box, problem, { kind = 'error' } = {}) {
  const content = problem && problem.zh !== undefined ? bi(problem.zh, problem.en) : biError(problem);
  box.replaceChildren(el('p', {}, content));
  box.classList.toggle('info', kind === 'info');
  box.hidden = false;
}

export function clearAlert(box) {
  if (!box) return;
  box.hidden = true;
  box.replaceChildren();
}

// The server reports some fields under other names than the form uses.
const FIELD_ALIASES = {
  doc_type: 'document_type',
  valid_until_long_term: 'valid_until',
  // A20–A22: the accounts named belong to the account number's field.
  accounts: 'account_number',
};

/** Put an error under its field; returns the field's control, or null if unknown. */
export function showFieldError(form, field, problem) {
  const name = FIELD_ALIASES[field] || field;
  const box = form.querySelector(`#err-${CSS.escape(name)}`);
  if (!box) return null;
  const content = problem && problem.zh !== undefined ? bi(problem.zh, problem.en) : biError(problem);
  box.replaceChildren(content);
  box.hidden = false;
  const control = form.querySelector(`#${CSS.escape(name)}`);
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    control.classList.add('invalid');
  }
  return control;
}

export function clearFieldErrors(form) {
  for (const box of form.querySelectorAll('.field-error')) {
    box.hidden = true;
    box.replaceChildren();
  }
  for (const control of form.querySelectorAll('[aria-invalid]')) {
    control.removeAttribute('aria-invalid');
    control.classList.remove('invalid');
  }
}

/** Focus a control (or the first input of a fieldset) and bring it into view. */
export function focusControl(control) {
  if (!control) return;
  const target = control.matches('fieldset') ? control.querySelector('input') : control;
  target.focus({ preventScroll: true });
  control.scrollIntoView({ block: 'center', behavior: 'smooth' });
}

/**
 * Run fn while the button shows it is busy; a second click does nothing.
 * The button is re-enabled afterwards unless fn disabled it on purpose (return false).
 */
export async function busy(button, fn) {
  if (button.getAttribute('aria-busy') === 'true') return undefined;
  button.setAttribute('aria-busy', 'true');
  button.classList.add('is-busy');
  button.disabled = true;
  let keepDisabled = false;
  try {
    const result = await fn();
    keepDisabled = result === false;
    return result;
  } finally {
    button.removeAttribute('aria-busy');
    button.classList.remove('is-busy');
    if (!keepDisabled) button.disabled = false;
  }
}

/** ISO date string (yyyy-mm-dd) in local time, for date inputs. */
export function isoDate(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
