// OPS Center: the life of the page shown. Each page drawn has a number
// (`seq`); an answer or an event that arrives after the page changed is
// dropped, and the page's stream subscriptions end with it.

import { h } from './dom.js';
import * as live from './live.js';

let renderSeq = 0;

/** The stream subscriptions of the page shown; dropped when it changes. */
let pageWatchers = [];

/** Starts a new page: the previous one's subscriptions end. Returns its
 *  number. */
export function newPage() {
  const seq = ++renderSeq;
  for (const stop of pageWatchers) stop();
  pageWatchers = [];
  return seq;
}

/** What draws the page for the address shown: the router's, set by the
 *  entry module (the router draws the pages, so they cannot import it). */
let drawPage = () => {};

export function onRedraw(fn) {
  drawPage = fn;
}

/** Draws the page shown again, from the start. */
export function redraw() {
  drawPage();
}

/** Whether a render started as `seq` is still the current one. */
export const current = (seq) => seq === renderSeq;

/** While the page `seq` is shown, calls `fn(event)` for the stream's
 *  events that `wanted(event)` accepts. */
export function watch(seq, wanted, fn) {
  const stop = live.subscribe((ev) => {
    if (!current(seq)) return stop();
    if (wanted(ev)) fn(ev);
  });
  pageWatchers.push(stop);
}

/** `fn`, run at most once per `ms` however many times it is asked for:
 *  a burst of events costs one reload. */
export function debounced(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

/** A page's header: breadcrumbs, title and its buttons. */
export function pageHeader(crumbs, title, ...actions) {
  return h('header', { class: 'page-header' },
    h('div', null,
      crumbs ? h('p', { class: 'crumbs' }, crumbs) : null,
      h('h1', null, title)),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}
