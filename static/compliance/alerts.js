// The compliance desk's alerts inbox (A23): risk alerts by deadline, filterable by state;
// one alert's history with its notes; the life cycle's steps (acknowledge, resolve,
// escalate, reopen) posted with the staff CSRF header. Which steps are possible, which
// need a note and who may take them (four eyes) is decided by the server
// (services/compliance/alert_desk.py); this page offers only the alert's
// allowed_events and shows the server's answer, in both languages.

import { Api } from '../js/api.js';
import { $, el } from '../js/dom.js';
import { bi, biError } from '../js/i18n.js';

const api = new Api('/api/v1');
api.setCsrf(document.querySelector('input[name="csrf_token"]')?.value || '');

const desk = $('#alerts-desk');
const filter = $('#alerts-state');
const refresh = $('#alerts-refresh');
const tableWrap = $('#alerts-table-wrap');
const list = $('#alerts-list');
const empty = $('#alerts-empty');
const loading = $('#alerts-loading');
const errorBox = $('#alerts-error');
const detail = $('#alert-detail');
const status = $('#alerts-status');

const SEVERITY = { high: ['高', 'High'], medium: ['中', 'Medium'], low: ['低', 'Low'] };
const STATE = {
  open: ['待处理', 'Open'],
  acknowledged: ['已认领', 'Acknowledged'],
  escalated: ['已升级', 'Escalated'],
  resolved: ['已解决', 'Resolved'],
};
const SUBJECT = {
  application: ['申请', 'Application'],
  session: ['见证会话', 'Session'],
  witness: ['见证人员', 'Witness'],
  reviewer: ['复核人员', 'Reviewer'],
  id_number: ['证件号码', 'ID number'],
  device: ['设备', 'Device'],
  ip: ['IP 地址', 'IP address'],
  phone: ['手机号码', 'Phone'],
};
const HISTORY = {
  raised: ['系统提出', 'Raised'],
  acknowledge: ['认领', 'Acknowledged'],
  resolve: ['解决', 'Resolved'],
  escalate: ['升级', 'Escalated'],
  reopen: ['重新打开', 'Reopened'],
};
// The actions in the order offered; the server's allowed_events decides which show.
const ACTIONS = [
  { event: 'acknowledge', zh: '认领', en: 'Acknowledge', done: ['已认领', 'Acknowledged'] },
  { event: 'resolve', zh: '解决', en: 'Resolve', done: ['已解决', 'Resolved'] },
  { event: 'escalate', zh: '升级', en: 'Escalate', done: ['已升级', 'Escalated'] },
  { event: 'reopen', zh: '重新打开', en: 'Reopen', done: ['已重新打开', 'Reopened'] },
];

const TIME = new Intl.DateTimeFormat('zh-CN', {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  hour12: false,
});

let listSeq = 0; // a slower, older answer never overwrites a newer one
let detailSeq = 0;
let selectedId = null;

// ── pure helpers ──────────────────────────────────────────────────────────────────────

function pair(table, key) {
  const known = table[key];
  return known ? bi(known[0], known[1]) : document.createTextNode(String(key));
}

// The server keeps UTC; a time without an offset (events read back from SQLite, see
// alert_desk.alert_detail) is UTC too, never the browser's zone.
const HAS_OFFSET = /(Z|[+-]\d{2}:?\d{2})$/;

function localTime(iso) {
  const text = String(iso);
  const at = new Date(HAS_OFFSET.test(text) || !text.includes('T') ? text : `${text}Z`);
  return Number.isNaN(at.getTime()) ? text : TIME.format(at);
}

/** An identifier shown only by its ends: applications, hashes. */
function mask(value) {
  const text = String(value ?? '');
  return text.length <= 10 ? text : `${text.slice(0, 4)}…${text.slice(-4)}`;
}

function subjectText(alert) {
  if (alert.subject_type === 'witness' || alert.subject_type === 'reviewer') {
    return `#${alert.subject_id}`;
  }
  return mask(alert.subject_id);
}

function actorNode(actor) {
  if (actor === 'system') return bi('系统', 'System');
  const staff = /^staff:(\d+)$/.exec(actor || '');
  return staff ? bi(`员工 #${staff[1]}`, `Staff #${staff[1]}`) : document.createTextNode(actor);
}

function ownerNode(alert) {
  return alert.owner_id == null ? bi('未认领', 'Unowned')
    : bi(`员工 #${alert.owner_id}`, `Staff #${alert.owner_id}`);
}

/** The rule's description when the API gives it; the rule id always. */
function ruleNode(alert) {
  const zh = alert.rule_description_zh || alert.description_zh;
  const en = alert.rule_description_en || alert.description_en;
  const id = el('span', { className: 'rule-id' }, alert.rule_id);
  if (!zh && !en) return el('span', {}, id);
  return el('span', {}, el('span', { className: 'desc-zh' }, zh || en),
    el('span', { className: 'desc-en', lang: 'en' }, en || zh), id);
}

function severityNode(severity) {
  return el('span', { className: `sev sev-${severity}` }, pair(SEVERITY, severity));
}

function stateNode(state) {
  return el('span', { className: `state state-${state}` }, pair(STATE, state));
}

function dueNode(alert) {
  const node = el('span', { className: alert.overdue ? 'due is-overdue' : 'due' },
    el('time', { dateTime: alert.due_at }, localTime(alert.due_at)));
  if (alert.overdue) node.append(el('span', { className: 'overdue-tag' }, bi('已逾期', 'Overdue')));
  return node;
}

function applicationsNode(alert) {
  const ids = alert.application_ids || [];
  if (ids.length === 0) return document.createTextNode('—');
  const shown = ids.slice(0, 2).flatMap((id, i) => [i ? ', ' : null,
    el('span', { className: 'masked' }, mask(id))]);
  const more = ids.length > 2 ? bi(` 等 ${ids.length} 个`, ` and ${ids.length - 2} more`) : null;
  return el('span', {}, ...shown, more);
}

// ── messages ──────────────────────────────────────────────────────────────────────────

function showError(box, err) {
  box.replaceChildren(biError(err));
  box.hidden = false;
}

function announce(zh, en) {
  status.replaceChildren(bi(zh, en));
}

api.onUnauthorized = () => {
  filter.disabled = true;
  refresh.disabled = true;
};

// ── the inbox ─────────────────────────────────────────────────────────────────────────

function row(alert) {
  const open = el('button', {
    type: 'button',
    className: 'open-alert',
    'aria-label': `详情 Details: ${alert.rule_id} ${mask(alert.id)}`,
    'aria-controls': 'alert-detail',
  }, bi('详情', 'Details'));
  open.addEventListener('click', () => openDetail(alert.id));
  return el('tr', {
    className: alert.id === selectedId ? 'is-selected' : '',
    dataset: { alert: alert.id, state: alert.state, overdue: String(alert.overdue) },
  },
  el('td', {}, severityNode(alert.severity)),
  el('td', { className: 'rule' }, ruleNode(alert)),
  el('td', {}, pair(SUBJECT, alert.subject_type), ' ',
    el('span', { className: 'masked' }, subjectText(alert))),
  el('td', {}, stateNode(alert.state)),
  el('td', {}, ownerNode(alert)),
  el('td', {}, dueNode(alert)),
  el('td', {}, applicationsNode(alert)),
  el('td', {}, open));
}

async function loadList() {
  const seq = ++listSeq;
  const state = filter.value;
  desk.setAttribute('aria-busy', 'true');
  refresh.disabled = true;
  const query = state ? `?state=${encodeURIComponent(state)}` : '';
  try {
    const body = await api.get(`/compliance/alerts${query}`);
    if (seq !== listSeq) return;
    errorBox.hidden = true;
    list.replaceChildren(...body.items.map(row));
    tableWrap.hidden = body.items.length === 0;
    empty.hidden = body.items.length > 0;
    desk.dataset.loaded = 'true';
  } catch (err) {
    if (seq !== listSeq) return;
    showError(errorBox, err);
  } finally {
    if (seq === listSeq) {
      loading.hidden = true;
      desk.setAttribute('aria-busy', 'false');
      filter.disabled = false;
      refresh.disabled = false;
    }
  }
}

// ── one alert ─────────────────────────────────────────────────────────────────────────

// The rules' facts (domain/risk_evaluation.py) by name; any other key shows as it is.
const FACT = {
  applications: ['申请数', 'Applications'],
  first_at: ['首次出现', 'First seen'],
  kind: ['规则类型', 'Rule kind'],
  failures: ['失败次数', 'Failures'],
  sessions: ['见证会话', 'Sessions'],
  deadline: ['回访期限', 'Callback deadline'],
  outcome: ['回访结果', 'Callback outcome'],
  attempts_exhausted: ['回访次数已用尽', 'Attempts exhausted'],
  face_distance: ['人脸比对距离', 'Face distance'],
  length_seconds: ['时长（秒）', 'Length (s)'],
  local_date: ['日期', 'Local date'],
  value: ['数值', 'Value'],
  peers_median: ['同事中位数', 'Peers\' median'],
  peers: ['同事人数', 'Peers'],
  score: ['偏离分数', 'Score'],
  sample: ['样本数', 'Sample'],
  field: ['字段', 'Field'],
  witness_id: ['见证人员', 'Witness'],
  damaged_stretches: ['损坏片段', 'Damaged stretches'],
  recovered_recordings: ['恢复的录像', 'Recovered recordings'],
  kinds: ['类型', 'Kinds'],
};
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

function factText(value) {
  if (typeof value === 'string' && ISO_TIME.test(value)) return localTime(value);
  if (typeof value === 'boolean') return value ? '是 Yes' : '否 No';
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

function detailsList(details) {
  const rows = [];
  for (const [key, value] of Object.entries(details || {})) {
    if (key === 'application_ids') continue;
    rows.push(el('dt', { className: 'detail-key' }, pair(FACT, key)), el('dd', {}, factText(value)));
  }
  return rows;
}

function historyList(events) {
  return el('ol', { className: 'events' }, ...events.map((e) => el('li', { dataset: { event: e.event } },
    el('time', { dateTime: e.at }, localTime(e.at)), ' · ', pair(HISTORY, e.event), ' · ',
    actorNode(e.actor),
    e.note ? el('span', { className: 'note' }, e.note) : null)));
}

function actionsForm(alert) {
  const errBox = el('div', { className: 'alert action-error', role: 'alert', hidden: true });
  const allowed = new Set(alert.allowed_events || []);
  if (allowed.size === 0) return el('p', { className: 'muted' }, bi('此预警无可执行的操作。', 'No action applies to this alert.'));
  const note = el('textarea', {
    id: `alert-note-${alert.id}`, name: 'note', rows: 3, maxLength: 2000,
    'aria-describedby': `alert-note-hint-${alert.id}`,
  });
  const hint = el('p', { id: `alert-note-hint-${alert.id}`, className: 'hint muted' },
    bi('解决、升级、重新打开须填写备注；认领时备注可选。',
      'Resolving, escalating and reopening need a note; acknowledging does not.'));
  const buttons = ACTIONS.filter((a) => allowed.has(a.event)).map((action) => {
    const button = el('button', { type: 'button', className: action.event, dataset: { event: action.event } },
      bi(action.zh, action.en));
    button.addEventListener('click', () => act(alert, action, note, errBox, buttons));
    return button;
  });
  return el('div', { className: 'alert-actions' },
    el('h4', {}, bi('处理', 'Action')),
    el('label', { htmlFor: note.id }, bi('备注', 'Note')),
    note, hint, errBox,
    el('div', { className: 'actions' }, ...buttons));
}

function renderDetail(alert) {
  const ids = alert.application_ids || [];
  const title = el('h3', { id: 'alert-detail-title' }, bi('预警详情', 'Alert'), ' ', severityNode(alert.severity));
  detail.replaceChildren(
    title,
    el('dl', {},
      el('dt', {}, bi('规则', 'Rule')), el('dd', {}, ruleNode(alert), ' ',
        el('span', { className: 'rule-id' }, `v${alert.rule_version}`)),
      el('dt', {}, bi('对象', 'Subject')), el('dd', {}, pair(SUBJECT, alert.subject_type), ' ',
        el('span', { className: 'masked' }, subjectText(alert))),
      el('dt', {}, bi('状态', 'State')), el('dd', { className: 'detail-state' }, stateNode(alert.state)),
      el('dt', {}, bi('负责人', 'Owner')), el('dd', {}, ownerNode(alert)),
      el('dt', {}, bi('处理期限', 'Deadline')), el('dd', {}, dueNode(alert)),
      el('dt', {}, bi('提出时间', 'Raised')), el('dd', {}, localTime(alert.raised_at)),
      el('dt', {}, bi('依据事实时间', 'Observed')), el('dd', {}, localTime(alert.observed_at)),
      el('dt', {}, bi('涉及申请', 'Applications')),
      el('dd', { className: 'masked' }, ids.length ? ids.map(mask).join(', ') : '—'),
      el('dt', {}, bi('暂停审批', 'Holds approval')),
      el('dd', {}, alert.hold ? bi('是', 'Yes') : bi('否', 'No')),
      ...detailsList(alert.details)),
    el('h4', {}, bi('处理记录', 'History')),
    historyList(alert.events || []),
    actionsForm(alert));
  detail.dataset.alert = alert.id;
  detail.dataset.state = alert.state;
  detail.hidden = false;
}

async function openDetail(alertId) {
  const seq = ++detailSeq;
  selectedId = alertId;
  for (const tr of list.querySelectorAll('tr')) {
    tr.classList.toggle('is-selected', tr.dataset.alert === alertId);
  }
  detail.setAttribute('aria-busy', 'true');
  try {
    const alert = await api.get(`/compliance/alerts/${encodeURIComponent(alertId)}`);
    if (seq !== detailSeq) return;
    renderDetail(alert);
    detail.focus();
  } catch (err) {
    if (seq !== detailSeq) return;
    const box = el('div', { className: 'alert', role: 'alert' });
    showError(box, err);
    detail.replaceChildren(box);
    detail.hidden = false;
  } finally {
    if (seq === detailSeq) detail.setAttribute('aria-busy', 'false');
  }
}

async function act(alert, action, note, errBox, buttons) {
  errBox.hidden = true;
  for (const b of buttons) b.disabled = true;
  try {
    const updated = await api.post(`/compliance/alerts/${encodeURIComponent(alert.id)}/events`,
      { event: action.event, note: note.value.trim() });
    ++detailSeq;
    renderDetail(updated);
    announce(...action.done);
    $('.alert-actions button', detail)?.focus();
    await loadList();
  } catch (err) {
    showError(errBox, err);
    for (const b of buttons) b.disabled = false;
    note.focus();
  }
}

// ── start ─────────────────────────────────────────────────────────────────────────────

filter.addEventListener('change', () => loadList());
refresh.addEventListener('click', () => loadList());
loadList();
