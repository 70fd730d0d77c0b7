// Step 5: suitability questionnaire (A4) -> PUT /application/suitability; shows the level.

import { $, $$, el } from '../js/dom.js';
import { bi } from '../js/i18n.js';
import { busy, clearAlert, focusControl, showAlert } from './ui.js';

// A4: five investor categories, matched against product risk levels R1..R5.
const LEVELS = {
  C1: ['保守型', 'Conservative',
    '您的风险承受能力最低，适合购买风险等级为 R1（低风险）的产品，以保本为首要目标。',
    'Your tolerance for risk is lowest: products rated R1 (low risk) suit you; preserving capital comes first.'],
  C2: ['谨慎型', 'Cautious',
    '您的风险承受能力较低，适合购买风险等级为 R1–R2 的产品。',
    'Your tolerance for risk is low: products rated R1–R2 suit you.'],
  C3: ['稳健型', 'Balanced',
    '您能承受一定的风险，适合购买风险等级为 R1–R3 的产品。',
    'You can accept moderate risk: products rated R1–R3 suit you.'],
  C4: ['积极型', 'Growth',
    '您能承受较高的风险，适合购买风险等级为 R1–R4 的产品。',
    'You can accept higher risk: products rated R1–R4 suit you.'],
  C5: ['激进型', 'Aggressive',
    '您能承受高风险，可以购买各风险等级（R1–R5）的产品。',
    'You can accept high risk: products of every risk level (R1–R5) suit you.'],
};

export function setupSuitability(ctx) {
  const form = $('#suit-form');
  const list = $('#suit-questions');
  const result = $('#suit-result');
  const alertBox = $('#suit-alert');
  let questionnaire = null;

  function render(q) {
    list.replaceChildren(...q.questions.map((question, i) => {
      const type = question.multiple ? 'checkbox' : 'radio';
      const choices = question.options.map((o) => el('label', { className: 'choice' },
        el('input', { type, name: `q-${question.id}`, value: o.id }),
        el('span', {}, bi(o.zh, o.en))));
      const error = el('p', { className: 'field-error', id: `err-q-${question.id}`, hidden: true });
      return el('fieldset', {
        className: 'question', id: `q-${question.id}`, dataset: { question: question.id },
      },
      el('legend', {}, el('span', { className: 'qnum' }, `${i + 1}.`), bi(question.zh, question.en)),
      el('div', { className: 'choices' }, ...choices),
      error);
    }));
  }

  function markMissing(fieldset, problem) {
    const error = $('.field-error', fieldset);
    error.replaceChildren(problem.zh !== undefined ? bi(problem.zh, problem.en)
      : bi(problem.message_zh, problem.message));
    error.hidden = false;
    fieldset.classList.add('invalid');
  }

  function clearMarks() {
    for (const fs of $$('fieldset.question', list)) {
      fs.classList.remove('invalid');
      $('.field-error', fs).hidden = true;
    }
  }

  function showResult(level) {
    const [zh, en, textZh, textEn] = LEVELS[level] || [level, level, '', ''];
    $('#suit-level').textContent = level;
    $('#suit-level-name').replaceChildren(bi(zh, en));
    $('#suit-level-text').replaceChildren(bi(textZh, textEn));
    form.hidden = true;
    result.hidden = false;
  }

  async function submit() {
    clearAlert(alertBox);
    if (!questionnaire) return; // issue 17: nothing to answer until the questions are in
    clearMarks();
    const answers = {};
    let firstMissing = null;
    for (const fs of $$('fieldset.question', list)) {
      const picked = $$('input:checked', fs).map((input) => input.value);
      answers[fs.dataset.question] = picked;
      if (picked.length === 0) {
        markMissing(fs, { zh: '请回答此题。', en: 'Please answer this question.' });
        firstMissing = firstMissing || fs;
      }
    }
    if (firstMissing) {
      focusControl(firstMissing);
      return;
    }
    try {
      const body = await ctx.api.put('/application/suitability', { answers });
      ctx.setApp(body.application);
      showResult(body.application.suitability.level);
      $('#h-suitability').focus();
    } catch (err) {
      const fs = err.details && err.details.question
        ? $(`fieldset[data-question="${CSS.escape(err.details.question)}"]`, list) : null;
      if (fs) {
        markMissing(fs, err);
        focusControl(fs);
      } else {
        showAlert(alertBox, err);
      }
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#suit-submit'), submit);
  });
  list.addEventListener('change', (event) => {
    const fs = event.target.closest('fieldset.question');
    if (fs) {
      fs.classList.remove('invalid');
      $('.field-error', fs).hidden = true;
    }
  });
  $('#suit-redo').addEventListener('click', () => {
    result.hidden = true;
    form.hidden = false;
    $('#h-suitability').focus();
  });

  return {
    async enter() {
      clearAlert(alertBox);
      if (!questionnaire) {
        const submitBtn = $('#suit-submit');
        submitBtn.disabled = true;
        list.setAttribute('aria-busy', 'true');
        try {
          questionnaire = await ctx.api.get('/questionnaire');
          render(questionnaire);
        } finally {
          list.removeAttribute('aria-busy');
          submitBtn.disabled = false;
        }
      }
      const done = ctx.app && ctx.app.suitability;
      if (done) showResult(done.level);
      else {
        result.hidden = true;
        form.hidden = false;
      }
    },
  };
}
