// The witness desk (A7, A17.3), templates/witness.html. The desk (desk.js: presence over
// /ws/witness; offer.js: offers) and the session (session.js: the call over
// /ws/session/<id> on the node that holds it; script.js: disclosure, script, face
// judgement, verdict). Messages: docs/pairing.md.

import { $ } from '../js/dom.js';
import { createDesk } from './desk.js';
import { createMessages } from './messages.js';
import { createOffers } from './offer.js';
import { createSession } from './session.js';

/** Labels for eligibility problems (A7), from the server: { code: { zh, en } }. */
function readProblemLabels() {
  try {
    return JSON.parse($('#problem-labels').textContent || '{}');
  } catch {
    return {};
  }
}

const messages = createMessages({
  alertBox: $('#desk-alert'),
  noticeBox: $('#desk-notice'),
  onLoadProblems: $('#witness-problems'),
  problemLabels: readProblemLabels(),
});
const desk = createDesk({ messages });
desk.attach({
  offers: createOffers({ messages, send: desk.send, onChange: desk.render }),
  session: createSession({ messages, send: desk.send, onChange: desk.render, onOver: desk.focusToggle }),
});
desk.start();
