// A task's history: its events (GET /api/events?task_id=N) as a
// timeline — who, what (in Spanish, per kind), from → to, when — newest
// first, with the stream's events added as they come. The agent's output
// chunks are left out: they are in «Salida del agente en vivo».

import { api } from './api.js';
import { h } from './dom.js';
import { STATUS_LABEL } from './vocabulary.js';

const FIELD = {
  title: 'título', description: 'prompt', execution: 'ejecución', agent_id: 'agente', agent: 'agente',
  model: 'modelo', priority: 'prioridad', sensitive: 'sensible', blocked: 'bloqueo',
  blocked_reason: 'motivo del bloqueo', status: 'estado', repo_path: 'repositorio', base_ref: 'rama base',
  expects_changes: 'espera cambios',
  gate_approved_at: 'aprobación del Human Gate',
};

const COMMENT = { note: 'una nota', blocker: 'un bloqueo', log: 'un log', system: 'un comentario del sistema' };

/** What each kind of event says; `p` is its payload. A kind the table
 *  does not know is shown by its name. */
const WHAT = {
  'task.created': () => 'creó la tarea',
  'task.updated': (p) => {
    const fields = (p.changed || []).map((f) => FIELD[f] || f);
    return fields.length ? `editó: ${fields.join(', ')}` : 'editó la tarea';
  },
  'task.status_changed': (p) => (p.forced ? 'cambió el estado (forzado)' : 'cambió el estado'),
  'task.done_forced': () => 'forzó «Hecha» sin evidencia de salida',
  'task.unblocked': (p) => (p.because === 'done' ? 'se desbloqueó al pasar a «Hecha»' : 'desbloqueó la tarea'),
  'task.archived': () => 'archivó la tarea',
  'task.unarchived': () => 'desarchivó la tarea',
  'task.commented': (p) => `comentó ${COMMENT[p.kind] || ''}`.trim(),
  'task.dispatched': () => 'despachó la tarea',
  'task.retried': () => 'reintentó la tarea',
  'task.cancelled': () => 'canceló la ejecución',
  'task.deleted': () => 'borró la tarea',
  'dispatch.claimed': (p) => `un worker la reclamó${p.worker_id ? ` (${p.worker_id})` : ''}${p.attempt ? `, intento ${p.attempt}` : ''}`,
  'dispatch.started': (p) => `el agente arrancó${p.pid ? ` (pid ${p.pid})` : ''}`,
  'dispatch.finished': (p) => `el agente terminó${p.exit_code !== undefined && p.exit_code !== null ? ` con código ${p.exit_code}` : ''}${p.signal ? ` (señal ${p.signal})` : ''}`,
  'dispatch.failed': (p) => `el dispatch falló${p.exit_code !== undefined && p.exit_code !== null ? ` (código ${p.exit_code})` : ''}${p.signal ? ` (señal ${p.signal})` : ''}`,
  'dispatch.claim_lost': (p) => `el worker perdió la tarea${p.worker_id ? ` (${p.worker_id})` : ''}`,
  'dispatch.reconciled_stale': () => 'se reconcilió como stale',
  'dispatch.reconciled_stale_running': (p) => `se recuperó de su worker${p.worker_id ? ` (${p.worker_id})` : ''}: ${p.why === 'unlisted' ? 'dejó de listarla' : 'dejó de enviar heartbeat'}`,
  'dispatch.human_gate_blocked': () => 'el Human Gate bloqueó el dispatch',
  'dispatch.repo_refused': () => 'no se entregó a ningún launcher: su workspace no permite su repositorio',
  'dispatch.change': (p) => `el agente dejó cambios${p.branch ? ` en ${p.branch}` : ''}`,
  'dispatch.cancel_confirmed': () => 'el launcher confirmó la cancelación',
  'dispatch.stale': () => 'alerta: atascada en dispatching',
  'dispatch.worker_stale': () => 'alerta: su worker dejó de responder',
  'dispatch.stale_running': () => 'alerta: en curso sin su worker',
  'review.comment': (p) => `comentó ${p.file ? `${p.file}:${p.end_line && p.end_line !== p.line ? `${p.line}–${p.end_line}` : p.line}${p.side === 'old' ? ' (antes)' : ''} ` : ''}en la revisión`,
  'review.comment_deleted': (p) => `borró un comentario de la revisión${p.file ? ` en ${p.file}` : ''}`,
  'review.sent': (p) => `envió la revisión al agente${typeof p.count === 'number' ? ` (${p.count} ${p.count === 1 ? 'comentario' : 'comentarios'})` : ''}`,
  'gate.approved': () => 'aprobó el Human Gate',
  'gate.approval_withdrawn': () => 'se retiró la aprobación del Human Gate',
  'gate.sensitive_cleared': () => 'quitó la marca «sensible»',
  'alert.opened': () => 'se abrió una alerta',
  'alert.reopened': () => 'se reabrió una alerta',
  'alert.occurred': () => 'la alerta se repitió',
  'alert.resolved': () => 'se resolvió una alerta',
};

/** Kinds that matter more than the rest: shown marked. */
const NOTABLE = new Set(['task.done_forced', 'gate.approved', 'task.cancelled', 'dispatch.failed',
  'dispatch.reconciled_stale_running',
  'dispatch.human_gate_blocked', 'dispatch.repo_refused', 'dispatch.cancel_confirmed', 'gate.approval_withdrawn']);

const payloadOf = (ev) => (ev.payload && typeof ev.payload === 'object' ? ev.payload : {});

/** Reasons the server writes in English, in the page's words; a reason
 *  a person wrote (or one not listed) is shown as written. */
const REASONS = [
  [/^no visible output evidence$/, () => 'sin evidencia de salida visible'],
  [/^workspace repository changed after approval$/, () => 'cambió el repositorio del workspace después de la aprobación'],
  [/^the workspace no longer allows the task's repository$/, () => 'el workspace ya no permite el repositorio de la tarea'],
  [/^"(.*)" is not allowed in workspace (\d+)/, (m) => `el workspace #${m[2]} no permite el repositorio ${m[1]}`],
  [/^(.*) changed after approval$/, (m) => `cambió ${m[1].split(', ').map((f) => FIELD[f] || f).join(', ')} después de la aprobación`],
];

function reasonText(r) {
  for (const [re, say] of REASONS) {
    const m = re.exec(r);
    if (m) return say(m);
  }
  return r;
}

/** The detail under a line: a reason, how a cancelled run ended. */
function detail(ev) {
  const p = payloadOf(ev);
  const parts = [];
  // A forced «Hecha» says its reason in its own line already.
  if (typeof p.reason === 'string' && p.reason && ev.kind !== 'task.done_forced') parts.push(reasonText(p.reason));
  if (typeof p.ended === 'string') parts.push(p.ended);
  if (p.elapsed_seconds !== undefined) parts.push(`tras ${p.elapsed_seconds} s`);
  return parts.join(' · ');
}

/** Who did it: a person by name, the service token, a worker, the
 *  watchdog, as the log names them (`user:ana`, `service`, …). */
export function who(actor) {
  if (!actor) return '—';
  if (actor.startsWith('user:')) return actor.slice(5);
  if (actor === 'service') return 'servicio (token)';
  return actor;
}

function fmt(at) {
  const ms = Date.parse(at);
  return Number.isNaN(ms) ? String(at || '') : new Date(ms).toLocaleString('es-ES', { dateStyle: 'short', timeStyle: 'medium' });
}

function line(ev) {
  const p = payloadOf(ev);
  const say = WHAT[ev.kind];
  // A forced «Hecha» names only where it came from.
  const to = p.to || (ev.kind === 'task.done_forced' ? 'done' : null);
  const move = p.from && to && p.from !== to
    ? h('span', { class: 'move' }, `${STATUS_LABEL[p.from] || p.from} → ${STATUS_LABEL[to] || to}`) : null;
  const more = detail(ev);
  return h('li', { class: `event${NOTABLE.has(ev.kind) ? ' notable' : ''}`, 'data-kind': ev.kind, 'data-id': ev.id },
    h('time', { datetime: ev.at, title: ev.at }, fmt(ev.at)),
    h('span', { class: 'event-body' },
      h('strong', { title: ev.actor || '' }, who(ev.actor)), ' ', say ? say(p) : ev.kind, move ? [' · ', move] : null,
      ' ', h('code', { class: 'muted small' }, ev.kind),
      more ? h('span', { class: 'sub' }, more) : null));
}

/** The history panel of task `id`: `node` to place on the page (the
 *  same node across redraws) and `add(event)` for the stream's. */
export function historyPanel(id) {
  const list = h('ol', { class: 'timeline' });
  const status = h('p', { class: 'muted small' }, 'Cargando el historial…');
  const seen = new Set();
  const add = (ev, atEnd) => {
    if (ev.kind === 'dispatch.output' || seen.has(ev.id)) return;
    seen.add(ev.id);
    if (atEnd) list.appendChild(line(ev));
    else list.prepend(line(ev));
    status.hidden = true;
  };
  api('GET', `/events?task_id=${id}&limit=1000`).then((data) => {
    const events = (data && data.events) || [];
    // Newest first, as the API lists them. The log keeps the events of a
    // deleted task, whose id a newer task may have been given: this
    // task's history starts at its own creation.
    const start = events.findIndex((ev) => ev.kind === 'task.created');
    for (const ev of start < 0 ? events : events.slice(0, start + 1)) add(ev, true);
    status.textContent = 'Sin eventos.';
    status.hidden = list.children.length > 0;
  }).catch((err) => {
    status.textContent = `No se pudo cargar el historial: ${err.message}`;
  });
  const node = h('section', { class: 'panel history', 'aria-labelledby': `history-${id}` },
    h('h2', { id: `history-${id}` }, 'Historial'), status, list);
  return { id, node, add };
}
