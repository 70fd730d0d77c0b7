// Step 6: risk disclosure and account agreement (A4). The investor must scroll to the
// end and keep it open for min_read_seconds; the server measures the time itself.

import { $, el } from '../js/dom.js';
import { bi, onLangChange, t } from '../js/i18n.js';
import { busy, clearAlert, showAlert } from './ui.js';

function paragraphs(text) {
  return text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean)
    .map((p) => el('p', {}, p));
}

export function setupDisclosure(ctx) {
  const box = $('#disc-box');
  const agree = $('#disc-agree');
  const confirm = $('#disc-confirm');
  const hint = $('#disc-hint');
  const done = $('#disc-done');
  const alertBox = $('#disc-alert');
  const next = $('#step-disclosure [data-next]');
  let doc = null;
  let readyAt = 0;
  let scrolledToEnd = false;
  let acknowledged = false;
  let timer = null;

  function secondsLeft() {
    return Math.max(0, Math.ceil((readyAt - Date.now()) / 1000));
  }

  function checkScroll() {
    // Issue 17: an empty box (text still loading) is not "read to the end".
    if (!doc || box.getAttribute('aria-busy') === 'true') return;
    if (box.scrollTop + box.clientHeight >= box.scrollHeight - 12) scrolledToEnd = true;
  }

  function render() {
    const left = secondsLeft();
    const ready = Boolean(doc) && scrolledToEnd && left === 0;
    hint.textContent = scrolledToEnd ? t('✓ 已阅读至文末', '✓ You have reached the end')
      : t('请向下滑动，阅读至文末', 'Scroll down to read to the end');
    hint.classList.toggle('good', scrolledToEnd);
    if (acknowledged) {
      agree.checked = true;
      agree.disabled = true;
      confirm.hidden = true;
      next.hidden = false;
      return;
    }
    confirm.hidden = false;
    next.hidden = true;
    agree.disabled = !ready;
    if (!ready) agree.checked = false;
    if (left > 0) {
      confirm.textContent = t(`请阅读（${left}秒）`, `Please read (${left} s)`);
    } else {
      confirm.textContent = t('确认并继续', 'Confirm and continue');
    }
    if (confirm.getAttribute('aria-busy') !== 'true') confirm.disabled = !(ready && agree.checked);
  }

  function stopTimer() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  async function acknowledge() {
    clearAlert(alertBox);
    if (!doc) return; // nothing loaded yet: nothing to confirm
    try {
      const body = await ctx.api.post('/application/disclosure', {
        version: doc.version,
        scrolled_to_end: true,
      });
      acknowledged = true;
      stopTimer();
      await ctx.resume(body.application);
    } catch (err) {
      showAlert(alertBox, err);
      if (err.code === 'disclosure_too_quick') {
        // Our clock ran ahead of the server's: wait a little more.
        readyAt = Date.now() + 3000;
        agree.checked = false;
        if (!timer) timer = setInterval(render, 500);
      } else if (err.code === 'disclosure_version_mismatch') {
        await load();
      }
    } finally {
      render();
    }
  }

  async function load() {
    doc = null;
    scrolledToEnd = false;
    agree.checked = false;
    box.setAttribute('aria-busy', 'true');
    box.replaceChildren(el('p', { className: 'muted' },
      bi('正在加载风险揭示书…', 'Loading the risk disclosure…')));
    render();
    let loaded;
    try {
      loaded = await ctx.api.get('/disclosure');
    } catch (err) {
      box.removeAttribute('aria-busy');
      box.replaceChildren();
      showAlert(alertBox, err);
      return;
    }
    doc = loaded;
    box.removeAttribute('aria-busy');
    $('#disc-title').replaceChildren(bi(doc.title_zh, doc.title_en));
    box.replaceChildren(
      el('div', { className: 'zh' }, ...paragraphs(doc.body_zh)),
      el('div', { className: 'en' }, ...paragraphs(doc.body_en)),
    );
    box.scrollTop = 0;
    readyAt = Date.now() + doc.min_read_seconds * 1000;
    scrolledToEnd = false;
    stopTimer();
    timer = setInterval(render, 500);
    // A short text that needs no scrolling counts as read to the end.
    requestAnimationFrame(() => {
      checkScroll();
      render();
    });
  }

  box.addEventListener('scroll', () => {
    if (!scrolledToEnd) {
      checkScroll();
      if (scrolledToEnd) render();
    }
  }, { passive: true });
  agree.addEventListener('change', render);
  confirm.addEventListener('click', async () => {
    await busy(confirm, acknowledge);
    render();
  });
  onLangChange(() => {
    checkScroll();
    render();
  });

  return {
    async enter() {
      clearAlert(alertBox);
      const ack = ctx.app && ctx.app.disclosure;
      acknowledged = Boolean(ack && ack.acknowledged_at);
      done.hidden = !acknowledged;
      if (acknowledged) {
        const at = new Date(ack.acknowledged_at);
        done.replaceChildren(bi(`✓ 您已于 ${at.toLocaleString('zh-CN')} 确认`,
          `✓ You confirmed on ${at.toLocaleString('en-GB')}`));
      }
      render();
      await load();
    },
    leave() {
      stopTimer();
    },
  };
}
