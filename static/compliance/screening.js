// The compliance desk's screening section (A3): possible matches held for a decision.
// Each hit shows the masked investor, the list entries it matched and, on demand (the
// server audits every view), the provider's raw answer; clearing or confirming needs a
// reason. Four eyes are enforced by the server (api/screenings.py), not here.

import { Api } from '../js/api.js';
import { $, el } from '../js/dom.js';

const api = new Api('/api/v1');
api.setCsrf(document.querySelector('input[name="csrf_token"]')?.value || '');
const list = $('#screening-list');
const empty = $('#screening-empty');
const alertBox = $('#screening-alert');

const STAGES = { intake: '排队前 before queueing', approval: '审批前 before approval' };
const BASES = { id_number: '证件号码 ID number', name: '姓名 name', vendor: '服务商 vendor' };
const RESULTS = { possible_match: '可能命中 possible match', match: '命中 match' };

function both(zh, en) {
  return [zh, ' ', el('span', { lang: 'en' }, en)];
}

function errorText(err) {
  return `${err.message_zh || ''} ${err.message || err.code || 'Error'}`.trim();
}

function showAlert(box, err) {
  box.replaceChildren(errorText(err));
  box.hidden = false;
}

function matchesTable(matches) {
  return el('table', { className: 'table matches' },
    el('thead', {}, el('tr', {},
      el('th', {}, ...both('名单', 'List')),
      el('th', {}, ...both('条目', 'Entry')),
      el('th', {}, ...both('依据', 'Basis')),
      el('th', {}, ...both('含义', 'Meaning')))),
    el('tbody', {}, ...matches.map((m) => el('tr', {},
      el('td', { className: 'list-name' }, m.list),
      el('td', { className: 'entry-id' }, m.entry_id),
      el('td', {}, BASES[m.basis] || m.basis),
      el('td', {}, RESULTS[m.result] || m.result)))));
}

function card(item) {
  const box = el('div', { className: 'alert', role: 'alert', hidden: true });
  const reason = el('textarea', {
    id: `reason-${item.id}`, name: 'reason', rows: 2, maxLength: 1000, required: true,
  });
  const raw = el('pre', { className: 'raw', hidden: true });
  const rawBtn = el('button', { type: 'button', className: 'secondary show-raw' },
    ...both('查看原始结果', 'Show raw result'));
  rawBtn.addEventListener('click', async () => {
    try {
      const body = await api.get(`/compliance/screenings/${encodeURIComponent(item.id)}/raw`);
      raw.textContent = JSON.stringify(body.raw, null, 2);
      raw.hidden = false;
      rawBtn.disabled = true;
    } catch (err) {
      showAlert(box, err);
    }
  });

  const article = el('article', { className: 'screening', dataset: { screening: item.id } },
    el('h3', {}, `${item.investor_name} · ${item.id_number_masked}`),
    el('dl', {},
      el('dt', {}, ...both('申请', 'Application')), el('dd', {}, item.application_id),
      el('dt', {}, ...both('阶段', 'Stage')), el('dd', {}, STAGES[item.stage] || item.stage),
      el('dt', {}, ...both('筛查时间', 'Screened')),
      el('dd', {}, new Date(item.at).toLocaleString()),
      el('dt', {}, ...both('服务商 / 编号', 'Provider / reference')),
      el('dd', {}, `${item.provider} / ${item.reference}`)),
    matchesTable(item.matches || []),
    rawBtn, raw,
    el('label', { htmlFor: reason.id }, ...both('处理理由（必填）', 'Reason (required)')),
    reason,
    box);

  async function decide(decision, button) {
    box.hidden = true;
    if (reason.value.trim().length < 4) {
      showAlert(box, {
        message_zh: '请填写处理理由（至少4个字）。',
        message: 'Give the reason for the decision (at least 4 characters).',
      });
      reason.focus();
      return;
    }
    button.disabled = true;
    try {
      const done = await api.post(
        `/compliance/screenings/${encodeURIComponent(item.id)}/decision`,
        { decision, reason: reason.value.trim() },
      );
      article.replaceChildren(el('p', { className: 'decided' },
        ...(done.decision === 'cleared'
          ? both('已放行，申请继续办理。', 'Cleared: the application goes on.')
          : both('已确认命中，申请终止。', 'Confirmed: the application is refused.'))));
    } catch (err) {
      showAlert(box, err);
      button.disabled = false;
    }
  }

  const clearBtn = el('button', { type: 'button', className: 'clear' }, ...both('放行', 'Clear'));
  const confirmBtn = el('button', { type: 'button', className: 'danger confirm' },
    ...both('确认命中', 'Confirm match'));
  clearBtn.addEventListener('click', () => decide('clear', clearBtn));
  confirmBtn.addEventListener('click', () => decide('confirm', confirmBtn));
  article.append(el('p', { className: 'actions' }, clearBtn, ' ', confirmBtn));
  return article;
}

async function load() {
  alertBox.hidden = true;
  try {
    const body = await api.get('/compliance/screenings');
    list.replaceChildren(...body.items.map(card));
    empty.hidden = body.items.length > 0;
  } catch (err) {
    showAlert(alertBox, err);
  }
}

load();
