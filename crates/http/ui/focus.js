// Keyboard and screen-reader users land on the page's heading after each
// page change (not on the body), and the skip link takes them past the
// menu to the content.

/** Moves the focus to `root`'s first heading as soon as it appears. */
export function focusHeading(root) {
  const tryFocus = () => {
    const h1 = root.querySelector('h1');
    if (!h1) return false;
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: true });
    return true;
  };
  if (tryFocus()) return;
  const observer = new MutationObserver(() => {
    if (tryFocus()) observer.disconnect();
  });
  observer.observe(root, { childList: true, subtree: true });
  // A page that never draws a heading stops being watched.
  setTimeout(() => observer.disconnect(), 10000);
}

/** The skip link: its target is the content's heading, not an address
 *  (the address is the router's). */
export function skipLink(link, root) {
  link.addEventListener('click', (ev) => {
    ev.preventDefault();
    const h1 = root.querySelector('h1');
    const target = h1 || root;
    target.setAttribute('tabindex', '-1');
    target.focus();
  });
}
