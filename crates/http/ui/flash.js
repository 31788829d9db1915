// OPS Center: telling the person what happened — a message above the
// view (one at a time), or a note inside a panel; a refusal in the page's
// Spanish, the server's own words kept as a collapsed detail.

import { ApiError } from './api.js';
import { add, byId, fill, h } from './dom.js';
import { detailNode } from './errors_es.js';

/** Shows a message above the current view: `kind` is `error`, `warn` or
 *  `ok`. One at a time: a new one replaces the one shown. */
export function flash(kind, text, detail) {
  const box = byId('flash');
  const close = h('button', { type: 'button', class: 'flash-close', 'aria-label': 'Cerrar' }, '×');
  const item = h('div', { class: `flash-item flash-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'flash-text' }, text),
    detail ? h('span', { class: 'flash-detail' }, detail) : null,
    close);
  close.addEventListener('click', () => item.remove());
  box.replaceChildren(item);
  if (kind === 'ok') setTimeout(() => item.remove(), 6000);
  return item;
}

/** The message the next page drawn shows (after a change of address). */
let pending = null;

/** Shows `flash(kind, text)` once the next page is drawn. */
export function flashNext(kind, text) {
  pending = [kind, text];
}

/** Removes the message shown. */
export function clearFlash() {
  fill(byId('flash'));
}

/** Shows the message left for this page by `flashNext`, if any. */
export function showNextFlash() {
  if (!pending) return;
  flash(...pending);
  pending = null;
}

export function errorDetail(err) {
  return err instanceof ApiError ? detailNode(err) : null;
}

export function showError(err) {
  flash('error', err.message || String(err), errorDetail(err));
}

/** An inline message inside a panel (replaces what was there). */
export function setNote(el, kind, text, detail, context) {
  fill(el);
  el.hidden = !text;
  el.className = `note note-${kind}`;
  if (text) {
    add(el, context ? h('strong', { class: 'note-context' }, context) : null,
      h('span', null, text), detail ? h('span', { class: 'note-detail' }, detail) : null);
  }
}

/** What the UI was doing when the server refused, said in the page's
 *  language; the server's own message follows it. */
const REFUSAL_CONTEXT = {
  done_guard: 'La guarda de «hecha» rechazó el cambio: falta evidencia de salida.',
  human_gate: 'Human Gate: esta tarea sensible necesita la aprobación de una persona antes de despacharse.',
  forbidden: 'No tienes permiso para esta acción.',
  stale_claim: 'El worker ya no tiene esta tarea reclamada.',
};

export function noteError(el, err, context) {
  const ctx = (err instanceof ApiError && REFUSAL_CONTEXT[err.code]) || context;
  setNote(el, 'error', err.message || String(err), errorDetail(err), ctx);
}

/** A new note saying `err`. */
export function noteNode(err) {
  const el = h('div');
  noteError(el, err);
  return el;
}

/** Runs `fn` with `button` disabled, reporting errors in `noteEl` (or
 *  above the view), after `context` when given. */
export async function busy(button, fn, noteEl, context) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    if (noteEl) noteError(noteEl, err, context);
    else showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}
