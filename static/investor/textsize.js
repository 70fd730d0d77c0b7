// Large text (issue 17, older investors): a button beside the language switch makes all
// text larger; the choice is kept for the next visit. The page also stays usable when
// the browser's own text size is 200% (WCAG 1.4.4).

const STORAGE_KEY = 'witness.textSize';

function apply(large) {
  const html = document.documentElement;
  if (large) html.dataset.text = 'large';
  else delete html.dataset.text;
  const button = document.getElementById('text-size');
  if (button) button.setAttribute('aria-pressed', String(large));
}

export function initTextSize() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // private mode: the choice lasts for this page only
  }
  apply(stored === 'large');
  const button = document.getElementById('text-size');
  if (!button) return;
  button.addEventListener('click', () => {
    const large = document.documentElement.dataset.text !== 'large';
    apply(large);
    try {
      localStorage.setItem(STORAGE_KEY, large ? 'large' : 'normal');
    } catch {
      // as above
    }
  });
}
