// OPS Center: the open-alerts counter beside «Automatizaciones» in the
// menu. It asks the server for the count (`GET /api/alerts?status=open`,
// scoped to the caller like every list) at login and again whenever the
// stream says an alert opened, was resolved or deleted, and when the
// stream comes back after a gap (what happened meanwhile is unknown).

import { api } from './api.js';
import { h } from './dom.js';
import * as live from './live.js';

let badge = null;
let timer = null;
let stops = [];

function draw(total) {
  const n = Number(total) || 0;
  badge.hidden = n === 0;
  badge.textContent = n > 99 ? '99+' : String(n);
  const words = n === 1 ? '1 alerta abierta' : `${n} alertas abiertas`;
  badge.setAttribute('aria-label', `${words}: ver el Watchdog`);
  badge.title = words;
  badge.dataset.count = String(n);
}

async function refresh() {
  try {
    const data = await api('GET', '/alerts?status=open&limit=1');
    if (badge) draw(data.total);
  } catch {
    // The counter is a hint; the Watchdog tab shows the error itself.
  }
}

/** Asked for many times in a burst, counts once. */
function soon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 300);
}

/** Puts the counter after the menu's `anchor` link and keeps it current. */
export function start(anchor) {
  stop();
  badge = h('a', { class: 'nav-count', href: '#/operacion/automatizaciones/watchdog', hidden: true, 'data-nav-count': 'alerts' });
  // The link and its counter share one row of the menu.
  let row = anchor.parentElement;
  if (!row.classList.contains('nav-row')) {
    row = h('div', { class: 'nav-row' });
    anchor.before(row);
    row.appendChild(anchor);
  }
  row.appendChild(badge);
  stops.push(live.subscribe((ev) => {
    if (typeof ev.kind === 'string' && ev.kind.startsWith('alert.')) soon();
  }));
  // Counted again when the stream comes back (not when it first opens:
  // the count below is that one).
  let opened = false;
  stops.push(live.onState((on) => {
    if (on && opened) soon();
    opened = opened || on;
  }));
  refresh();
}

/** Removes the counter (at logout). */
export function stop() {
  for (const s of stops) s();
  stops = [];
  clearTimeout(timer);
  if (badge) badge.remove();
  badge = null;
}
