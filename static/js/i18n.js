// Chinese first, English second, on every page. Text built by script is bi(zh, en):
// <span class="zh">…</span><span class="en">…</span>. Each page's CSS decides how the
// pair shows: the investor page shows one of them according to <html data-lang>
// (investor.css); staff pages show both, the English muted after a space (witness.css,
// review.css). Attributes and other one-language places use t(zh, en).

const STORAGE_KEY = 'witness.lang';
const listeners = new Set();

/** The current language: 'zh' (default) or 'en'. */
export function lang() {
  return document.documentElement.dataset.lang === 'en' ? 'en' : 'zh';
}

/** Text in the current language (for attributes and short-lived labels). */
export function t(zh, en) {
  return lang() === 'en' ? (en ?? zh) : zh;
}

/** Both languages as spans: switches with the page, no re-render needed. */
export function bi(zh, en) {
  const frag = document.createDocumentFragment();
  const a = document.createElement('span');
  a.className = 'zh';
  a.textContent = zh;
  const b = document.createElement('span');
  b.className = 'en';
  b.textContent = en ?? zh;
  frag.append(a, b);
  return frag;
}

/** An API error's message, both languages (message_zh / message). */
export function biError(err) {
  // A script error (TypeError …) is not for the person reading: they are told what to
  // do, the details go to the console (issue 17: "Cannot read properties of null").
  if (!err || (err.message_zh === undefined && err.code === undefined)) {
    if (err) console.error(err);
    return bi('页面出错，请刷新页面后重试。', 'Something went wrong on this page. Please reload it and try again.');
  }
  const en = err?.message || err?.code || 'Something went wrong.';
  const zh = err?.message_zh || en;
  return bi(zh, en);
}

/** Re-label elements whose text comes from attributes (options, aria-labels). */
export function relabel(root = document) {
  for (const el of root.querySelectorAll('[data-zh]')) {
    el.textContent = t(el.dataset.zh, el.dataset.en);
  }
  for (const el of root.querySelectorAll('[data-label-zh]')) {
    el.setAttribute('aria-label', t(el.dataset.labelZh, el.dataset.labelEn));
  }
}

export function setLang(value) {
  const next = value === 'en' ? 'en' : 'zh';
  const html = document.documentElement;
  html.dataset.lang = next;
  html.lang = next === 'en' ? 'en' : 'zh-CN';
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // Private mode may refuse storage; the switch still works for this page.
  }
  for (const button of document.querySelectorAll('[data-set-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.setLang === next));
  }
  relabel();
  for (const fn of listeners) fn(next);
}

export function onLangChange(fn) {
  listeners.add(fn);
}

/** Apply the stored choice and wire every [data-set-lang] button. */
export function initLang() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  for (const button of document.querySelectorAll('[data-set-lang]')) {
    button.addEventListener('click', () => setLang(button.dataset.setLang));
  }
  setLang(stored === 'en' ? 'en' : 'zh');
}
