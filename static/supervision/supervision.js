// Supervision statistics (A23): fetch the numbers for a range of local days, show the
// totals, two charts (Chart.js, vendored in static/vendor/chart.js, a global from its UMD
// build) and the per-day and per-witness tables. Nothing inline: the CSP is 'self' only.

import { Api } from '/static/js/api.js';
import { $, el } from '/static/js/dom.js';
import { bi, biError } from '/static/js/i18n.js';

const api = new Api('');
const charts = {};
let latest = 0; // only the newest request's answer is shown

const COLOURS = { pass: '#1e7b34', fail: '#b3261e', p50: '#2f5d9e', p95: '#d08a1e' };

function seconds(value) {
  return value === null || value === undefined ? '–' : value.toFixed(0);
}

function reasons(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([code, n]) => `${code} ×${n}`).join('; ') : '–';
}

function headerRow(columns) {
  return el('thead', {}, el('tr', {}, ...columns.map(([zh, en, num]) =>
    el('th', { className: num ? 'num' : '' }, bi(zh, en)))));
}

function cell(text, num = true) {
  return el('td', { className: num ? 'num' : '' }, String(text));
}

const COUNT_COLUMNS = [
  ['见证', 'Sessions', true], ['通过', 'Passed', true], ['不通过', 'Failed', true],
  ['不通过原因', 'Fail reasons', false],
  ['等待 p50', 'Wait p50', true], ['等待 p95', 'Wait p95', true],
  ['通话 p50', 'Call p50', true], ['通话 p95', 'Call p95', true],
];

function countCells(row) {
  return [
    cell(row.sessions), cell(row.passed), cell(row.failed), cell(reasons(row.fail_reasons), false),
    cell(seconds(row.wait_s.p50)), cell(seconds(row.wait_s.p95)),
    cell(seconds(row.call_s.p50)), cell(seconds(row.call_s.p95)),
  ];
}

function renderDays(days) {
  const table = $('#days-table');
  const body = el('tbody', {}, ...days.map((d) => el('tr', { dataset: { day: d.day } },
    cell(d.day, false), cell(d.applications), ...countCells(d),
    cell(seconds(d.review_s.p50)), cell(seconds(d.review_s.p95)),
    cell(d.callbacks), cell(d.callbacks_reached))));
  table.replaceChildren(headerRow([
    ['日期', 'Day', false], ['申请', 'Applications', true], ...COUNT_COLUMNS,
    ['复核 p50', 'Review p50', true], ['复核 p95', 'Review p95', true],
    ['回访', 'Callbacks', true], ['接通', 'Reached', true],
  ]), body);
}

function renderWitnesses(witnesses) {
  const table = $('#witness-table');
  if (!witnesses.length) {
    table.replaceChildren(el('tbody', {}, el('tr', {}, el('td', {}, bi('该期间无见证。', 'No sessions in this range.')))));
    return;
  }
  const body = el('tbody', {}, ...witnesses.map((w) => el('tr', { dataset: { witness: String(w.witness_id) } },
    cell(w.name, false), ...countCells(w))));
  table.replaceChildren(headerRow([['见证人员', 'Witness', false], ...COUNT_COLUMNS]), body);
}

function renderTotals(total) {
  const stat = (id, zh, en, value) => el('div', { className: 'stat', id }, el('b', {}, String(value)), bi(zh, en));
  $('#totals').replaceChildren(
    stat('total-applications', '申请', 'Applications', total.applications),
    stat('total-sessions', '见证', 'Sessions', total.sessions),
    stat('total-passed', '通过', 'Passed', total.passed),
    stat('total-failed', '不通过', 'Failed', total.failed),
    stat('total-wait', '等待 p50/p95 秒', 'Wait p50/p95 s', `${seconds(total.wait_s.p50)} / ${seconds(total.wait_s.p95)}`),
    stat('total-call', '通话 p50/p95 秒', 'Call p50/p95 s', `${seconds(total.call_s.p50)} / ${seconds(total.call_s.p95)}`),
    stat('total-review', '复核 p50/p95 秒', 'Review p50/p95 s', `${seconds(total.review_s.p50)} / ${seconds(total.review_s.p95)}`),
    stat('total-callbacks', '回访接通/回访', 'Callbacks reached', `${total.callbacks_reached} / ${total.callbacks}`),
  );
}

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new window.Chart($(`#${id}`), config);
}

function renderCharts(days) {
  if (!window.Chart) return; // the tables still show the numbers
  const labels = days.map((d) => d.day.slice(5));
  const common = { responsive: true, maintainAspectRatio: false, animation: false };
  draw('chart-outcomes', {
    type: 'bar',
    data: {
      labels,
      datasets: [
        { label: '通过 Passed', data: days.map((d) => d.passed), backgroundColor: COLOURS.pass },
        { label: '不通过 Failed', data: days.map((d) => d.failed), backgroundColor: COLOURS.fail },
      ],
    },
    options: { ...common, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
  });
  draw('chart-wait', {
    type: 'line',
    data: {
      labels,
      datasets: [
        { label: 'p50', data: days.map((d) => d.wait_s.p50), borderColor: COLOURS.p50, backgroundColor: COLOURS.p50, spanGaps: true },
        { label: 'p95', data: days.map((d) => d.wait_s.p95), borderColor: COLOURS.p95, backgroundColor: COLOURS.p95, borderDash: [6, 4], spanGaps: true },
      ],
    },
    options: { ...common, scales: { y: { beginAtZero: true } } },
  });
}

function query(from, to) {
  const params = new URLSearchParams();
  if (from) params.set('from', from);
  if (to) params.set('to', to);
  const text = params.toString();
  return text ? `?${text}` : '';
}

async function load(from, to) {
  const section = $('#supervision');
  const alert = $('#supervision-alert');
  const mine = ++latest;
  section.setAttribute('aria-busy', 'true');
  alert.hidden = true;
  try {
    const report = await api.get(`/staff/supervision.json${query(from, to)}`);
    if (mine !== latest) return;
    $('#range-from').value = report.from;
    $('#range-to').value = report.to;
    $('#csv-link').href = `/staff/supervision.csv${query(report.from, report.to)}`;
    history.replaceState(null, '', `/staff/supervision${query(report.from, report.to)}`);
    renderTotals(report.total);
    renderCharts(report.days);
    renderDays(report.days);
    renderWitnesses(report.witnesses);
  } catch (err) {
    if (mine !== latest) return;
    alert.replaceChildren(biError(err));
    alert.hidden = false;
  } finally {
    if (mine === latest) section.setAttribute('aria-busy', 'false');
  }
}

$('#supervision-range').addEventListener('submit', (event) => {
  event.preventDefault();
  load($('#range-from').value, $('#range-to').value);
});

const initial = new URLSearchParams(location.search);
load(initial.get('from'), initial.get('to'));
