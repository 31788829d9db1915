// OPS Center: a task's statuses, execution and flags in the page's words,
// and which statuses a person may set.

import { h } from './dom.js';

export const STATUSES = ['next', 'queued', 'dispatching', 'doing', 'review', 'done', 'waiting'];
export const STATUS_LABEL = {
  next: 'Siguiente',
  queued: 'En cola',
  dispatching: 'Despachando',
  doing: 'En curso',
  review: 'En revisión',
  done: 'Hecha',
  waiting: 'En espera',
};
/** Statuses a person may set by hand: `queued` comes from dispatch and
 *  `dispatching` from a worker's claim. */
export const MANUAL_STATUSES = ['next', 'doing', 'review', 'done', 'waiting'];
/** Statuses from which a task may be dispatched. */
export const DISPATCHABLE = ['next', 'waiting', 'review'];
/** Statuses in which a task is on its way to, or with, a worker. */
export const IN_FLIGHT = ['queued', 'dispatching', 'doing'];
export const EXECUTION_LABEL = { manual: 'Manual', interactive: 'Interactiva (agente)' };

export function statusChip(status) {
  return h('span', { class: `chip status-${status}`, title: status }, STATUS_LABEL[status] || status);
}

/** The chips for a task's marks: sensitive (and its gate), blocked,
 *  archived. */
export function taskFlags(t) {
  return [
    t.sensitive ? h('span', { class: `chip ${t.gate_approved_at ? 'flag-ok' : 'flag-warn'}`, title: t.gate_approved_at ? `Human Gate aprobado por ${t.gate_approved_by || '?'}` : 'Sensible: necesita aprobación del Human Gate' },
      t.gate_approved_at ? 'Gate aprobado' : 'Sensible') : null,
    t.blocked ? h('span', { class: 'chip flag-bad', title: t.blocked_reason || 'Bloqueada' }, 'Bloqueada') : null,
    t.archived_at ? h('span', { class: 'chip flag-muted' }, 'Archivada') : null,
  ];
}
