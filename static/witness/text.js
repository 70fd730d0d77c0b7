// The witness desk's words: [zh, en] pairs for bi(), and the case summary shown with an
// offer and beside the session.

import { el } from '../js/dom.js';
import { bi } from '../js/i18n.js';

export const CONN = {
  up: ['已连接', 'Connected'],
  connecting: ['正在连接…', 'Connecting…'],
  down: ['网络中断，正在重连…', 'Connection lost, reconnecting…'],
  signed_out: ['登录已失效', 'Signed out'],
};
export const STATES = {
  offline: ['离线', 'Offline'],
  not_ready: ['暂停接单', 'Not ready'],
  ready: ['等待分配', 'Ready'],
  offered: ['待接受', 'Offer pending'],
  busy: ['见证中', 'In a session'],
  wrap_up: ['整理中', 'Wrap-up'],
};
export const HELP = {
  offline: ['工作台未连接，连接后即可开始接单。', 'The desk is not connected; you can go ready once it is.'],
  not_ready: ['点击“开始接单”后，系统将按排队顺序为您分配投资者。', 'Click Ready to be assigned investors in queue order.'],
  ready: ['正在等待分配投资者，请留在座位上，保持本页面打开。', 'Waiting for an investor: stay at your desk and keep this page open.'],
  offered: ['请在倒计时结束前接受或拒绝。', 'Accept or decline before the countdown ends.'],
  busy: ['见证进行中。', 'A session is in progress.'],
  wrap_up: ['会话已结束。整理完毕后点击“开始接单”。', 'The session is over. Click Ready when you have wrapped up.'],
};
export const IDLE = {
  offline: ['正在连接工作台…', 'Connecting the desk…'],
  not_ready: ['当前暂停接单', 'You are not taking investors'],
  ready: ['等待投资者…', 'Waiting for an investor…'],
  offered: ['等待投资者…', 'Waiting for an investor…'],
  busy: ['见证进行中', 'Session in progress'],
  wrap_up: ['整理中', 'Wrap-up'],
};
export const SESSION_PHASE = {
  connecting: ['正在连接会话…', 'Connecting to the session…'],
  waiting: ['等待投资者接入…', 'Waiting for the investor…'],
  joined: ['投资者已接入，正在等待其音视频…', 'The investor has joined; waiting for their picture and sound…'],
  live: ['投资者已接入，音视频已送达', 'The investor has joined; their picture and sound are arriving'],
  reconnecting: ['连接中断，正在重新连接…', 'Connection lost, reconnecting…'],
  away: ['投资者网络中断，等待其重新连接…', 'The investor lost their connection; waiting for them…'],
};
export const SESSION_OVER = {
  ended_by_witness: ['会话已结束，投资者已回到队列最前。整理完毕后请点击“开始接单”。',
    'Session ended; the investor is back at the head of the queue. Click Ready when you have wrapped up.'],
  investor_left: ['投资者已离开，会话已结束；投资者已回到队列最前。您已被设为暂停接单。',
    'The investor left and the session is over; they are back at the head of the queue. You were set to not ready.'],
  join_timeout: ['投资者未在规定时间内接入，会话已取消，投资者已回到队列最前。',
    'The investor did not join in time; the session was cancelled and they are back at the head of the queue.'],
  witness_left: ['您的会话连接中断，会话已结束，投资者已回到队列最前。',
    'Your session connection dropped; the session ended and the investor is back at the head of the queue.'],
  witness_gone: ['您的工作台连接中断，会话已结束，投资者已回到队列最前。',
    'Your desk lost its connection; the session ended and the investor is back at the head of the queue.'],
  pass: ['见证通过，录像已保存并提交复核。整理完毕后请点击“开始接单”。',
    'Passed: the recordings are saved and sent to review. Click Ready when you have wrapped up.'],
  fail: ['见证不通过，结论已记录。整理完毕后请点击“开始接单”。',
    'Failed: the verdict is recorded. Click Ready when you have wrapped up.'],
};
/** Session endings the witness chose (an info notice); the others are warnings. */
export const CHOSEN_ENDINGS = ['ended_by_witness', 'pass', 'fail'];

const DOC_TYPES = {
  resident_id: ['居民身份证', 'Resident ID card'],
  hmt_residence_permit: ['港澳台居民居住证', 'HK/Macau/Taiwan residence permit'],
};
const RISK = {
  C1: ['保守型', 'Conservative'],
  C2: ['谨慎型', 'Cautious'],
  C3: ['稳健型', 'Balanced'],
  C4: ['积极型', 'Growth'],
  C5: ['激进型', 'Aggressive'],
};

/** The case summary: <dt>/<dd> pairs for a <dl class="case">. */
export function caseRows(application) {
  const a = application || {};
  const doc = DOC_TYPES[a.document_type];
  const risk = RISK[a.risk_level];
  const rows = [
    ['姓名', 'Name', a.name || '—', 'name'],
    // A20: the business, beside the name (the session's own view replaces it: business.js).
    ['办理业务', 'Business', a.business_label ? bi(...a.business_label) : '—', 'business'],
    ['证件类型', 'Document', doc ? bi(...doc) : (a.document_type || '—'), 'document_type'],
    ['证件号码', 'ID number', a.id_number_masked || '—', 'id_number'],
    ['风险等级', 'Risk level', a.risk_level ? bi(`${a.risk_level}${risk ? ` ${risk[0]}` : ''}`,
      `${a.risk_level}${risk ? ` ${risk[1]}` : ''}`) : '—', 'risk_level'],
  ];
  // A holder's service (A20) has no suitability assessment: its empty risk-level row is left
  // out of the offer card as it is of the session summary (business.js).
  const service = a.business_type && a.business_type !== 'open';
  const shown = service && !a.risk_level ? rows.filter((r) => r[3] !== 'risk_level') : rows;
  return shown.flatMap(([zh, en, value, key]) => [
    el('dt', {}, bi(zh, en)),
    el('dd', { dataset: { field: key } }, value),
  ]);
}
