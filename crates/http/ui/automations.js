// OPS Center: Operación → Automatizaciones. «Dispatching»: the service's
// health (`GET /api/dispatch/health`), the dispatch switch, the workers,
// the queue and «Reconciliar stale»; «Watchdog»: running it and its
// alerts. The pages' fixed parts are index.html's templates.

import { api, query } from './api.js';
import { add, fill, h, template } from './dom.js';
import { busy, flash, noteError, noteNode, setNote, showError } from './flash.js';
import { alertDetail, alertTitle, warningText } from './health_es.js';
import { current, debounced, watch } from './page.js';
import { gate, mayAdminister, mayOperate, mayResolveAlert } from './roles.js';
import { me } from './session.js';
import { ago, fmtDuration, fmtTime, parseTime, timeEl } from './time.js';
import { STATUS_LABEL } from './vocabulary.js';

const QUEUE_KEYS = ['next', 'queued', 'dispatching', 'doing', 'review', 'waiting', 'blocked',
  'stale_queued', 'stale_dispatching', 'stale_running'];
const QUEUE_LABEL = {
  ...STATUS_LABEL, blocked: 'Bloqueadas', stale_queued: 'En cola sin worker',
  stale_dispatching: 'Dispatching stale', stale_running: 'En curso sin worker',
};
/** Counts of tasks past their deadline: shown as a problem when not 0. */
const QUEUE_LATE = new Set(['stale_queued', 'stale_dispatching', 'stale_running']);
const DEFAULT_STALE_MINUTES = 20;

/** Operación → Automatizaciones with the tab `tab` (`dispatching` or
 *  `watchdog`) open. */
export function renderAutomations(view, tab, seq) {
  const { frag, slots } = template('tpl-automatizaciones');
  for (const a of frag.querySelectorAll('[data-tab]')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
  }
  add(view, frag);
  if (tab === 'watchdog') renderWatchdog(slots.body, seq);
  else renderDispatching(slots.body, seq);
}

/** The stale threshold in minutes: health's settings, else the settings
 *  endpoint, else the documented fallback. */
function staleMinutes(health, settings) {
  for (const src of [health && health.settings, settings]) {
    const v = src ? Number(src.dispatch_stale_minutes) : NaN;
    if (Number.isFinite(v) && v > 0) return v;
  }
  return DEFAULT_STALE_MINUTES;
}

function renderDispatching(body, seq) {
  const { frag, slots } = template('tpl-dispatching');
  add(body, frag);
  let minutes = DEFAULT_STALE_MINUTES;

  const load = async () => {
    const [health, settings, dispatching] = await Promise.allSettled([
      api('GET', '/dispatch/health'),
      api('GET', '/settings'),
      api('GET', `/tasks${query({ status: 'dispatching', limit: 200 })}`),
    ]);
    if (!current(seq)) return;
    slots.stamp.textContent = `Actualizado ${fmtTime(new Date().toISOString())}`;
    const h0 = health.status === 'fulfilled' ? health.value : null;
    const s0 = settings.status === 'fulfilled' ? settings.value : null;
    minutes = staleMinutes(h0, s0);
    slots['stale-minutes'].textContent = String(minutes);
    slots.minutes.placeholder = String(minutes);
    drawHealth(slots.health, h0, health.status === 'rejected' ? health.reason : null, s0, load);
    drawStale(slots['stale-list'], dispatching, minutes);
  };
  // Workers, health, the queue and stale tasks follow the stream; output
  // chunks change none of them.
  watch(seq, (ev) => ev.kind !== 'dispatch.output', debounced(() => load().catch(showError), 800));

  const { refresh, reconcile, minutes: minutesInput } = slots;
  const denied = mayAdminister(me());
  if (denied) {
    // Reconciling is for global admins: not offered to anyone else.
    reconcile.hidden = true;
    minutesInput.closest('label').hidden = true;
    reconcile.after(h('span', { class: 'muted small denied' }, `Reconciliar stale: ${denied}`));
  }
  const out = slots['reconcile-result'];
  refresh.addEventListener('click', () => busy(refresh, load));
  reconcile.addEventListener('click', () => {
    const raw = minutesInput.value.trim();
    const request = raw === '' ? {} : { minutes: Number(raw) };
    if (raw !== '' && !(Number.isInteger(request.minutes) && request.minutes >= 0)) {
      setNote(out, 'error', 'Los minutos deben ser un número entero de 0 en adelante.');
      return;
    }
    const shown = raw === '' ? minutes : request.minutes;
    const question = shown === 0
      ? '¿Reconciliar TODAS las tareas en dispatching? Pasarán a «En espera» bloqueadas.'
      : `¿Reconciliar las tareas en dispatching desde hace más de ${shown} min? Pasarán a «En espera» bloqueadas.`;
    if (!confirm(question)) return;
    busy(reconcile, async () => {
      const r = await api('POST', '/dispatch/reconcile-stale', request);
      const ids = r.task_ids || [];
      setNote(out, r.reconciled ? 'ok' : 'info',
        `stale_minutes: ${r.stale_minutes} · reconciled: ${r.reconciled} · task_ids: ${ids.length ? ids.map((i) => `#${i}`).join(', ') : '—'}`,
        r.reconciled
          ? 'Cada tarea queda en «En espera», bloqueada, con un comentario de bloqueo y una alerta dispatch.stale.'
          : 'No había tareas stale.');
      await load();
    }, out);
  });
  busy(refresh, load);
}

function card(title, value, extra, cls) {
  return h('div', { class: `card ${cls || ''}` },
    h('p', { class: 'card-title' }, title),
    h('p', { class: 'card-value' }, value),
    extra ? h('div', { class: 'card-extra' }, extra) : null);
}

function yesNo(v) {
  return v ? 'sí' : 'no';
}

function drawHealth(area, health, err, settings, reload) {
  fill(area);
  const toggleNote = h('div', { hidden: true });
  const enabled = health ? Boolean(health.dispatch_enabled)
    : settings ? Boolean(settings.dispatch_enabled) : null;

  const toggle = h('button', {
    type: 'button', role: 'switch', class: `switch ${enabled ? 'on' : ''}`,
    'aria-checked': String(Boolean(enabled)), disabled: enabled === null,
  }, h('span', { class: 'knob' }), enabled ? 'Dispatch activado' : 'Dispatch desactivado');
  const mayToggle = mayOperate(me());
  gate(toggle, mayToggle);
  if (mayToggle) setNote(toggleNote, 'info', mayToggle);
  toggle.addEventListener('click', () => {
    const next = !enabled;
    const question = next
      ? '¿Activar el dispatch? Los launchers empezarán a recibir tareas en cola.'
      : '¿Desactivar el dispatch? Los launchers dejarán de recibir tareas nuevas.';
    if (!confirm(question)) return;
    busy(toggle, async () => {
      await api('PUT', '/settings/dispatch_enabled', { value: next ? 'true' : 'false' });
      flash('ok', next ? 'Dispatch activado.' : 'Dispatch desactivado.');
      await reload();
    }, toggleNote);
  });

  if (err) {
    const note = h('div');
    noteError(note, err);
    add(area, note, h('section', { class: 'panel row' }, toggle, h('span', { class: 'muted small' }, 'dispatch_enabled (ajuste)')), toggleNote);
    return;
  }

  const ws = health.worker_summary || {};
  const queue = health.queue || {};
  const slugs = health.agent_slugs || [];
  const warnings = health.warnings || [];
  const stale = Number(queue.stale_dispatching || 0);

  add(area, 
    warnings.length ? h('section', { class: 'panel callout warn' },
      h('h2', null, `Avisos (${warnings.length})`),
      h('ul', { class: 'warnings' }, warnings.map((w) => h('li', null, warningText(w))))) : null,
    h('div', { class: 'cards' },
      card('Servicio', health.ok ? 'OK' : 'Con fallos', h('code', null, `ok=${health.ok}`), health.ok ? 'good' : 'bad'),
      card('Dispatch', h('span', null, toggle), toggleNote, enabled ? 'good' : 'neutral'),
      card('Workers frescos', `${ws.fresh ?? 0} / ${ws.total ?? 0}`,
        `${ws.stale ?? 0} sin heartbeat reciente · slots ${ws.slots_busy ?? 0}/${ws.slots_total ?? 0} ocupados`,
        enabled && !(ws.fresh > 0) ? 'bad' : (ws.fresh > 0 ? 'good' : 'neutral')),
      card('Dispatching stale', String(stale), h('code', null, 'queue.stale_dispatching'), stale > 0 ? 'bad' : 'good')),
    h('section', { class: 'panel' },
      h('h2', null, 'Cola'),
      h('div', { class: 'queue' }, QUEUE_KEYS.map((k) => h('div', { class: `queue-item ${QUEUE_LATE.has(k) && Number(queue[k] || 0) > 0 ? 'bad' : ''}`, title: `queue.${k}` },
        h('span', { class: 'queue-count' }, String(queue[k] ?? 0)),
        h('span', { class: 'queue-label' }, QUEUE_LABEL[k]))))),
    h('section', { class: 'panel' },
      h('h2', null, 'Agentes utilizables ', h('code', { class: 'muted small' }, 'agent_slugs')),
      slugs.length
        ? h('div', { class: 'chips' }, slugs.map((s) => h('span', { class: 'chip flag-ok' }, s)))
        : h('p', { class: 'muted' }, 'Ningún worker fresco puede ejecutar agentes ahora.')),
    workersPanel(health.workers || []));
}

function workersPanel(workers) {
  const agentCell = (w) => (w.agents || []).map((a) => {
    if (typeof a === 'string') return h('span', { class: 'chip' }, a);
    const usable = a.available !== false && a.authenticated !== false;
    const why = [a.cli ? `cli: ${a.cli}` : null, `disponible: ${yesNo(a.available)}`,
      `autenticado: ${yesNo(a.authenticated)}`, a.reason || null].filter(Boolean).join(' · ');
    return h('span', { class: `chip ${usable ? 'flag-ok' : 'flag-bad'}`, title: why }, a.slug || '?');
  });
  const fresh = (w) => (w.fresh === undefined ? null : w.fresh);
  return h('section', { class: 'panel table-panel' },
    h('h2', { class: 'pad-h' }, `Workers (${workers.length})`),
    workers.length === 0 ? h('p', { class: 'muted pad' }, 'Ningún launcher ha enviado heartbeat.') : h('table', { class: 'table' },
      h('thead', null, h('tr', null, h('th', null, 'Worker'), h('th', null, 'Host / pid'), h('th', null, 'Agentes'),
        h('th', null, 'Modelos'), h('th', null, 'Slots'), h('th', null, 'En ejecución'), h('th', null, 'Último heartbeat'))),
      h('tbody', null, workers.map((w) => h('tr', null,
        h('td', null, h('code', null, w.worker_id || '?'),
          fresh(w) === null ? null : h('span', { class: `chip ${fresh(w) ? 'flag-ok' : 'flag-bad'}` }, fresh(w) ? 'fresco' : 'stale'),
          w.draining ? h('span', { class: 'chip flag-warn' }, 'drenando') : null,
          w.version ? h('div', { class: 'sub' }, `v${w.version}`) : null),
        h('td', null, w.host || '—', w.pid ? h('div', { class: 'sub' }, `pid ${w.pid}`) : null),
        h('td', { class: 'flags' }, agentCell(w)),
        h('td', null, (w.models || []).length ? (w.models || []).join(', ') : h('span', { class: 'muted' }, 'todos')),
        h('td', { class: 'num' }, `${w.slots_busy ?? 0}/${w.slots_total ?? 0}`),
        h('td', null, (w.running_task_ids || []).length
          ? (w.running_task_ids || []).map((id, i) => [i ? ', ' : '', h('a', { href: `#/tareas/${Number(id)}` }, `#${Number(id)}`)])
          : h('span', { class: 'muted' }, '—')),
        h('td', null, timeEl(w.last_seen_at), h('div', { class: 'sub' }, ago(w.last_seen_at))))))));
}

/** The moment a dispatching task entered `dispatching`. */
function dispatchingSince(t) {
  return t.claimed_at || t.dispatch_started_at || t.updated_at;
}

/** The tasks in `dispatching`, the stale ones flagged. */
function drawStale(area, result, minutes) {
  fill(area);
  if (result.status === 'rejected') {
    add(area, noteNode(result.reason));
    return;
  }
  const tasks = result.value.tasks || [];
  if (tasks.length === 0) {
    add(area, h('p', { class: 'muted' }, 'Ninguna tarea en dispatching.'));
    return;
  }
  const now = Date.now();
  add(area, h('table', { class: 'table' },
    h('thead', null, h('tr', null, h('th', { class: 'num' }, '#'), h('th', null, 'Título'), h('th', null, 'Agente'),
      h('th', null, 'Worker'), h('th', null, 'Reclamada'), h('th', null, 'Tiempo en dispatching'), h('th', null, ''))),
    h('tbody', null, tasks.map((t) => {
      const since = parseTime(dispatchingSince(t));
      const age = since === null ? null : now - since;
      const isStale = age !== null && age > minutes * 60000;
      return h('tr', { class: isStale ? 'row-bad' : null },
        h('td', { class: 'num' }, h('a', { href: `#/tareas/${t.id}` }, String(t.id))),
        h('td', null, h('a', { href: `#/tareas/${t.id}` }, t.title)),
        h('td', null, t.agent ? h('code', null, t.agent) : '—'),
        h('td', null, t.claimed_by ? h('code', null, t.claimed_by) : '—'),
        h('td', null, timeEl(dispatchingSince(t))),
        h('td', null, age === null ? '—' : fmtDuration(age)),
        h('td', null, isStale ? h('span', { class: 'chip flag-alarm' }, 'STALE') : h('span', { class: 'chip flag-ok' }, 'en plazo')));
    }))));
}

function renderWatchdog(body, seq) {
  const { frag, slots } = template('tpl-watchdog');
  const { run, refresh, resolved: showResolved, report, alerts: alertsArea } = slots;
  add(body, frag);
  const mayRun = mayOperate(me());
  if (mayRun) {
    run.hidden = true;
    run.after(h('span', { class: 'muted small denied' }, `Ejecutar watchdog: ${mayRun}`));
  }

  const load = async () => {
    const status = showResolved.checked ? 'resolved' : 'open';
    try {
      const data = await api('GET', `/alerts${query({ status, limit: 200 })}`);
      if (current(seq)) drawAlerts(alertsArea, data.alerts || [], data.total, status, load);
    } catch (err) {
      if (current(seq)) fill(alertsArea, noteNode(err));
    }
  };
  showResolved.addEventListener('change', () => busy(refresh, load));
  refresh.addEventListener('click', () => busy(refresh, load));
  // Alerts follow the stream.
  watch(seq, (ev) => ev.kind.startsWith('alert') || ev.kind.startsWith('watchdog'), debounced(load, 800));
  run.addEventListener('click', () => busy(run, async () => {
    report.hidden = false;
    fill(report, h('p', { class: 'muted' }, 'Ejecutando el watchdog…'));
    try {
      const r = await api('POST', '/watchdog/run', {});
      if (!current(seq)) return;
      fill(report, h('h2', null, 'Informe del watchdog ', h('span', { class: 'muted small' }, fmtTime(new Date().toISOString()))), reportEl(r));
      flash('ok', 'Watchdog ejecutado.');
    } catch (err) {
      fill(report, h('h2', null, 'Informe del watchdog'), noteNode(err));
    }
    await load();
  }));
  busy(refresh, load);
}

const ALERT_CHANGE_LABEL = { opened: 'nueva', reopened: 'reabierta', counted: 'repetida', stillopen: 'sigue abierta' };

function taskLink(id) {
  const n = Number(id);
  return Number.isInteger(n) && n > 0 ? h('a', { href: `#/tareas/${n}` }, `#${n}`) : String(id);
}

function taskLinks(ids) {
  if (!Array.isArray(ids) || ids.length === 0) return h('span', { class: 'muted' }, 'ninguna');
  return h('span', null, ids.map((id, i) => [i ? ', ' : '', taskLink(id)]));
}

/** The report of POST /api/watchdog/run: what it reconciled, the alerts
 *  it opened or reopened, the follow-up tasks it created; any other field
 *  as it came, and the raw JSON on demand. */
function reportEl(r) {
  if (!r || typeof r !== 'object') return h('pre', { class: 'output' }, JSON.stringify(r, null, 2));
  const rows = [];
  const known = new Set(['ran_at', 'stale_minutes', 'reconciled', 'task_ids', 'alerts', 'resolved_alerts', 'followup_task_ids']);
  if ('ran_at' in r) rows.push(['Ejecutado', timeEl(r.ran_at)]);
  if ('reconciled' in r) {
    rows.push(['Tareas stale reconciliadas', h('span', null, `${r.reconciled ?? 0}`,
      'stale_minutes' in r ? h('span', { class: 'muted' }, ` (más de ${r.stale_minutes} min en dispatching)`) : null,
      Array.isArray(r.task_ids) && r.task_ids.length ? [': ', taskLinks(r.task_ids)] : null)]);
  }
  if ('alerts' in r) {
    const list = Array.isArray(r.alerts) ? r.alerts : [];
    rows.push(['Alertas', list.length === 0 ? h('span', { class: 'muted' }, 'ninguna nueva') : h('ul', { class: 'plain' }, list.map((x) => h('li', null,
      x.change ? h('span', { class: 'chip flag-warn' }, ALERT_CHANGE_LABEL[x.change] || x.change) : null, ' ',
      x.kind ? h('code', null, x.kind) : null, ' ', x.title ? alertTitle(x) : summarize(x),
      x.task_id ? [' · tarea ', taskLink(x.task_id)] : null,
      x.occurrences ? h('span', { class: 'muted' }, ` · ${x.occurrences} ${x.occurrences === 1 ? 'vez' : 'veces'}`) : null)))]);
  }
  if ('resolved_alerts' in r) {
    const list = Array.isArray(r.resolved_alerts) ? r.resolved_alerts : [];
    rows.push(['Alertas resueltas (su condición terminó)', list.length === 0 ? h('span', { class: 'muted' }, 'ninguna') : h('ul', { class: 'plain' }, list.map((x) => h('li', null,
      x.kind ? h('code', null, x.kind) : null, ' ', x.title ? alertTitle(x) : summarize(x),
      x.task_id ? [' · tarea ', taskLink(x.task_id)] : null)))]);
  }
  if ('followup_task_ids' in r) rows.push(['Tareas de seguimiento creadas', taskLinks(r.followup_task_ids)]);
  for (const [k, v] of Object.entries(r)) {
    if (known.has(k)) continue;
    rows.push([h('code', null, k), v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  }
  return h('div', null,
    h('dl', { class: 'kv wide' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    h('details', null, h('summary', null, 'JSON completo'), h('pre', { class: 'output small' }, JSON.stringify(r, null, 2))));
}

function summarize(obj) {
  return Object.entries(obj).map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`).join(' · ');
}

function drawAlerts(area, alerts, total, status, reload) {
  fill(area, h('h2', { class: 'pad-h' }, status === 'open' ? `Alertas abiertas (${total ?? alerts.length})` : `Alertas resueltas (${total ?? alerts.length})`));
  if (alerts.length === 0) {
    add(area, h('p', { class: 'muted pad' }, status === 'open' ? 'No hay alertas abiertas.' : 'No hay alertas resueltas.'));
    return;
  }
  const note = h('div', { hidden: true, class: 'pad' });
  add(area, note, h('table', { class: 'table alerts' },
    h('thead', null, h('tr', null, h('th', null, 'Alerta'), h('th', null, 'Tareas'), h('th', { class: 'num' }, 'Veces'),
      h('th', null, 'Primera vez'), h('th', null, 'Última vez'), h('th', null, ''))),
    h('tbody', null, alerts.map((a) => {
      let action = null;
      if (a.status === 'open' && !mayResolveAlert(me(), Boolean(a.task_id))) {
        action = h('button', { type: 'button' }, 'Resolver');
        action.addEventListener('click', () => busy(action, async () => {
          await api('POST', `/alerts/${a.id}/resolve`, {});
          flash('ok', `Alerta #${a.id} resuelta.`);
          await reload();
        }, note));
      }
      return h('tr', null,
        h('td', null,
          h('div', null, h('span', { class: 'chip' }, a.kind), ' ', h('strong', { title: a.title }, alertTitle(a))),
          a.detail ? h('div', { class: 'sub pre-line', title: a.detail }, alertDetail(a)) : null,
          a.subject ? h('div', { class: 'sub' }, h('code', null, a.subject)) : null),
        h('td', null,
          a.task_id ? h('div', null, 'Tarea ', h('a', { href: `#/tareas/${Number(a.task_id)}` }, `#${Number(a.task_id)}`)) : null,
          a.followup_task_id ? h('div', null, 'Seguimiento ', h('a', { href: `#/tareas/${Number(a.followup_task_id)}` }, `#${Number(a.followup_task_id)}`)) : null,
          !a.task_id && !a.followup_task_id ? h('span', { class: 'muted' }, '—') : null),
        h('td', { class: 'num' }, String(a.occurrences ?? 1)),
        h('td', null, timeEl(a.first_seen_at)),
        h('td', null, timeEl(a.last_seen_at)),
        h('td', null, action || (a.resolved_at ? h('span', { class: 'muted small' }, 'resuelta ', timeEl(a.resolved_at)) : null)));
    }))));
}
