// The session's checklist (A12, A17.3, A17.4): identity disclosure, the script steps and
// their marks, the face judgement, and the verdict. The server holds the script state and
// sends it as script_state; every control here only asks for a change (act).

import { $, $$, el } from '../js/dom.js';

const MARK_LABEL = { clear: '清楚 clear', unclear: '不清楚 unclear', refused: '拒绝 refused' };
const PROBLEM_TEXT = {
  disclosure_not_done: '尚未完成身份告知 Disclosure not done',
  face_not_matched: '人像比对未确认一致 Face not confirmed as matching',
};
// Keyboard shortcuts while a session is open (shown on the buttons as <kbd>).
const SHORTCUTS = { n: '#step-next', 1: '.marks [data-mark=clear]', 2: '.marks [data-mark=unclear]', 3: '.marks [data-mark=refused]' };
const FAIL_RETRY_MS = 5000; // the Fail button comes back if the server refused (e.g. no notes)

/** Why the witness cannot pass yet, one line per problem ("kind" or "kind:step_id"). */
function passProblemText(problem, steps) {
  if (PROBLEM_TEXT[problem]) return PROBLEM_TEXT[problem];
  const [kind, stepId] = problem.split(':');
  const n = steps.findIndex((s) => s.id === stepId) + 1;
  return kind === 'step_not_taken' ? `第 ${n} 步未进行 Step ${n} not taken`
    : `第 ${n} 步回答未确认清楚 Step ${n} not answered clearly`;
}

function stepItem(step, i, state) {
  const li = el('li', {},
    el('span', { className: 'who' }, step.speaker === 'investor' ? '投资者朗读' : '提问'),
    el('span', {}, step.text_zh));
  li.classList.toggle('is-current', state.current === i);
  const mark = state.marks[i];
  if (mark) {
    li.append(el('span', { className: 'mark', dataset: { mark } },
      MARK_LABEL[mark] + (state.notes[i] ? ` · ${state.notes[i]}` : '')));
  }
  return li;
}

/**
 * @param {{ act: (message: object) => boolean, showError: (error: object) => void,
 *           showPrompt: (step: object|null) => void }} deps
 */
export function createScriptPanel({ act, showError, showPrompt }) {
  const markButtons = $$('.marks [data-mark]');
  const faceRadios = $$('#face-judge input');
  let script = null; // the last script_state, or null before the first

  /** Draw a script_state (or the empty panel of a new session: null). */
  function render(state) {
    script = state;
    const shown = Boolean(state && state.disclosure_shown);
    const confirmed = Boolean(state && state.disclosure_confirmed);
    $('#disclosure-confirm').disabled = !shown || confirmed;
    $('#disclosure-state').textContent = confirmed ? '✓ 已宣读 read out' : shown ? '已展示 shown' : '';
    $('#script-version').textContent = state ? `v ${state.script_version}` : '';
    if (!state) {
      $('#script-steps').replaceChildren();
      $('#step-next').disabled = true;
      for (const b of markButtons) b.disabled = true;
      $('#verdict-pass').disabled = true;
      $('#pass-problems').replaceChildren();
      showPrompt(null);
      return;
    }
    $('#script-steps').replaceChildren(...state.steps.map((step, i) => stepItem(step, i, state)));
    const cur = state.current;
    const curStep = cur === null ? null : state.steps[cur];
    const next = cur === null ? 0 : cur + 1;
    const blocked = curStep && curStep.expects_answer && !state.marks[cur];
    $('#step-next').disabled = !confirmed || next >= state.steps.length || Boolean(blocked);
    for (const b of markButtons) b.disabled = !curStep || !curStep.expects_answer;
    showPrompt(curStep);
    // The band's step label: call.js fills who speaks and the text.
    for (const label of $$('#work-session [data-call="prompt-step"]')) {
      label.textContent = curStep ? `第 ${cur + 1}/${state.steps.length} 步 · Step ${cur + 1} of ${state.steps.length}` : '';
    }
    for (const radio of faceRadios) radio.checked = radio.value === state.face;
    $('#verdict-fail').disabled = false;
    const problems = state.pass_problems || [];
    $('#verdict-pass').disabled = problems.length > 0;
    $('#pass-problems').replaceChildren(...problems.map((p) => el('li', {}, passProblemText(p, state.steps))));
  }

  /** A new session: no face judgement yet. */
  function resetFace() {
    for (const radio of faceRadios) radio.checked = false;
  }

  $('#disclosure-show').addEventListener('click', () => act({ type: 'disclosure_show' }));
  $('#disclosure-confirm').addEventListener('click', () => act({ type: 'disclosure_confirm' }));
  $('#step-next').addEventListener('click', () => {
    if (!script) return;
    $('#step-note').value = '';
    act({ type: 'step_start', index: script.current === null ? 0 : script.current + 1 });
  });
  for (const button of markButtons) {
    button.addEventListener('click', () => {
      if (!script || script.current === null) return;
      act({ type: 'step_mark', index: script.current, mark: button.dataset.mark, note: $('#step-note').value });
    });
  }
  for (const radio of faceRadios) {
    radio.addEventListener('change', () => act({ type: 'face_judge', judgement: radio.value }));
  }
  $('#verdict-pass').addEventListener('click', (event) => {
    // One verdict: the button stays disabled until the server answers (or the session ends).
    if (act({ type: 'verdict', result: 'pass' })) event.currentTarget.disabled = true;
  });
  $('#verdict-fail').addEventListener('click', () => {
    const reason = $('#fail-reason').value;
    if (!reason) {
      showError({ message: 'Choose a reason.', message_zh: '请选择不通过原因。' });
      $('#fail-reason').focus();
      return;
    }
    const button = $('#verdict-fail');
    if (act({ type: 'verdict', result: 'fail', reason_code: reason, notes: $('#fail-notes').value })) {
      button.disabled = true;
      setTimeout(() => { button.disabled = false; }, FAIL_RETRY_MS);
    }
  });

  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
    if ($('#work-session').hidden) return;
    const target = event.target;
    // Typing a note or choosing a reason is not a shortcut.
    if (target instanceof Element && target.closest('input:not([type=radio]):not([type=checkbox]), select, textarea, [contenteditable]')) return;
    const selector = SHORTCUTS[event.key.toLowerCase()];
    const button = selector && $(selector);
    if (!button || button.disabled) return;
    event.preventDefault();
    button.click();
  });

  return { render, resetFace };
}
