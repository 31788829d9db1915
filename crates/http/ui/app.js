// OPS Center: the web UI. Plain browser modules, no dependencies.
//
// Every piece of server text reaches the page through text nodes or
// attribute values (see `h`), never as markup.

import { allowedText, changesPanel, repoInputs, repoPanel, repoWhere, repoWhereText } from './changes.js';
import * as live from './live.js';
import { alertDetail, alertTitle, warningText } from './health_es.js';
import * as alertsCount from './alerts_count.js';
import { drawNav, isScreen, renderScreen } from './admin_screens.js';
import { addressParams, apiParams, filterBar, isFiltered, lastPageOffset, readFilters } from './filters.js';
import { detailNode, spanishError } from './errors_es.js';
import { dispatchOutcome, editForm, taskActions } from './task_actions.js';
import { historyPanel } from './history.js';
import { gate, mayAdminister, mayApproveGate, mayOperate, mayResolveAlert } from './roles.js';
import { restoreDrafts, saveDrafts } from './drafts.js';
import { focusHeading, skipLink } from './focus.js';

// ---------------------------------------------------------------------------
// DOM helpers

/** Creates an element. `props`: `class`, `on<event>` handlers, `hidden`,
 *  booleans (set when true), anything else as an attribute. Children may
 *  be nodes, strings, numbers, arrays, or null/false (skipped). */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Appends children to `el`, skipping null/false (`Element.append` would
 *  print them as text). */
function add(el, ...children) {
  append(el, children);
  return el;
}

/** Replaces the children of `el`, skipping null/false. */
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const byId = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Vocabulary

const STATUSES = ['next', 'queued', 'dispatching', 'doing', 'review', 'done', 'waiting'];
const STATUS_LABEL = {
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
const MANUAL_STATUSES = ['next', 'doing', 'review', 'done', 'waiting'];
/** Statuses from which a task may be dispatched. */
const DISPATCHABLE = ['next', 'waiting', 'review'];
/** Statuses in which a task is already on its way to a worker. */
const IN_FLIGHT = ['queued', 'dispatching', 'doing'];
const EXECUTION_LABEL = { manual: 'Manual', interactive: 'Interactiva (agente)' };
const COMMENT_KIND_LABEL = { note: 'Nota', log: 'Log', blocker: 'Bloqueo', system: 'Sistema' };
const QUEUE_KEYS = ['next', 'queued', 'dispatching', 'doing', 'review', 'waiting', 'blocked',
  'stale_queued', 'stale_dispatching', 'stale_running'];
const QUEUE_LABEL = {
  ...STATUS_LABEL, blocked: 'Bloqueadas', stale_queued: 'En cola sin worker',
  stale_dispatching: 'Dispatching stale', stale_running: 'En curso sin worker',
};
/** Counts of tasks past their deadline: shown as a problem when not 0. */
const QUEUE_LATE = new Set(['stale_queued', 'stale_dispatching', 'stale_running']);
const DISPATCH_AUTHOR = 'ai-dispatch';
const DEFAULT_STALE_MINUTES = 20;
const PAGE_SIZE = 50;

function statusChip(status) {
  return h('span', { class: `chip status-${status}`, title: status }, STATUS_LABEL[status] || status);
}

// ---------------------------------------------------------------------------
// Time

function parseTime(s) {
  const ms = s ? Date.parse(s) : NaN;
  return Number.isNaN(ms) ? null : ms;
}

function fmtTime(s) {
  const ms = parseTime(s);
  if (ms === null) return s ? String(s) : '—';
  return new Date(ms).toLocaleString('es-ES', { dateStyle: 'short', timeStyle: 'medium' });
}

function fmtDuration(ms) {
  const min = Math.floor(ms / 60000);
  if (min < 1) return `${Math.max(0, Math.floor(ms / 1000))} s`;
  if (min < 60) return `${min} min`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function ago(s) {
  const ms = parseTime(s);
  return ms === null ? '' : `hace ${fmtDuration(Date.now() - ms)}`;
}

/** A timestamp shown in local time, with the server's value as tooltip. */
function timeEl(s) {
  if (!s) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: s, title: `${s} (${ago(s)})` }, fmtTime(s));
}

// ---------------------------------------------------------------------------
// API

/** A refusal: `message` is the page's Spanish text (errors_es.js),
 *  `serverMessage` the server's own words, kept as detail. */
class ApiError extends Error {
  constructor(status, code, serverMessage, retryAfter) {
    const e = { status, code, serverMessage, retryAfter };
    super(spanishError(e));
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
    this.retryAfter = retryAfter;
  }
}

/** Calls the JSON API. Resolves to the parsed body; rejects with an
 *  ApiError carrying the server's `error` and `message`. */
async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', e.message);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return data;
  const code = (data && data.error) || `http_${res.status}`;
  const err = new ApiError(res.status, code, (data && data.message) || '', res.headers.get('Retry-After'));
  const route = `${method} /api${path.split('?')[0]}`;
  if (res.status === 404 && /^no route/.test(err.serverMessage)) {
    err.message = `Este servidor no ofrece ${route} (404): actualiza OPS Center a una versión que incluya esta función.`;
  } else if (res.status === 405) {
    err.message = `Este servidor no acepta ${route} (405).`;
  }
  if (res.status === 401 && state.me && !path.startsWith('/auth/')) {
    sessionExpired();
  }
  throw err;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---------------------------------------------------------------------------
// Messages

/** Shows a message above the current view: `kind` is `error`, `warn` or
 *  `ok`. One at a time: a new one replaces the one shown. */
function flash(kind, text, detail) {
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

function errorDetail(err) {
  return err instanceof ApiError ? detailNode(err) : null;
}

function showError(err) {
  flash('error', err.message || String(err), errorDetail(err));
}

/** An inline message inside a panel (replaces what was there). */
function setNote(el, kind, text, detail, context) {
  fill(el);
  el.hidden = !text;
  el.className = `note note-${kind}`;
  if (text) {
    append(el, [context ? h('strong', { class: 'note-context' }, context) : null,
      h('span', null, text), detail ? h('span', { class: 'note-detail' }, detail) : null]);
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

function noteError(el, err, context) {
  const ctx = (err instanceof ApiError && REFUSAL_CONTEXT[err.code]) || context;
  setNote(el, 'error', err.message || String(err), errorDetail(err), ctx);
}

/** Runs `fn` with `button` disabled, reporting errors in `noteEl` (or
 *  above the view), after `context` when given. */
async function busy(button, fn, noteEl, context) {
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

// ---------------------------------------------------------------------------
// Session

const state = { me: null, agents: null, workspaces: null, pendingFlash: null };

function sessionExpired() {
  saveDrafts(byId('view'), location.hash);
  state.me = null;
  live.disconnect();
  alertsCount.stop();
  showLogin('La sesión ha caducado: vuelve a iniciar sesión.');
}

function showLogin(message) {
  byId('boot').hidden = true;
  byId('shell').hidden = true;
  byId('login').hidden = false;
  const err = byId('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  const form = byId('login-form');
  form.password.value = '';
  (form.username.value ? form.password : form.username).focus();
}

function showShell() {
  byId('boot').hidden = true;
  byId('login').hidden = true;
  byId('shell').hidden = false;
  const me = state.me;
  fill(byId('whoami'), 
    h('span', { class: 'who-name' }, me.username || me.role || ''),
    h('span', { class: 'who-role' }, me.is_admin ? 'administrador' : workspaceRoleText(me)));
  live.connect();
  const operations = document.querySelector('[data-nav="automatizaciones"]');
  alertsCount.start(operations, api);
  drawNav(operations, me);
  route();
}

// The stream's state, always in view: pages update by themselves only
// while it is connected.
live.onState((on) => {
  const el = byId('live-status');
  el.className = `live-status ${on ? 'on' : 'off'}`;
  el.textContent = on ? 'En vivo' : 'Desconectado: reconectando…';
  el.title = on ? 'Los cambios aparecen sin recargar.' : 'Sin conexión con el servidor: los cambios no se verán hasta que vuelva.';
});

function workspaceRoleText(me) {
  const roles = (me.workspaces || []).map((w) => w.role);
  return roles.includes('admin') ? 'admin. de workspace' : 'miembro';
}

async function start() {
  try {
    state.me = await api('GET', '/auth/me');
    showShell();
  } catch (err) {
    if (err.status === 401) showLogin();
    else showLogin(err.message);
  }
}

byId('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const button = form.querySelector('button[type=submit]');
  const err = byId('login-error');
  err.hidden = true;
  await busy(button, async () => {
    try {
      await api('POST', '/auth/login', { username: form.username.value.trim(), password: form.password.value });
      state.me = await api('GET', '/auth/me');
      form.password.value = '';
      state.agents = null;
      state.workspaces = null;
      showShell();
      restoreDrafts(byId('view'), location.hash);
    } catch (e) {
      fill(err, h('span', null, e.message), errorDetail(e));
      err.hidden = false;
      form.password.select();
    }
  });
});

byId('logout').addEventListener('click', async (ev) => {
  await busy(ev.currentTarget, async () => {
    await api('POST', '/auth/logout', {});
    state.me = null;
    live.disconnect();
    alertsCount.stop();
    fill(byId('flash'));
    showLogin();
  });
});

async function agents(reload) {
  if (!state.agents || reload) state.agents = (await api('GET', '/agents')).agents || [];
  return state.agents;
}

async function workspaces(reload) {
  if (!state.workspaces || reload) state.workspaces = (await api('GET', '/workspaces')).workspaces || [];
  return state.workspaces;
}

// ---------------------------------------------------------------------------
// Routing: #/tareas, #/tareas/<id>, #/operacion/automatizaciones[/dispatching|/watchdog],
// #/operacion/{ajustes,usuarios,miembros,agentes} (admin_screens.js)

let renderSeq = 0;

/** Whether a render started as `seq` is still the current one. */
const current = (seq) => seq === renderSeq;

/** The stream subscriptions of the page shown; dropped when it changes. */
let pageWatchers = [];

/** While the page `seq` is shown, calls `fn(event)` for the stream's
 *  events that `wanted(event)` accepts. */
function watch(seq, wanted, fn) {
  const stop = live.subscribe((ev) => {
    if (!current(seq)) return stop();
    if (wanted(ev)) fn(ev);
  });
  pageWatchers.push(stop);
}

/** `fn`, run at most once per `ms` however many times it is asked for:
 *  a burst of events costs one reload. */
function debounced(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

/** Events about tasks (their rows, comments, dispatch). */
const taskEvent = (ev) => ev.task_id !== null && ev.task_id !== undefined;

/** What the administration screens (admin_screens.js) borrow from the page. */
const screenUi = { api, flash, setNote, pageHeader, timeEl, current, watch, debounced };

function route() {
  if (!state.me) return;
  const hash = location.hash.replace(/^#/, '') || '/tareas';
  const [path, qs] = hash.split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  const seq = ++renderSeq;
  for (const stop of pageWatchers) stop();
  pageWatchers = [];
  const view = byId('view');
  fill(byId('flash'));
  if (state.pendingFlash) {
    flash(...state.pendingFlash);
    state.pendingFlash = null;
  }
  fill(view);
  let section = 'tareas';
  if (parts[0] === 'tareas' && parts[1] && /^\d+$/.test(parts[1])) {
    renderTask(view, Number(parts[1]), seq);
  } else if (parts[0] === 'operacion' && parts[1] === 'automatizaciones') {
    section = 'automatizaciones';
    renderAutomations(view, parts[2] === 'watchdog' ? 'watchdog' : 'dispatching', seq);
  } else if (parts[0] === 'operacion' && isScreen(parts[1])) {
    section = parts[1];
    renderScreen(view, parts[1], state.me, seq, screenUi);
  } else if (parts[0] === 'tareas' || parts.length === 0) {
    renderBoard(view, params, seq);
  } else {
    add(view, h('h1', null, 'Página no encontrada'),
      h('p', null, 'Esta dirección no existe. ', h('a', { href: '#/tareas' }, 'Ir a las tareas')));
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  window.scrollTo(0, 0);
  focusHeading(view);
}

window.addEventListener('hashchange', route);
skipLink(byId('skip-link'), byId('view'));

function pageHeader(crumbs, title, ...actions) {
  return h('header', { class: 'page-header' },
    h('div', null,
      crumbs ? h('p', { class: 'crumbs' }, crumbs) : null,
      h('h1', null, title)),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

// ---------------------------------------------------------------------------
// Tasks board

function renderBoard(view, params, seq) {
  const filters = readFilters(params, STATUSES);
  const status = filters.estado;
  const archived = params.get('archivadas') === '1';
  const offset = Math.max(0, Number.parseInt(params.get('desde') || '0', 10) || 0);
  const asBoard = params.get('vista') === 'tablero';

  const setParams = (changes) => {
    const p = new URLSearchParams({ ...addressParams(filters), ...(archived && { archivadas: '1' }), ...(asBoard && { vista: 'tablero' }) });
    for (const [k, v] of Object.entries(changes)) {
      if (v === '' || v === null || v === false) p.delete(k);
      else p.set(k, v);
    }
    if (!('desde' in changes)) p.delete('desde');
    const s = p.toString();
    location.hash = s ? `#/tareas?${s}` : '#/tareas';
  };

  const newButton = h('button', { type: 'button', class: 'primary' }, 'Nueva tarea');
  const createPanel = h('section', { class: 'panel', hidden: true });
  newButton.addEventListener('click', () => {
    createPanel.hidden = !createPanel.hidden;
    if (!createPanel.hidden) {
      renderCreateForm(createPanel, () => {
        createPanel.hidden = true;
      });
    }
  });

  const archivedBox = h('input', { type: 'checkbox', checked: archived });
  archivedBox.addEventListener('change', () => setParams({ archivadas: archivedBox.checked ? '1' : '' }));
  const refresh = h('button', { type: 'button' }, 'Actualizar');
  refresh.addEventListener('click', () => route());

  const viewSwitch = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Vista' },
    h('button', { type: 'button', 'aria-pressed': String(!asBoard), onclick: () => setParams({ vista: '' }) }, 'Lista'),
    h('button', { type: 'button', 'aria-pressed': String(asBoard), onclick: () => setParams({ vista: 'tablero' }) }, 'Tablero'));

  const listArea = h('div', { class: asBoard ? 'board-area' : 'panel table-panel' }, h('p', { class: 'muted pad' }, 'Cargando tareas…'));
  add(view,
    pageHeader(null, 'Tareas', newButton),
    createPanel,
    h('div', { class: 'toolbar' },
      viewSwitch,
      h('label', { class: 'inline check' }, archivedBox, ' Solo archivadas'),
      h('span', { class: 'spacer' }),
      refresh),
    filterBar(filters, setParams, {
      statuses: STATUSES, statusLabel: STATUS_LABEL, withStatus: true,
      lists: Promise.all([agents(), workspaces()]).then(([a, w]) => ({ agents: a, workspaces: w })),
    }),
    listArea);

  // The list or board follows the stream: any task event reloads it.
  const load = asBoard ? () => loadBoard(listArea, archived, filters, seq) : () => loadList(offset);
  watch(seq, taskEvent, debounced(load, 400));

  function loadList(from, pastEnd) {
    const q = query({ ...apiParams(filters), archived: archived ? 'true' : '', limit: PAGE_SIZE, offset: from });
    return api('GET', `/tasks${q}`).then((data) => {
      if (!current(seq)) return;
      const tasks = data.tasks || [];
      const total = data.total ?? tasks.length;
      if (tasks.length === 0 && total > 0 && from > 0) {
        // An address past the end (fewer tasks than it skips): the last
        // page, saying so, and the address made to name it.
        const last = lastPageOffset(total, PAGE_SIZE);
        const p = new URLSearchParams(location.hash.split('?')[1] || '');
        if (last > 0) p.set('desde', String(last));
        else p.delete('desde');
        history.replaceState(null, '', `#/tareas${p.toString() ? `?${p}` : ''}`);
        return loadList(last, from);
      }
      if (tasks.length === 0) {
        fill(listArea, h('p', { class: 'muted pad' },
          isFiltered(filters) ? ['Ninguna tarea coincide con la búsqueda o los filtros. ',
            h('a', { href: archived ? '#/tareas?archivadas=1' : '#/tareas' }, 'Quitar filtros')]
            : archived ? 'No hay tareas archivadas.' : 'Aún no hay tareas. Crea la primera con «Nueva tarea».'));
        return;
      }
      const pager = h('div', { class: 'pager' },
        h('span', { class: 'muted' }, `${from + 1}–${from + tasks.length} de ${total}`),
        from > 0 ? h('button', { type: 'button', onclick: () => setParams({ desde: String(Math.max(0, from - PAGE_SIZE)) }) }, '← Anteriores') : null,
        from + tasks.length < total ? h('button', { type: 'button', onclick: () => setParams({ desde: String(from + PAGE_SIZE) }) }, 'Siguientes →') : null);
      const beyond = pastEnd === undefined ? null : h('p', { class: 'note note-info pad', role: 'status' },
        `No hay tareas a partir de la ${pastEnd + 1}: hay ${total}. Se muestra la última página.`);
      fill(listArea, beyond, taskTable(tasks), pager);
    }).catch((err) => {
      if (!current(seq)) return;
      fill(listArea);
      const note = h('p', { class: 'note' });
      noteError(note, err);
      add(listArea, note);
    });
  }
  load();
}

/** The most tasks the board shows per column. */
const BOARD_LIMIT = 200;

/** The board: one column per status, cards that move by drag or by the
 *  arrow keys to the statuses a person may set (never `queued` or
 *  `dispatching`: those belong to the dispatcher). */
function loadBoard(area, archived, filters, seq) {
  const shown = filters.estado ? [filters.estado] : STATUSES;
  const requests = shown.map((s) => api('GET', `/tasks${query({ ...apiParams(filters), status: s, archived: archived ? 'true' : '', limit: BOARD_LIMIT })}`));
  return Promise.all(requests).then((lists) => {
    if (!current(seq)) return;
    // Keep the keyboard where it was across a live redraw.
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.task : null;
    const note = h('div', { hidden: true });
    const move = async (t, to) => {
      if (to === t.status || !MANUAL_STATUSES.includes(to) || t.archived_at) return;
      try {
        await api('PATCH', `/tasks/${t.id}/status`, { status: to });
        flash('ok', `Tarea #${t.id} movida a «${STATUS_LABEL[to]}».`);
      } catch (err) {
        noteError(note, err, 'No se pudo mover la tarea.');
      }
      await loadBoard(area, archived, filters, seq);
      const again = area.querySelector(`[data-task="${t.id}"]`);
      if (again) again.focus();
    };
    const columns = shown.map((s, i) => {
      const data = lists[i];
      const tasks = data.tasks || [];
      const droppable = MANUAL_STATUSES.includes(s) && !archived;
      const col = h('section', { class: `board-col ${droppable ? 'droppable' : 'locked'}`, 'aria-label': STATUS_LABEL[s], 'data-status': s },
        h('header', { class: 'board-col-head' },
          statusChip(s), h('span', { class: 'muted' }, String(data.total ?? tasks.length))),
        h('div', { class: 'board-cards' },
          tasks.length ? tasks.map((t) => boardCard(t, move)) : h('p', { class: 'muted small' }, 'Vacía')));
      if (droppable) {
        col.addEventListener('dragover', (ev) => {
          ev.preventDefault();
          col.classList.add('drop-here');
        });
        col.addEventListener('dragleave', () => col.classList.remove('drop-here'));
        col.addEventListener('drop', (ev) => {
          ev.preventDefault();
          col.classList.remove('drop-here');
          const id = Number(ev.dataTransfer.getData('text/plain'));
          const t = lists.flatMap((l) => l.tasks || []).find((x) => x.id === id);
          if (t) move(t, s);
        });
      }
      return col;
    });
    fill(area, note, h('p', { class: 'muted small board-help' },
      'Arrastra una tarjeta a otra columna, o selecciónala y usa ← → para moverla. «En cola» y «Despachando» las pone el dispatcher (botón Despachar de la tarea).'),
    h('div', { class: 'board' }, columns));
    if (focused) {
      const el = area.querySelector(`[data-task="${focused}"]`);
      if (el) el.focus();
    }
  }).catch((err) => {
    if (current(seq)) fill(area, noteNode(err));
  });
}

function boardCard(t, move) {
  const movable = !t.archived_at;
  const card = h('article', {
    class: 'board-card', tabindex: 0, draggable: movable ? 'true' : null, 'data-task': t.id,
    'aria-label': `Tarea #${t.id}: ${t.title}. ${STATUS_LABEL[t.status]}.`,
  },
  h('a', { href: `#/tareas/${t.id}`, tabindex: -1, draggable: 'false' }, h('span', { class: 'muted' }, `#${t.id} `), t.title),
  h('div', { class: 'chips' },
    t.agent ? h('code', null, t.agent) : null,
    taskFlags(t)));
  if (movable) {
    card.addEventListener('dragstart', (ev) => {
      ev.dataTransfer.setData('text/plain', String(t.id));
      ev.dataTransfer.effectAllowed = 'move';
    });
    card.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        location.hash = `#/tareas/${t.id}`;
        return;
      }
      if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
      ev.preventDefault();
      // The next column, in that direction, that a person may move it to.
      const step = ev.key === 'ArrowRight' ? 1 : -1;
      for (let i = STATUSES.indexOf(t.status) + step; i >= 0 && i < STATUSES.length; i += step) {
        if (MANUAL_STATUSES.includes(STATUSES[i])) {
          move(t, STATUSES[i]);
          return;
        }
      }
    });
  }
  return card;
}

function taskFlags(t) {
  return [
    t.sensitive ? h('span', { class: `chip ${t.gate_approved_at ? 'flag-ok' : 'flag-warn'}`, title: t.gate_approved_at ? `Human Gate aprobado por ${t.gate_approved_by || '?'}` : 'Sensible: necesita aprobación del Human Gate' },
      t.gate_approved_at ? 'Gate aprobado' : 'Sensible') : null,
    t.blocked ? h('span', { class: 'chip flag-bad', title: t.blocked_reason || 'Bloqueada' }, 'Bloqueada') : null,
    t.archived_at ? h('span', { class: 'chip flag-muted' }, 'Archivada') : null,
  ];
}

function taskTable(tasks) {
  return h('table', { class: 'table tasks' },
    h('thead', null, h('tr', null,
      h('th', { class: 'num' }, '#'), h('th', null, 'Título'), h('th', null, 'Estado'), h('th', null, 'Ejecución'),
      h('th', null, 'Agente / modelo'), h('th', { class: 'num' }, 'Prioridad'), h('th', null, 'Marcas'), h('th', null, 'Actualizada'))),
    h('tbody', null, tasks.map((t) => h('tr', null,
      h('td', { class: 'num' }, h('a', { href: `#/tareas/${t.id}` }, String(t.id))),
      h('td', { class: 'title-cell' }, h('a', { href: `#/tareas/${t.id}` }, t.title),
        t.blocked && t.blocked_reason ? h('div', { class: 'sub bad' }, t.blocked_reason) : null),
      h('td', null, statusChip(t.status)),
      h('td', null, t.execution === 'interactive' ? 'Interactiva' : EXECUTION_LABEL[t.execution] || t.execution),
      h('td', null, t.agent ? h('code', null, t.agent) : h('span', { class: 'muted' }, '—'),
        t.model ? h('div', { class: 'sub' }, t.model) : null),
      h('td', { class: 'num' }, String(t.priority ?? 0)),
      h('td', { class: 'flags' }, taskFlags(t)),
      h('td', null, timeEl(t.updated_at))))));
}

async function renderCreateForm(panel, done) {
  fill(panel, h('p', { class: 'muted' }, 'Cargando agentes…'));
  let agentList = [];
  let wsList = [];
  try {
    [agentList, wsList] = await Promise.all([agents(true), workspaces(true).catch(() => [])]);
  } catch (err) {
    noteError(panel.appendChild(h('p')), err);
  }
  const note = h('p', { hidden: true });
  const repo = repoInputs(null);
  const wsSelect = wsList.length > 1
    ? h('select', { name: 'workspace_id' }, wsList.map((w) => h('option', { value: w.id }, `${w.name} (#${w.id})`)))
    : null;
  // Which repositories the chosen workspace lets a task name.
  const repoAllowed = h('p', { class: 'muted small span-2 repo-allowed' });
  const showAllowed = () => {
    const id = wsSelect ? Number(wsSelect.value) : 1;
    const ws = wsList.find((w) => w.id === id) || wsList[0];
    repoAllowed.textContent = ws ? `Repositorio: vacío usa el del workspace. ${allowedText(ws)}` : '';
    repoAllowed.hidden = !ws;
  };
  if (wsSelect) wsSelect.addEventListener('change', showAllowed);
  showAllowed();
  const form = h('form', { class: 'form-grid' },
    h('h2', { class: 'span-2' }, 'Nueva tarea'),
    h('label', { class: 'span-2' }, 'Título', h('input', { name: 'title', required: true, maxlength: 500 })),
    h('label', { class: 'span-2' }, 'Prompt (descripción que recibe el agente)',
      h('textarea', { name: 'description', rows: 6 })),
    h('label', null, 'Ejecución',
      h('select', { name: 'execution' },
        h('option', { value: 'manual' }, 'Manual (la hace una persona)'),
        h('option', { value: 'interactive' }, 'Interactiva (la despacha un agente)'))),
    h('label', null, 'Agente',
      h('select', { name: 'agent_id' },
        h('option', { value: '' }, '— sin agente —'),
        agentList.map((a) => h('option', { value: a.id },
          `${a.name || a.slug} (${a.slug})${a.active ? '' : ' — inactivo'}`)))),
    h('label', null, 'Modelo', h('input', { name: 'model', placeholder: 'el del agente', autocomplete: 'off' })),
    h('label', null, 'Prioridad', h('input', { name: 'priority', type: 'number', value: 0, min: -1000, max: 1000, step: 1 })),
    wsSelect ? h('label', null, 'Workspace', wsSelect) : null,
    repo.nodes,
    repoAllowed,
    h('label', { class: 'check span-2' }, h('input', { type: 'checkbox', name: 'sensitive' }),
      ' Sensible: necesita la aprobación del Human Gate antes de despacharse'),
    h('label', { class: 'check span-2' }, h('input', { type: 'checkbox', name: 'expects_changes', checked: true }),
      ' Espera cambios en el repositorio: si una ejecución termina sin cambiar su rama, queda bloqueada («sin cambios») en vez de pasar a revisión'),
    h('div', { class: 'span-2' }, note),
    h('div', { class: 'span-2 actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Crear tarea'),
      h('button', { type: 'button', class: 'ghost', onclick: done }, 'Cancelar')));
  // A task given an agent is for the agent: interactive, unless the
  // person then chooses otherwise.
  form.elements.agent_id.addEventListener('change', () => {
    if (form.elements.agent_id.value) form.elements.execution.value = 'interactive';
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = {
      title: f.title.value.trim(),
      description: f.description.value,
      execution: f.execution.value,
      priority: Number.parseInt(f.priority.value || '0', 10),
      sensitive: f.sensitive.checked,
      expects_changes: f.expects_changes.checked,
    };
    if (f.agent_id.value) body.agent_id = Number(f.agent_id.value);
    if (f.model.value.trim()) body.model = f.model.value.trim();
    if (wsSelect) body.workspace_id = Number(wsSelect.value);
    for (const [k, v] of Object.entries(repo.read())) if (v) body[k] = v;
    if (Number.isNaN(body.priority)) {
      setNote(note, 'error', 'La prioridad debe ser un número entero.');
      return;
    }
    await busy(form.querySelector('button[type=submit]'), async () => {
      const task = await api('POST', '/tasks', body);
      state.pendingFlash = ['ok', `Tarea #${task.id} creada.`];
      location.hash = `#/tareas/${task.id}`;
    }, note, 'No se pudo crear la tarea.');
  });
  fill(panel, form);
  form.elements.title.focus();
}

// ---------------------------------------------------------------------------
// Task detail

/** What the task page shown can do when the stream brings news of it;
 *  set by each `drawTask`. */
const taskLive = { appendOutput: null, reload: null, workspaceId: null, editing: null, history: null, deleting: null };

function renderTask(view, id, seq) {
  add(view, h('p', { class: 'crumbs' }, h('a', { href: '#/tareas' }, '← Tareas')),
    h('p', { class: 'muted' }, `Cargando la tarea #${id}…`));
  taskLive.appendOutput = null;
  taskLive.reload = null;
  taskLive.editing = null;
  taskLive.history = null;
  taskLive.deleting = null;
  // Output chunks are appended as they come; anything else about the task
  // (status, comments, claim, changes) redraws it.
  // No redraw while this page deletes the task, nor a message about one
  // that ends after the page changed. `taskLive` belongs to whichever task
  // page is shown now: a redraw asked for by this page that comes due after
  // the page changed would reload the next page (an extra fetch of another
  // task, its form redrawn under the operator's hands), so it is dropped.
  const redraw = debounced(() => {
    if (!current(seq) || !taskLive.reload || taskLive.deleting === id) return;
    taskLive.reload().catch((err) => {
      if (current(seq)) showError(err);
    });
  }, 300);
  watch(seq, (ev) => ev.task_id === id, (ev) => {
    if (ev.kind === 'task.deleted') {
      // Deleted from this page: its button says so once the answer comes.
      if (taskLive.deleting === id) return;
      // Deleted elsewhere: the page has nothing left to show.
      state.pendingFlash = ['warn', `La tarea #${id} fue borrada (por ${ev.actor || '?'}).`];
      location.hash = '#/tareas';
    } else if (ev.kind === 'dispatch.output') {
      if (taskLive.appendOutput && typeof ev.output === 'string') taskLive.appendOutput(ev.output);
    } else {
      if (taskLive.history) taskLive.history.add(ev);
      redraw();
    }
  });
  // The workspace's repository is where the task runs unless it names
  // its own.
  const redrawWithWorkspace = debounced(() => current(seq) && taskLive.reload && taskLive.reload({ workspaces: true }), 300);
  watch(seq, (ev) => ev.kind === 'workspace.repo_set' && ev.workspace_id === taskLive.workspaceId, redrawWithWorkspace);
  // Fresh: the workspace's repository and roots are shown and edited here.
  Promise.all([api('GET', `/tasks/${id}`), workspaces(true).catch(() => [])]).then(([task]) => {
    if (current(seq)) drawTask(view, task, seq);
  }).catch((err) => {
    if (!current(seq)) return;
    fill(view, h('p', { class: 'crumbs' }, h('a', { href: '#/tareas' }, '← Tareas')),
      h('h1', null, `Tarea #${id}`));
    const note = view.appendChild(h('p'));
    noteError(note, err);
  });
}

/** What a person was doing on the task page that a redraw must keep: the
 *  comment being written, what was typed in the repository forms, which
 *  collapsible parts (`details[data-keep]`) were open, and whether the
 *  output follows its end. `restore()` puts it back on the new page. */
function keepPageState(view) {
  const form = view.querySelector('.comment-form');
  const comment = form ? { body: form.elements.body.value, kind: form.elements.kind.value, focused: document.activeElement === form.elements.body } : null;
  const typed = [...view.querySelectorAll('form[data-scope] input, form[data-scope] textarea')]
    .filter((i) => i.value !== i.defaultValue)
    .map((i) => ({ scope: i.form.dataset.scope, name: i.name, value: i.value }));
  // A refusal shown in a repository form stays until its form is sent again.
  const notes = [...view.querySelectorAll('form[data-scope] [data-note]:not([hidden])')]
    .map((n) => ({ scope: n.closest('form').dataset.scope, className: n.className, nodes: [...n.childNodes] }));
  const open = new Map([...view.querySelectorAll('details[data-keep]')].map((d) => [d.dataset.keep, d.open]));
  const follow = view.querySelector('.follow-output');
  const following = follow ? follow.checked : true;
  const heading = view.querySelector('h1');
  const headingFocused = Boolean(heading) && document.activeElement === heading;
  // The status chosen (and «forzar») but not yet applied.
  const move = view.querySelector('.status-move select');
  const chosen = move && !move.selectedOptions[0]?.defaultSelected ? move.value : null;
  const forceBox = view.querySelector('.status-move input[type=checkbox]');
  const forced = Boolean(forceBox && forceBox.checked);
  return () => {
    if (headingFocused) focusHeading(view);
    const moveAgain = view.querySelector('.status-move select');
    if (chosen && moveAgain) moveAgain.value = chosen;
    const forceAgain = view.querySelector('.status-move input[type=checkbox]');
    if (forceAgain) forceAgain.checked = forced;
    const again = view.querySelector('.comment-form');
    if (comment && again) {
      again.elements.body.value = comment.body;
      again.elements.kind.value = comment.kind;
      if (comment.focused) again.elements.body.focus();
    }
    for (const { scope, name, value } of typed) {
      const input = view.querySelector(`form[data-scope="${scope}"] [name="${name}"]`);
      if (input) input.value = value;
    }
    for (const { scope, className, nodes } of notes) {
      const fresh = view.querySelector(`form[data-scope="${scope}"] [data-note]`);
      if (!fresh) continue;
      fresh.className = className;
      fresh.hidden = false;
      fresh.replaceChildren(...nodes);
    }
    for (const d of view.querySelectorAll('details[data-keep]')) {
      if (open.has(d.dataset.keep)) d.open = open.get(d.dataset.keep);
    }
    const followAgain = view.querySelector('.follow-output');
    if (followAgain) followAgain.checked = following;
    if (taskLive.scroll) taskLive.scroll();
  };
}

/** Whether the person logged in may set workspace `id`'s repository. */
function canSetWorkspaceRepo(id) {
  const me = state.me || {};
  return Boolean(me.is_admin
    || (me.workspaces || []).some((w) => w.workspace_id === id && w.role === 'admin'));
}

function drawTask(view, t, seq, refusal) {
  // A reload asked for after the page changed (a debounced redraw) does
  // nothing: the task may be gone.
  const reload = (opts = {}) => (!current(seq) ? Promise.resolve() : Promise.all([api('GET', `/tasks/${t.id}`),
    opts.workspaces ? workspaces(true).catch(() => []) : null]).then(([fresh]) => {
    if (!current(seq)) return;
    const restore = keepPageState(view);
    drawTask(view, fresh, seq);
    restore();
  }));
  taskLive.reload = reload;
  taskLive.workspaceId = t.workspace_id;
  const actionNote = h('div', { hidden: true });
  if (refusal) noteError(actionNote, refusal.err, refusal.context);
  /** Runs an action on the task and redraws it. A refusal may itself
   *  change the task (the Human Gate blocks it), so it redraws then too,
   *  keeping the server's message in view. */
  const act = async (button, fn, okText, context) => {
    button.disabled = true;
    let answer;
    try {
      answer = await fn();
    } catch (err) {
      try {
        const fresh = await api('GET', `/tasks/${t.id}`);
        if (current(seq)) drawTask(view, fresh, seq, { err, context });
      } catch {
        noteError(actionNote, err, context);
      }
      return;
    } finally {
      button.disabled = false;
    }
    try {
      const [kind, text] = typeof okText === 'function' ? await okText(answer) : ['ok', okText];
      await reload();
      flash(kind, text);
    } catch (err) {
      showError(err);
    }
  };
  /** Like `act`, but a refusal stays in `note` (a form keeps its text). */
  const save = async (button, fn, okText, note, context) => {
    const done = await busy(button, async () => {
      await fn();
      return true;
    }, note, context);
    if (!done) return;
    if (taskLive.editing) taskLive.editing.remove();
    taskLive.editing = null;
    try {
      await reload();
      flash('ok', okText);
    } catch (err) {
      showError(err);
    }
  };
  const ui = {
    api, act, save,
    note: (el, kind, text) => setNote(el, kind, text),
    refused: (err, context) => noteError(actionNote, err, context),
    deleting: (id) => {
      taskLive.deleting = id;
    },
    deleted: (id) => {
      state.pendingFlash = ['ok', `Tarea #${id} borrada.`];
      location.hash = '#/tareas';
    },
  };

  const archived = Boolean(t.archived_at);
  const actions = [];
  // A blocked task is retried (unblock + dispatch) instead.
  if (!archived && DISPATCHABLE.includes(t.status) && !t.blocked) {
    const dispatch = h('button', { type: 'button', class: 'primary', title: 'POST /api/tasks/:id/dispatch: pasa la tarea a la cola de los launchers' }, 'Despachar');
    dispatch.addEventListener('click', () => act(dispatch, () => api('POST', `/tasks/${t.id}/dispatch`, {}),
      (answer) => dispatchOutcome(api, t.id, answer), 'No se pudo despachar la tarea.'));
    actions.push(dispatch);
  }
  if (!archived && t.sensitive && !t.gate_approved_at && !mayApproveGate(state.me, t.workspace_id)) {
    const approve = h('button', { type: 'button', class: 'warn' }, 'Aprobar Human Gate');
    approve.addEventListener('click', () => {
      if (!confirm(`¿Aprobar el Human Gate de la tarea sensible #${t.id}? Un agente podrá ejecutarla en ${repoWhereText(t)}.`)) return;
      act(approve, () => api('POST', `/tasks/${t.id}/approve`, {}), 'Human Gate aprobado.', 'No se pudo aprobar el Human Gate.');
    });
    actions.push(approve);
  }

  // Every status is listed; the ones only the dispatcher sets are shown
  // but cannot be chosen.
  const statusSelect = h('select', { 'aria-label': 'Nuevo estado' },
    STATUSES.map((s) => h('option', {
      value: s,
      selected: s === t.status,
      disabled: !MANUAL_STATUSES.includes(s),
    }, `${STATUS_LABEL[s]} (${s})${s === t.status ? ' · actual' : ''}`)));
  const force = h('input', { type: 'checkbox' });
  const move = h('button', { type: 'button' }, 'Mover');
  move.addEventListener('click', () => {
    const to = statusSelect.value;
    const forced = force.checked;
    if (forced && !confirm('¿Forzar el cambio de estado sin evidencia de salida? Queda registrado como task.done_forced.')) return;
    // Forcing is for this change only, not kept for the next.
    force.checked = false;
    act(move, () => api('PATCH', `/tasks/${t.id}/status${forced ? '?force=true' : ''}`, { status: to }),
      `Tarea #${t.id} movida a «${STATUS_LABEL[to] || to}».`, 'No se pudo mover la tarea.');
  });
  const statusControl = archived ? null : h('div', { class: 'status-move' },
    h('label', { class: 'inline' }, 'Estado ', statusSelect), move,
    mayAdminister(state.me)
      ? null
      : h('label', { class: 'inline check', title: '?force=true: salta la guarda de «hecha» (solo admin/service)' }, force, ' forzar'));

  // The edit form, while open, is the same node across live redraws: what
  // is typed in it stays.
  const editArea = h('div');
  taskLive.editArea = editArea;
  if (taskLive.editing && !archived) editArea.appendChild(taskLive.editing);
  else taskLive.editing = null;
  const openEdit = async () => {
    const list = await agents().catch(() => []);
    if (!current(seq)) return;
    if (taskLive.editing) {
      taskLive.editing.querySelector('input[name=title]').focus();
      return;
    }
    taskLive.editing = h('section', { class: 'panel' }, editForm(ui, t, list, mayApproveGate(state.me, t.workspace_id), () => {
      taskLive.editing.remove();
      taskLive.editing = null;
    }));
    // A live redraw may have replaced this page's area while the agents
    // were loading: the form goes in the one shown.
    taskLive.editArea.appendChild(taskLive.editing);
    taskLive.editing.querySelector('input[name=title]').focus();
  };
  const more = taskActions(ui, t, openEdit);

  // The history node is kept across redraws of the same task.
  if (!taskLive.history || taskLive.history.id !== t.id) taskLive.history = historyPanel(api, t.id);

  let archive = null;
  if (!archived) {
    archive = h('button', { type: 'button', class: 'danger ghost' }, 'Archivar');
    archive.addEventListener('click', () => {
      if (!confirm(`¿Archivar la tarea #${t.id}? Quedará de solo lectura.`)) return;
      act(archive, () => api('POST', `/tasks/${t.id}/archive`, {}), `Tarea #${t.id} archivada.`, 'No se pudo archivar la tarea.');
    });
  }

  const comments = t.comments || [];
  const logs = comments.filter((c) => c.kind === 'log' && c.author === DISPATCH_AUTHOR);
  const blockers = comments.filter((c) => c.kind === 'blocker');

  // The agent's output as it is written: the log chunks so far, then
  // every chunk the stream brings.
  const output = h('pre', { class: 'output live-output', 'aria-live': 'off', tabindex: 0 }, logs.map((c) => c.body).join(''));
  const follow = h('input', { type: 'checkbox', class: 'follow-output', checked: true });
  const scroll = () => {
    if (follow.checked) output.scrollTop = output.scrollHeight;
  };
  const running = ['dispatching', 'doing'].includes(t.status);
  const outputState = h('span', { class: 'muted small' }, running ? 'El agente está trabajando: la salida aparece según se escribe.' : (logs.length ? '' : 'Sin salida todavía.'));
  taskLive.appendOutput = (chunk) => {
    output.appendChild(document.createTextNode(chunk));
    output.hidden = false;
    outputState.textContent = 'El agente está trabajando: la salida aparece según se escribe.';
    scroll();
  };
  taskLive.scroll = scroll;
  output.hidden = logs.length === 0;
  // Scrolling up to read stops following; back at the end, it follows again.
  output.addEventListener('scroll', () => {
    follow.checked = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
  });
  follow.addEventListener('change', scroll);
  requestAnimationFrame(scroll);

  fill(view, 
    h('p', { class: 'crumbs' }, h('a', { href: '#/tareas' }, '← Tareas')),
    h('header', { class: 'page-header' },
      h('div', null,
        h('h1', null, h('span', { class: 'muted' }, `#${t.id} `), t.title),
        h('div', { class: 'chips' }, statusChip(t.status), taskFlags(t))),
      h('div', { class: 'page-actions' }, actions, more, archive)),
    statusControl ? h('section', { class: 'panel row' }, statusControl) : null,
    actionNote,
    editArea,
    t.blocked ? h('section', { class: 'panel callout bad' },
      h('h2', null, 'Bloqueada'),
      h('p', { class: 'pre-line' }, t.blocked_reason || 'Sin motivo indicado.')) : null,
    t.sensitive ? h('section', { class: `panel callout ${t.gate_approved_at ? 'ok' : 'warn'}` },
      h('h2', null, 'Human Gate'),
      t.gate_approved_at
        ? h('p', null, 'Aprobado por ', h('strong', null, t.gate_approved_by || '?'), ' el ', timeEl(t.gate_approved_at), '.')
        : h('p', null, 'Tarea sensible: una persona (admin o admin del workspace) debe aprobarla antes de que un agente la ejecute.'),
      repoWhere(t)) : null,
    h('div', { class: 'columns' },
      h('div', { class: 'col-main' },
        h('section', { class: 'panel' },
          h('h2', null, 'Prompt'),
          t.description ? h('pre', { class: 'text' }, t.description) : h('p', { class: 'muted' }, 'Sin descripción.')),
        h('section', { class: 'panel', 'data-live': 'output' },
          h('div', { class: 'panel-head' },
            h('h2', null, 'Salida del agente en vivo'),
            h('label', { class: 'inline check small' }, follow, ' Seguir la salida')),
          outputState,
          output),
        h('section', { class: 'panel' },
          h('h2', null, 'Salida del dispatch ', h('code', { class: 'muted small' }, 'dispatch_output')),
          t.dispatch_output ? h('pre', { class: 'output' }, t.dispatch_output) : h('p', { class: 'muted' }, 'Sin salida todavía.')),
        changesPanel(t),
        commentsPanel(t, comments, logs, blockers, reload),
        taskLive.history.node),
      h('aside', { class: 'col-side' },
        h('section', { class: 'panel' },
          h('h2', null, 'Detalles'),
          dl([
            ['Ejecución', EXECUTION_LABEL[t.execution] || t.execution],
            ['Agente', t.agent ? h('code', null, t.agent) : '—'],
            ['Modelo', t.model || '—'],
            ['Prioridad', String(t.priority ?? 0)],
            ['Workspace', `#${t.workspace_id}`],
            ['Creada', timeEl(t.created_at)],
            ['Actualizada', timeEl(t.updated_at)],
            t.archived_at ? ['Archivada', timeEl(t.archived_at)] : null,
          ])),
        repoPanel({ api, noteError }, t, (state.workspaces || []).find((w) => w.id === t.workspace_id),
          canSetWorkspaceRepo(t.workspace_id), () => reload({ workspaces: true }).then(() => flash('ok', 'Repositorio guardado.'))),
        h('section', { class: 'panel' },
          h('h2', null, 'Dispatch'),
          dl([
            ['Intentos', String(t.dispatch_attempts ?? 0)],
            ['Worker', t.claimed_by ? h('code', null, t.claimed_by) : '—'],
            ['Reclamada', timeEl(t.claimed_at)],
            ['Iniciada', timeEl(t.dispatch_started_at)],
            ['Terminada', timeEl(t.dispatch_finished_at)],
            ['Código de salida', t.exit_code === null || t.exit_code === undefined ? '—' : String(t.exit_code)],
            t.exit_signal ? ['Señal', h('code', null, t.exit_signal)] : null,
            ['Espera cambios', t.expects_changes === false ? 'No: su salida basta para la revisión' : 'Sí: sin cambios en su rama queda bloqueada'],
            ['Log', t.log_path ? h('code', { class: 'path' }, t.log_path) : '—'],
            ['Log de errores', t.err_log_path ? h('code', { class: 'path' }, t.err_log_path) : '—'],
            ['Logs ai-dispatch', String(logs.length)],
            ['Bloqueos', String(blockers.length)],
          ])))));
}

function dl(rows) {
  return h('dl', { class: 'kv' }, rows.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function commentsPanel(t, comments, logs, blockers, reload) {
  let filter = 'all';
  const list = h('div', { class: 'comments' });
  const draw = () => {
    const shown = comments.filter((c) => filter === 'all'
      || (filter === 'log' && c.kind === 'log')
      || (filter === 'blocker' && c.kind === 'blocker')
      || (filter === 'note' && (c.kind === 'note' || c.kind === 'system')));
    // Under «Todos» the agent's output chunks in a row are one entry (they
    // are also in «Salida del agente en vivo»); «Logs» lists each.
    const entries = filter === 'all' ? groupOutputChunks(shown) : shown;
    fill(list, ...(entries.length ? entries.map((e) => (Array.isArray(e) ? outputRunEl(e) : commentEl(e)))
      : [h('p', { class: 'muted' }, 'Sin comentarios.')]));
  };
  const tabs = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Filtrar comentarios' });
  for (const [key, label] of [['all', `Todos (${comments.length})`], ['log', `Logs (${comments.filter((c) => c.kind === 'log').length})`],
    ['blocker', `Bloqueos (${blockers.length})`], ['note', 'Notas']]) {
    const b = h('button', { type: 'button', 'aria-pressed': String(key === filter) }, label);
    b.addEventListener('click', () => {
      filter = key;
      for (const other of tabs.children) other.setAttribute('aria-pressed', String(other === b));
      draw();
    });
    tabs.appendChild(b);
  }
  draw();

  const note = h('p', { hidden: true });
  const form = h('form', { class: 'comment-form' },
    h('label', null, 'Añadir comentario', h('textarea', { name: 'body', rows: 3, required: true })),
    h('div', { class: 'actions' },
      h('select', { name: 'kind', 'aria-label': 'Tipo de comentario' },
        h('option', { value: 'note' }, 'Nota'),
        h('option', { value: 'blocker' }, 'Bloqueo (con evidencia)')),
      h('button', { type: 'submit' }, 'Comentar')),
    note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = form.elements.body.value;
    if (!body.trim()) return;
    await busy(form.querySelector('button[type=submit]'), async () => {
      await api('POST', `/tasks/${t.id}/comments`, { body, kind: form.elements.kind.value });
      // Sent: the redraw must not put it back in the box.
      form.elements.body.value = '';
      await reload();
      flash('ok', 'Comentario añadido.');
    }, note);
  });
  return h('section', { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', null, 'Comentarios'), tabs),
    logs.length ? h('p', { class: 'muted small' }, `${logs.length} comentario(s) de log de ${DISPATCH_AUTHOR}: cuentan como evidencia de salida.`) : null,
    list,
    t.archived_at ? null : form);
}

const isOutputChunk = (c) => c.kind === 'log' && c.author === DISPATCH_AUTHOR;

/** `comments` with each run of two or more output chunks in a row made
 *  one array. */
function groupOutputChunks(comments) {
  const out = [];
  for (const c of comments) {
    const last = out[out.length - 1];
    if (isOutputChunk(c) && Array.isArray(last)) last.push(c);
    else if (isOutputChunk(c) && last && !Array.isArray(last) && isOutputChunk(last)) out[out.length - 1] = [last, c];
    else out.push(c);
  }
  return out;
}

/** A run of output chunks: one collapsed entry with all of their text. */
function outputRunEl(run) {
  const first = run[0];
  const last = run[run.length - 1];
  return h('article', { class: 'comment kind-log' },
    h('header', null,
      h('strong', null, first.author),
      h('span', { class: 'chip kind-chip-log' }, COMMENT_KIND_LABEL.log),
      h('span', { class: 'muted small' }, `${run.length} fragmentos de salida`),
      timeEl(last.created_at)),
    h('details', { 'data-keep': `output-run-${first.id}` }, h('summary', null, 'Ver la salida'),
      h('pre', { class: 'output small' }, run.map((c) => c.body).join(''))));
}

function commentEl(c) {
  const isLog = c.kind === 'log';
  return h('article', { class: `comment kind-${c.kind}` },
    h('header', null,
      h('strong', null, c.author),
      h('span', { class: `chip kind-chip-${c.kind}` }, COMMENT_KIND_LABEL[c.kind] || c.kind),
      timeEl(c.created_at)),
    h(isLog ? 'pre' : 'p', { class: isLog ? 'output small' : 'pre-line' }, c.body));
}

// ---------------------------------------------------------------------------
// Operación → Automatizaciones

/** A copy of the `<template id=...>` of index.html, with a lookup for its
 *  `data-slot` elements. */
function template(id) {
  const frag = byId(id).content.cloneNode(true);
  const slots = {};
  for (const el of frag.querySelectorAll('[data-slot]')) slots[el.dataset.slot] = el;
  return { frag, slots };
}

function renderAutomations(view, tab, seq) {
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
  const denied = mayAdminister(state.me);
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
  const mayToggle = mayOperate(state.me);
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

function noteNode(err) {
  const el = h('div');
  noteError(el, err);
  return el;
}

function renderWatchdog(body, seq) {
  const { frag, slots } = template('tpl-watchdog');
  const { run, refresh, resolved: showResolved, report, alerts: alertsArea } = slots;
  add(body, frag);
  const mayRun = mayOperate(state.me);
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
      if (a.status === 'open' && !mayResolveAlert(state.me, Boolean(a.task_id))) {
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

// ---------------------------------------------------------------------------

start();
