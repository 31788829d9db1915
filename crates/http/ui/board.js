// OPS Center: the tasks — as a list, a page at a time, or as a board with
// one column per status — with the search and filters in the address
// (filters.js) and «Nueva tarea» (new_task.js). Both follow the stream.

import { api, query } from './api.js';
import { add, fill, h } from './dom.js';
import { addressParams, apiParams, filterBar, isFiltered, lastPageOffset, readFilters } from './filters.js';
import { flash, noteError, noteNode } from './flash.js';
import { renderCreateForm } from './new_task.js';
import { current, debounced, pageHeader, redraw, watch } from './page.js';
import { agents, workspaces } from './session.js';
import { timeEl } from './time.js';
import { EXECUTION_LABEL, MANUAL_STATUSES, STATUSES, STATUS_LABEL, statusChip, taskFlags } from './vocabulary.js';

const PAGE_SIZE = 50;

/** Events about tasks (their rows, comments, dispatch). */
const taskEvent = (ev) => ev.task_id !== null && ev.task_id !== undefined;

/** The task list (or, with `vista=tablero`, the board) for the address
 *  `params`: filters, archived, page. */
export function renderBoard(view, params, seq) {
  const filters = readFilters(params, STATUSES);
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
  refresh.addEventListener('click', () => redraw());

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

