// OPS Center: a task's comments — notes, blockers, logs and the agent's
// output chunks (a run of them shown as one entry) — and the form that
// adds one.

import { api } from './api.js';
import { fill, h } from './dom.js';
import { busy, flash } from './flash.js';
import { timeEl } from './time.js';

const COMMENT_KIND_LABEL = { note: 'Nota', log: 'Log', blocker: 'Bloqueo', system: 'Sistema' };
/** The author of the agent's output chunks. */
const DISPATCH_AUTHOR = 'ai-dispatch';

/** The panel «Comentarios» of task `t`: its comments, filtered by kind,
 *  and the form to add one; `reload()` redraws the page after adding. */
export function commentsPanel(t, comments, logs, blockers, reload) {
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

/** Whether comment `c` is a chunk of the agent's output. */
export const isOutputChunk = (c) => c.kind === 'log' && c.author === DISPATCH_AUTHOR;

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
