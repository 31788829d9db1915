// OPS Center: the task list's and board's search and filters.
//
// They live in the page's address (`#/tareas?q=…&agente=…`), so a reload,
// the back button or a shared link shows the same tasks; the filtering
// itself is the server's (`GET /api/tasks` query parameters).

import { h } from './dom.js';

/** The address parameter of each filter and the API parameter it becomes. */
const PARAMS = [
  ['q', 'q'],
  ['estado', 'status'],
  ['agente', 'agent'],
  ['bloqueadas', 'blocked'],
  ['prioridad', 'priority'],
  ['workspace', 'workspace_id'],
];

/** How long typing in the search box waits before it searches. */
export const SEARCH_DELAY_MS = 350;

const PRIORITY = /^-?\d{1,4}$/;

/** The filters named in the address `params`, each `''` when absent or
 *  not a value the server would accept (a bad address shows every task,
 *  not an error). */
export function readFilters(params, statuses) {
  const get = (k) => (params.get(k) || '').trim();
  const blocked = get('bloqueadas');
  const priority = get('prioridad');
  const workspace = get('workspace');
  return {
    q: get('q').slice(0, 200),
    estado: statuses.includes(get('estado')) ? get('estado') : '',
    agente: /^[a-z0-9_-]{1,64}$/.test(get('agente')) ? get('agente') : '',
    bloqueadas: blocked === '1' || blocked === '0' ? blocked : '',
    prioridad: PRIORITY.test(priority) && Math.abs(Number(priority)) <= 1000 ? String(Number(priority)) : '',
    workspace: /^[1-9]\d{0,17}$/.test(workspace) ? workspace : '',
  };
}

/** Whether any filter is set. */
export function isFiltered(f) {
  return PARAMS.some(([k]) => f[k] !== '');
}

/** The address parameters of `f` (only those set). */
export function addressParams(f) {
  const out = {};
  for (const [k] of PARAMS) if (f[k] !== '') out[k] = f[k];
  return out;
}

/** The `GET /api/tasks` parameters of `f` (only those set). */
export function apiParams(f) {
  const out = {};
  for (const [k, api] of PARAMS) {
    if (f[k] === '') continue;
    out[api] = k === 'bloqueadas' ? (f[k] === '1' ? 'true' : 'false') : f[k];
  }
  return out;
}

/** The offset of the last page of `total` rows, `size` per page. */
export function lastPageOffset(total, size) {
  return total > 0 ? Math.floor((total - 1) / size) * size : 0;
}

// The search box is drawn again with the page after each search; this
// carries its focus and caret over to the new one.
let refocus = null;

/** The filter controls. `set(changes)` changes the address (and so the
 *  page); `lists` resolves to `{agents, workspaces}` for the choices;
 *  `statusLabel` names the statuses. */
export function filterBar(f, set, { statuses, statusLabel, lists, withStatus }) {
  const search = h('input', {
    type: 'search', name: 'q', value: f.q, class: 'search', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'Número (#12) o texto del título', 'aria-label': 'Buscar tareas',
  });
  let timer = null;
  const submitSearch = () => {
    clearTimeout(timer);
    const value = search.value.trim();
    if (value === f.q) return;
    refocus = { caret: search.selectionStart };
    set({ q: value });
  };
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(submitSearch, SEARCH_DELAY_MS);
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      submitSearch();
    }
  });
  if (refocus) {
    const { caret } = refocus;
    refocus = null;
    // Once the page is in the document.
    setTimeout(() => {
      if (!search.isConnected) return;
      search.focus();
      const at = Math.min(caret ?? search.value.length, search.value.length);
      search.setSelectionRange(at, at);
    });
  }

  const select = (name, label, current, options) => {
    const el = h('select', { name, 'aria-label': label }, options.map(([value, text]) => h('option', { value, selected: value === current }, text)));
    el.addEventListener('change', () => set({ [name]: el.value }));
    return el;
  };
  const status = withStatus
    ? select('estado', 'Estado', f.estado, [['', 'Todos los estados'], ...statuses.map((s) => [s, statusLabel[s] || s])])
    : null;
  const blocked = select('bloqueadas', 'Bloqueo', f.bloqueadas,
    [['', 'Bloqueadas o no'], ['1', 'Solo bloqueadas'], ['0', 'Sin bloquear']]);
  // Filled when the lists arrive; the current choice is kept meanwhile.
  const agent = select('agente', 'Agente', f.agente, [['', 'Todos los agentes'], ...(f.agente ? [[f.agente, f.agente]] : [])]);
  const workspace = select('workspace', 'Workspace', f.workspace, [['', 'Todos los workspaces'], ...(f.workspace ? [[f.workspace, `#${f.workspace}`]] : [])]);
  workspace.hidden = true;
  const priority = h('input', {
    type: 'number', name: 'prioridad', class: 'narrow', min: -1000, max: 1000, step: 1, value: f.prioridad,
    placeholder: 'todas', 'aria-label': 'Prioridad',
  });
  priority.addEventListener('change', () => {
    const v = priority.value.trim();
    if (v === '' || (PRIORITY.test(v) && Math.abs(Number(v)) <= 1000)) set({ prioridad: v === '' ? '' : String(Number(v)) });
  });

  lists.then(({ agents, workspaces }) => {
    const keep = (el, items) => {
      const chosen = el.value;
      el.replaceChildren(el.options[0], ...items.map(([value, text]) => h('option', { value, selected: value === chosen }, text)));
      if (chosen && !items.some(([v]) => v === chosen)) el.appendChild(h('option', { value: chosen, selected: true }, chosen));
    };
    keep(agent, agents.map((a) => [a.slug, a.active ? a.slug : `${a.slug} (inactivo)`]));
    keep(workspace, workspaces.map((w) => [String(w.id), `${w.name} (#${w.id})`]));
    workspace.hidden = workspaces.length < 2 && !f.workspace;
  }).catch(() => {
    // The lists are a convenience: without them the filters still work
    // with the values in the address.
  });

  const clear = isFiltered(f)
    ? h('button', { type: 'button', class: 'ghost', onclick: () => set(Object.fromEntries(PARAMS.map(([k]) => [k, '']))) }, 'Quitar filtros')
    : null;
  return h('div', { class: 'toolbar filters', role: 'search', 'aria-label': 'Buscar y filtrar tareas' },
    search, status, agent, blocked,
    h('label', { class: 'inline small' }, 'Prioridad ', priority),
    workspace, clear);
}
