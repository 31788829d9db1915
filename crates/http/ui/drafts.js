// What a person was typing when their session ended survives the new
// login: at the moment the session is found expired, every filled text
// field of the page is kept in sessionStorage under the page's address;
// after logging in again, the same page is drawn and each field gets its
// text back once it appears. The storage is the tab's own and is emptied
// once restored.

const PREFIX = 'ops-draft:';
/** How long to wait for the page's fields to appear after the login. */
const RESTORE_MS = 15000;

const fields = (root) => [...root.querySelectorAll('textarea, input:not([type]), input[type=text], input[type=number]')];

/** Which form a field belongs to: its `data-scope`, else its class. */
const formKey = (f) => (f.form ? f.form.dataset.scope || f.form.className || 'form' : 'page');

const keyOf = (f) => `${formKey(f)}|${f.name || f.getAttribute('aria-label') || ''}`;

/** Keeps the text typed in `root`'s fields for the page `hash`. */
export function saveDrafts(root, hash) {
  const typed = fields(root)
    .filter((f) => f.value !== f.defaultValue && f.value.trim() !== '' && f.type !== 'password')
    .map((f) => ({ key: keyOf(f), value: f.value }));
  if (typed.length === 0) return;
  try {
    sessionStorage.setItem(PREFIX + hash, JSON.stringify(typed));
  } catch {
    // Storage full or refused: nothing to keep then.
  }
}

/** Puts back, as `root`'s fields appear, the drafts kept for `hash`. */
export function restoreDrafts(root, hash) {
  let drafts;
  try {
    drafts = JSON.parse(sessionStorage.getItem(PREFIX + hash) || 'null');
  } catch {
    drafts = null;
  }
  if (!Array.isArray(drafts) || drafts.length === 0) return;
  const pending = new Map(drafts.map((d) => [d.key, d.value]));
  const fillIn = () => {
    for (const f of fields(root)) {
      const key = keyOf(f);
      if (!pending.has(key)) continue;
      // A field whose form is hidden (a closed panel) waits until shown.
      if (f.closest('[hidden]')) continue;
      f.value = pending.get(key);
      pending.delete(key);
    }
    if (pending.size === 0) stop();
  };
  const observer = new MutationObserver(fillIn);
  const timer = setTimeout(() => stop(), RESTORE_MS);
  function stop() {
    observer.disconnect();
    clearTimeout(timer);
    try {
      sessionStorage.removeItem(PREFIX + hash);
    } catch {
      // Nothing to clean then.
    }
  }
  observer.observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden'] });
  fillIn();
}
