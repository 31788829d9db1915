// OPS Center: a task's review — the files a run changed, each loaded on
// demand as hunks (a large diff never loads whole), in a unified or
// side-by-side view with line numbers on both sides; comments on a line
// or a range of lines (click a line number, shift-click another), shown
// under their line and listed as pending or sent; «Enviar al agente»,
// which queues the pending comments as a follow-up that resumes the
// agent's session; and a selector of the run whose diff is shown.

import { api, query } from './api.js';
import { fill, h } from './dom.js';
import { flash, noteError, setNote } from './flash.js';
import { who } from './history.js';
import { OUTCOME_LABEL } from './runs.js';
import { dispatchOutcome } from './task_actions.js';
import { timeEl } from './time.js';

const FILE_STATUS = {
  added: 'añadido', modified: 'modificado', deleted: 'borrado',
  renamed: 'renombrado', copied: 'copiado', mode_changed: 'permisos',
};
const FILE_STATUS_CLASS = {
  added: 'flag-ok', modified: 'status-doing', deleted: 'flag-bad',
  renamed: 'flag-warn', copied: 'flag-warn', mode_changed: 'flag-muted',
};
const MODE_KEY = 'ops-review-mode';

/** The path a comment names for file `f`: the new one, the old one for a
 *  deleted file. */
const pathOf = (f) => f.new_path || f.old_path;
/** The comments on file `f` (named by its new path, or its old one). */
const commentsOf = (comments, f) => comments.filter((c) => c.file === pathOf(f) || (f.old_path && c.file === f.old_path));

/** «3» or «3–5». */
const lines = (c) => (c.end_line && c.end_line !== c.line ? `${c.line}–${c.end_line}` : String(c.line));
/** Where a comment is, as `file:line`, «(antes)» on the old side. */
const where = (c) => `${c.file}:${lines(c)}${c.side === 'old' ? ' (antes)' : ''}`;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function statusChips(f) {
  return [
    h('span', { class: `chip ${FILE_STATUS_CLASS[f.status] || 'flag-muted'}`, title: f.status }, FILE_STATUS[f.status] || f.status),
    f.binary ? h('span', { class: 'chip flag-muted' }, 'binario') : null,
  ];
}

/** The file's name as the list shows it: «old → new» for a rename or a
 *  copy. */
function fileName(f) {
  if (f.old_path && f.new_path && f.old_path !== f.new_path) {
    return [h('span', { class: 'old-path' }, f.old_path), ' → ', f.new_path,
      f.similarity !== null && f.similarity !== undefined && f.similarity < 100
        ? h('span', { class: 'muted', title: 'Similitud' }, ` (${f.similarity} %)`) : null];
  }
  return pathOf(f);
}

function counts(f) {
  // A binary file has no lines to count: its chip says so.
  if (f.binary) return null;
  return h('span', { class: 'review-counts' },
    h('span', { class: 'count-add' }, `+${f.additions || 0}`), ' ', h('span', { class: 'count-del' }, `−${f.deletions || 0}`));
}

/** The rows of a hunk side by side: context on both sides, each run of
 *  removed lines paired with the added lines that follow it. */
function splitRows(hunk) {
  const rows = [];
  let dels = [];
  let adds = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i += 1) rows.push([dels[i] || null, adds[i] || null]);
    dels = [];
    adds = [];
  };
  for (const l of hunk.lines || []) {
    if (l.kind === 'del') {
      if (adds.length) flush();
      dels.push(l);
    } else if (l.kind === 'add') {
      adds.push(l);
    } else {
      flush();
      rows.push([l, l]);
    }
  }
  flush();
  return rows;
}

/** The review of task `taskId`, kept across the task page's redraws
 *  (what is open, typed or scrolled stays): `node` is its panel;
 *  `setTask(t, ctx)` is called with each drawing of the task (`ctx`: the
 *  page's `reload`). */
export function reviewView(taskId) {
  let mode = 'unified';
  try {
    if (localStorage.getItem(MODE_KEY) === 'split') mode = 'split';
  } catch {
    // No storage: unified.
  }
  const state = {
    t: null, ctx: null, review: null, runs: null, chosenRun: null, key: null,
    loading: false, again: false,
    files: new Map(), // index → { f, open, hunks, block, head, body, sig }
    form: null, // { index, side, line, end, node, text, note }
    anchor: null, // { index, side, line }: where a shift-click extends from
  };
  const view = { id: taskId };

  // The tools: which run, which view.
  const runSelect = h('select', { name: 'run', 'aria-label': 'Ejecución revisada' });
  runSelect.addEventListener('change', () => {
    state.chosenRun = runSelect.value ? Number(runSelect.value) : null;
    refresh();
  });
  const unifiedButton = h('button', { type: 'button', 'aria-pressed': String(mode === 'unified') }, 'Unificada');
  const splitButton = h('button', { type: 'button', 'aria-pressed': String(mode === 'split') }, 'Lado a lado');
  const setMode = (m) => {
    mode = m;
    unifiedButton.setAttribute('aria-pressed', String(m === 'unified'));
    splitButton.setAttribute('aria-pressed', String(m === 'split'));
    try {
      localStorage.setItem(MODE_KEY, m);
    } catch {
      // Not kept then.
    }
    for (const entry of state.files.values()) if (entry.open && entry.hunks) drawFile(entry, true);
  };
  unifiedButton.addEventListener('click', () => setMode('unified'));
  splitButton.addEventListener('click', () => setMode('split'));

  const meta = h('p', { class: 'muted small review-meta' });
  const note = h('div', { hidden: true });
  const truncated = h('p', { class: 'note note-info review-truncated', hidden: true },
    'El parche de esta ejecución está recortado: faltan archivos o partes. El completo está en su rama.');
  const fileList = h('div', { class: 'review-files' });
  const pendingList = h('ul', { class: 'review-comment-list' });
  const sentList = h('ul', { class: 'review-comment-list' });
  const pendingHead = h('h3', null, 'Comentarios pendientes');
  const sentHead = h('h3', null, 'Enviados');
  const sentBlock = h('div', { class: 'review-sent', hidden: true }, sentHead, sentList);

  // «Enviar al agente»: the pending comments, and a message if wished.
  const message = h('textarea', { name: 'message', rows: 3, maxlength: 20000, placeholder: 'Opcional: lo que el agente debe tener en cuenta además de los comentarios.' });
  const sendCount = h('p', { class: 'review-send-count' });
  const sendButton = h('button', { type: 'submit', class: 'primary' }, 'Enviar al agente');
  const sendNote = h('div', { hidden: true });
  message.addEventListener('input', () => drawSend());
  const sendForm = h('form', { class: 'review-send' },
    h('h3', null, 'Enviar la revisión al agente'),
    h('label', null, 'Mensaje general (opcional)', message),
    h('div', { class: 'actions' }, sendButton, sendCount),
    h('p', { class: 'muted small' }, 'El agente retoma su sesión con los comentarios pendientes (archivo, líneas y texto) y el mensaje, en la misma rama. La tarea vuelve a la cola.'),
    sendNote);

  view.node = h('section', { class: 'panel review', 'data-live': 'review', 'data-keep-focus': '', hidden: true },
    h('div', { class: 'panel-head' },
      h('h2', null, 'Revisión'),
      h('div', { class: 'review-tools' },
        h('label', { class: 'inline' }, 'Ejecución ', runSelect),
        h('div', { class: 'segmented', role: 'group', 'aria-label': 'Vista del diff' }, unifiedButton, splitButton))),
    meta, note, truncated, fileList,
    h('div', { class: 'review-comments' }, pendingHead, pendingList, sentBlock),
    sendForm);

  const comments = () => (state.review && state.review.comments) || [];
  /** The comments on the diff shown (the lists have every run's). */
  const shownComments = () => comments().filter((c) => state.review && c.run === state.review.run);
  const pending = () => comments().filter((c) => !c.sent_at);

  /** A comment as the lists and the threads show it. */
  const commentCard = (c, inList) => {
    let del = null;
    if (!c.sent_at) {
      del = h('button', { type: 'button', class: 'danger ghost small-button', title: 'Borrar este comentario (aún no enviado)' }, 'Borrar');
      del.addEventListener('click', () => deleteComment(c, del));
    }
    const place = inList
      ? h('a', { href: `#/tareas/${taskId}`, class: 'review-where' }, h('code', null, where(c)))
      : h('span', { class: 'muted small' }, c.end_line && c.end_line !== c.line ? `líneas ${lines(c)}` : `línea ${c.line}`);
    if (inList) {
      place.addEventListener('click', (ev) => {
        ev.preventDefault();
        reveal(c);
      });
    }
    return h(inList ? 'li' : 'div', { class: `review-comment${c.sent_at ? ' sent' : ''}`, 'data-comment': c.id },
      h('div', { class: 'review-comment-head' },
        place, ' ', h('strong', { title: c.author }, who(c.author)), ' ', h('span', { class: 'muted small' }, timeEl(c.created_at)),
        c.sent_at
          ? h('span', { class: 'chip flag-ok', title: c.sent_in_run ? `Enviado en la ejecución ${c.sent_in_run}` : null },
            c.sent_in_run ? `enviado · ejecución ${c.sent_in_run}` : 'enviado')
          : h('span', { class: 'chip flag-warn' }, 'pendiente'),
        c.run && state.review && c.run !== state.review.run ? h('span', { class: 'muted small' }, `sobre la ejecución ${c.run}`) : null,
        del),
      h('p', { class: 'pre-line review-comment-body' }, c.body),
      inList && c.hunk ? h('details', { class: 'review-excerpt' }, h('summary', null, 'Ver las líneas comentadas'),
        h('pre', { class: 't-pre' }, c.hunk)) : null);
  };

  const drawLists = () => {
    const p = pending();
    const s = comments().filter((c) => c.sent_at);
    pendingHead.textContent = `Comentarios pendientes (${p.length})`;
    fill(pendingList, p.length ? p.map((c) => commentCard(c, true))
      : h('li', { class: 'muted small' }, 'Ninguno: haz clic en el número de una línea del diff para comentarla (mayúsculas + clic en otra para un rango).'));
    sentBlock.hidden = s.length === 0;
    sentHead.textContent = `Enviados (${s.length})`;
    fill(sentList, s.map((c) => commentCard(c, true)));
    drawSend();
  };

  const drawSend = () => {
    const t = state.t;
    const n = pending().length;
    sendForm.hidden = !t || Boolean(t.archived_at);
    const canSend = t && ['review', 'waiting'].includes(t.status);
    sendCount.textContent = n ? `${plural(n, 'comentario pendiente', 'comentarios pendientes')}` : 'Sin comentarios pendientes';
    const typed = message.value.trim() !== '';
    sendButton.disabled = (n === 0 && !typed) || !canSend;
    sendButton.title = !canSend ? 'Se envía cuando la tarea está en revisión o esperando: el agente aún trabaja o la tarea no tiene una ejecución que reanudar.'
      : n === 0 && !typed ? 'Comenta alguna línea (o escribe un mensaje) primero.' : '';
  };

  // A file: its header in the list, its hunks loaded when opened.
  const fileBlock = (entry) => {
    const f = entry.f;
    entry.commentCount = h('span', { class: 'review-file-comments muted small' });
    entry.head = h('button', { type: 'button', class: 'review-file-head', 'aria-expanded': 'false' },
      h('span', { class: 'chevron', 'aria-hidden': 'true' }, '▸'), statusChips(f),
      h('code', { class: 'review-path' }, fileName(f)), counts(f), entry.commentCount,
      f.incomplete ? h('span', { class: 'chip flag-warn', title: 'El diff de este archivo está recortado' }, 'recortado') : null);
    entry.body = h('div', { class: 'review-file-body', hidden: true });
    entry.block = h('div', { class: 'review-file', 'data-file': f.index, 'data-path': pathOf(f) }, entry.head, entry.body);
    entry.head.addEventListener('click', () => toggle(entry));
    return entry.block;
  };

  const drawCommentCount = (entry) => {
    const n = commentsOf(shownComments(), entry.f).length;
    entry.commentCount.textContent = n ? plural(n, 'comentario', 'comentarios') : '';
  };

  const toggle = async (entry, open = !entry.open) => {
    entry.open = open;
    entry.head.setAttribute('aria-expanded', String(open));
    entry.head.querySelector('.chevron').textContent = open ? '▾' : '▸';
    entry.body.hidden = !open;
    if (!open) return;
    if (entry.hunks) {
      drawFile(entry, true);
      return;
    }
    if (entry.loading) return;
    entry.loading = true;
    const key = state.key;
    fill(entry.body, h('p', { class: 'muted small pad-s' }, 'Cargando el diff…'));
    try {
      const answer = await api('GET', `/tasks/${taskId}/review/files/${entry.f.index}${query({ run: state.review.run })}`);
      if (key !== state.key) return;
      entry.hunks = answer.hunks || [];
      drawFile(entry, true);
    } catch (err) {
      const n = h('div', { class: 'pad-s' });
      noteError(n, err, 'No se pudo leer el diff de este archivo.');
      fill(entry.body, n);
    } finally {
      entry.loading = false;
    }
  };

  /** The number button of line `line` on `side` of file `entry`. */
  const lineButton = (entry, side, line, hunk) => {
    const b = h('button', {
      type: 'button', class: 'ln-btn', 'data-side': side, 'data-line': line,
      title: 'Comentar esta línea (mayúsculas + clic: hasta esta línea)',
      'aria-label': `Comentar la línea ${line} ${side === 'old' ? 'anterior' : 'nueva'}`,
    }, String(line));
    b.addEventListener('mousedown', (ev) => {
      // Shift-click selects text otherwise.
      if (ev.shiftKey) ev.preventDefault();
    });
    b.addEventListener('click', (ev) => pickLine(entry, side, line, hunk, ev.shiftKey));
    return b;
  };

  const numCell = (entry, side, l, hunk) => {
    const n = l ? l[side] : null;
    return h('td', { class: `ln ln-${side}`, 'data-side': side, 'data-line': n ?? null },
      n !== null && n !== undefined ? lineButton(entry, side, n, hunk) : null);
  };
  const SIGN = { add: '+', del: '−', context: ' ' };
  const codeCell = (l, extra) => h('td', { class: `code ${l ? `k-${l.kind}` : 'k-empty'}${extra ? ` ${extra}` : ''}` },
    l ? [h('span', { class: 'sign', 'aria-hidden': 'true' }, SIGN[l.kind] || ' '), h('span', { class: 'text' }, l.text),
      l.no_newline ? h('span', { class: 'no-newline', title: 'El archivo termina aquí sin salto de línea' }, ' ⏎̸ sin salto de línea final') : null] : null);

  /** Draws the hunks of an open file in the current view, its comments
   *  under their lines and the comment form where it is open. `force`:
   *  even if its comments did not change. */
  const drawFile = (entry, force) => {
    if (!entry.hunks) return;
    const mine = commentsOf(shownComments(), entry.f);
    const sig = `${mode}|${JSON.stringify(mine.map((c) => [c.id, c.sent_at, c.sent_in_run]))}`;
    if (!force && sig === entry.sig) return;
    entry.sig = sig;
    const scroller = entry.body.querySelector('.diff-scroll');
    const left = scroller ? scroller.scrollLeft : 0;
    const f = entry.f;
    if (f.binary || (!entry.hunks.length)) {
      fill(entry.body, h('p', { class: 'muted small pad-s' },
        f.binary ? 'Archivo binario: no hay diferencias de texto que mostrar.'
          : f.status === 'mode' ? 'Solo cambiaron los permisos del archivo.'
            : f.status === 'renamed' ? 'Renombrado sin cambios en su contenido.' : 'Sin diferencias de texto.'),
      mine.length ? h('div', { class: 'review-thread' }, mine.map((c) => commentCard(c, false))) : null);
      return;
    }
    const split = mode === 'split';
    const cols = split ? 4 : 3;
    const tbody = h('tbody');
    for (const [hi, hunk] of entry.hunks.entries()) {
      tbody.appendChild(h('tr', { class: 'diff-hunk-row' },
        h('td', { class: 'hunk', colspan: cols }, hunk.header || `@@ -${hunk.old_start},${hunk.old_lines} +${hunk.new_start},${hunk.new_lines} @@`)));
      if (split) {
        for (const [o, n] of splitRows(hunk)) {
          const oldL = o && o.kind !== 'add' ? o : null;
          const newL = n && n.kind !== 'del' ? n : null;
          tbody.appendChild(h('tr', { class: 'diff-line', 'data-old': oldL ? oldL.old : null, 'data-new': newL ? newL.new : null },
            numCell(entry, 'old', oldL, hi), codeCell(oldL, 'half'), numCell(entry, 'new', newL, hi), codeCell(newL, 'half')));
        }
      } else {
        for (const l of hunk.lines || []) {
          tbody.appendChild(h('tr', { class: `diff-line k-${l.kind}`, 'data-old': l.kind !== 'add' ? l.old : null, 'data-new': l.kind !== 'del' ? l.new : null },
            numCell(entry, 'old', l.kind !== 'add' ? l : null, hi), numCell(entry, 'new', l.kind !== 'del' ? l : null, hi), codeCell(l)));
        }
      }
    }
    const rowOf = (side, line) => tbody.querySelector(`tr.diff-line[data-${side}="${line}"]`);
    // Threads: under the last line of each comment's range.
    const outside = [];
    const threads = new Map();
    for (const c of mine) {
      const side = c.side === 'old' ? 'old' : 'new';
      const at = c.end_line || c.line;
      const row = rowOf(side, at);
      if (!row) {
        outside.push(c);
        continue;
      }
      const k = `${side}:${at}`;
      if (!threads.has(k)) threads.set(k, { row, side, list: [] });
      threads.get(k).list.push(c);
    }
    // Across the whole row, so that it shows where the box is scrolled
    // to; side by side, on a wide screen, under its half.
    const inRow = (side, content) => h('td', { colspan: cols, class: `thread-cell side-${side}` }, content);
    for (const { row, side, list } of threads.values()) {
      row.after(h('tr', { class: 'review-thread-row' }, inRow(side, h('div', { class: 'review-thread' }, list.map((c) => commentCard(c, false))))));
    }
    // The form, the same node (what is typed stays), under its range.
    const fm = state.form;
    if (fm && fm.index === f.index) {
      let row = rowOf(fm.side, fm.end);
      if (row) {
        for (let n = fm.line; n <= fm.end; n += 1) {
          const r = rowOf(fm.side, n);
          if (r) r.classList.add('selected');
        }
        while (row.nextElementSibling && row.nextElementSibling.classList.contains('review-thread-row')) row = row.nextElementSibling;
        const focused = document.activeElement === fm.text;
        row.after(h('tr', { class: 'review-form-row' }, inRow(fm.side, fm.node)));
        if (focused) fm.text.focus();
      }
    }
    const scroll = h('div', { class: 'diff-scroll', tabindex: 0, 'aria-label': `Diff de ${pathOf(f)}` },
      h('table', { class: `diff-table ${split ? 'split' : 'unified'}` },
        split ? h('colgroup', null, h('col', { class: 'c-ln' }), h('col'), h('col', { class: 'c-ln' }), h('col')) : null,
        tbody));
    fill(entry.body,
      f.incomplete ? h('p', { class: 'muted small pad-s' }, 'El diff de este archivo está recortado: lo que falta está en la rama.') : null,
      scroll,
      outside.length ? h('div', { class: 'review-thread outside' },
        h('p', { class: 'muted small' }, 'Comentarios sobre líneas que este diff no muestra:'),
        outside.map((c) => commentCard(c, false))) : null);
    scroll.scrollLeft = left;
  };

  /** A click on a line number: a form for that line, or, with shift and
   *  a line picked on the same side of the same hunk, for the range (a
   *  comment lies within one hunk). */
  const pickLine = (entry, side, line, hunk, shift) => {
    const a = state.anchor;
    let from = line;
    let to = line;
    if (shift && a && a.index === entry.f.index && a.side === side && a.hunk === hunk) {
      from = Math.min(a.line, line);
      to = Math.max(a.line, line);
    } else {
      state.anchor = { index: entry.f.index, side, line, hunk };
    }
    openForm(entry, side, from, to);
  };

  const closeForm = () => {
    const fm = state.form;
    state.form = null;
    if (!fm) return;
    const entry = state.files.get(fm.index);
    if (entry) drawFile(entry, true);
  };

  const openForm = (entry, side, line, end) => {
    const previous = state.form;
    const text = previous ? previous.text : h('textarea', { name: 'body', rows: 3, maxlength: 20000, 'aria-label': 'Comentario' });
    const formNote = previous ? previous.note : h('div', { hidden: true });
    const title = h('p', { class: 'small review-form-title' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Guardar comentario');
    const cancel = h('button', { type: 'button' }, 'Cancelar');
    const node = h('form', { class: 'review-comment-form' }, title, text,
      h('div', { class: 'actions' }, save, cancel, h('span', { class: 'muted small' }, 'Mayúsculas + clic en otro número: un rango de líneas.')),
      formNote);
    title.textContent = `${line === end ? `Comentario en la línea ${line}` : `Comentario en las líneas ${line}–${end}`}${side === 'old' ? ' de la versión anterior' : ''} de ${pathOf(entry.f)}`;
    cancel.addEventListener('click', closeForm);
    node.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) {
        setNote(formNote, 'error', 'Escribe el comentario.');
        text.focus();
        return;
      }
      save.disabled = true;
      try {
        const c = await api('POST', `/tasks/${taskId}/review/comments`, {
          run: state.review.run, file: pathOf(entry.f), line, ...(end !== line ? { end_line: end } : {}), side, body: text.value,
        });
        if (state.review && !comments().some((x) => x.id === c.id)) state.review.comments = [...comments(), c];
        state.form = null;
        state.anchor = null;
        drawFile(entry, true);
        drawCommentCount(entry);
        drawLists();
      } catch (err) {
        noteError(formNote, err, 'No se guardó el comentario.');
      } finally {
        save.disabled = false;
      }
    });
    const moved = previous && previous.index !== entry.f.index ? state.files.get(previous.index) : null;
    state.form = { index: entry.f.index, side, line, end, node, text, note: formNote };
    if (moved) drawFile(moved, true);
    drawFile(entry, true);
    text.focus();
  };

  const deleteComment = async (c, button) => {
    if (!confirm(`¿Borrar el comentario en ${where(c)}?`)) return;
    button.disabled = true;
    try {
      await api('DELETE', `/tasks/${taskId}/review/comments/${c.id}`);
      if (state.review) state.review.comments = comments().filter((x) => x.id !== c.id);
      redrawComments();
      flash('ok', 'Comentario borrado.');
    } catch (err) {
      noteError(note, err, 'No se pudo borrar el comentario.');
      if (err.code === 'comment_sent') refresh();
    } finally {
      button.disabled = false;
    }
  };

  /** Opens the file of comment `c` and brings its line into view. */
  const reveal = async (c) => {
    if (state.review && c.run !== state.review.run) {
      state.chosenRun = c.run;
      await refresh();
    }
    const entry = [...state.files.values()].find((e) => commentsOf([c], e.f).length);
    if (!entry) return;
    if (!entry.open || !entry.hunks) await toggle(entry, true);
    const card = entry.body.querySelector(`[data-comment="${c.id}"]`);
    (card || entry.block).scrollIntoView({ block: 'center' });
  };

  const redrawComments = () => {
    for (const entry of state.files.values()) {
      drawCommentCount(entry);
      if (entry.open) drawFile(entry);
    }
    drawLists();
  };

  const drawRuns = () => {
    const runs = (state.runs && state.runs.runs) || [];
    const shown = state.review ? state.review.run : null;
    const options = [h('option', { value: '' }, 'La última con cambios')];
    for (const r of [...runs].sort((a, b) => b.number - a.number)) {
      options.push(h('option', { value: r.number },
        `Ejecución ${r.number}${r.follow_up ? ' · seguimiento' : ''} · ${OUTCOME_LABEL[r.outcome] || r.outcome}`));
    }
    fill(runSelect, options);
    runSelect.value = state.chosenRun !== null ? String(state.chosenRun) : '';
    if (state.chosenRun === null && shown) options[0].textContent = `La última con cambios (${shown})`;
  };

  const apply = (review) => {
    const key = `${review.run}:${review.head}`;
    const same = key === state.key;
    state.review = review;
    const files = review.files || [];
    if (!same) {
      // Another run or head: the files are new; those open by path stay open.
      const wasOpen = new Set([...state.files.values()].filter((e) => e.open).map((e) => pathOf(e.f)));
      state.key = key;
      state.files = new Map();
      state.form = null;
      state.anchor = null;
      fill(fileList, files.length ? files.map((f) => {
        const entry = { f, open: false, hunks: null, sig: null };
        state.files.set(f.index, entry);
        return fileBlock(entry);
      }) : h('p', { class: 'muted' }, review.run === null || review.run === undefined
        ? 'Ninguna ejecución ha informado de cambios todavía.' : 'Esta ejecución no cambió ningún archivo.'));
      for (const entry of state.files.values()) if (wasOpen.has(pathOf(entry.f))) toggle(entry, true);
    }
    const adds = files.reduce((s, f) => s + (f.additions || 0), 0);
    const dels = files.reduce((s, f) => s + (f.deletions || 0), 0);
    meta.hidden = review.run === null || review.run === undefined;
    fill(meta, `Ejecución ${review.run} · rama `, h('code', null, review.branch || '—'), ' · ',
      h('code', { title: `${review.base || ''}..${review.head || ''}` }, `${(review.base || '').slice(0, 10)}..${(review.head || '').slice(0, 10)}`),
      ` · ${plural(files.length, 'archivo', 'archivos')} · `,
      h('span', { class: 'count-add' }, `+${adds}`), ' ', h('span', { class: 'count-del' }, `−${dels}`));
    truncated.hidden = !review.truncated;
    redrawComments();
    drawRuns();
  };

  /** Reads the review again; one read at a time, another asked for
   *  meanwhile runs after it. */
  const refresh = async () => {
    if (state.loading) {
      state.again = true;
      return;
    }
    state.loading = true;
    try {
      do {
        state.again = false;
        const [review, runs] = await Promise.all([
          api('GET', `/tasks/${taskId}/review${query({ run: state.chosenRun })}`),
          api('GET', `/tasks/${taskId}/runs`).catch(() => state.runs),
        ]);
        state.runs = runs;
        apply(review);
      } while (state.again);
      note.hidden = true;
    } catch (err) {
      if (err.status === 404 && state.chosenRun !== null && err.code === 'not_found') {
        // A run that reported no change: nothing to review in it.
        state.key = null;
        state.files = new Map();
        state.form = null;
        meta.hidden = true;
        note.hidden = true;
        fill(fileList, h('p', { class: 'muted' }, `La ejecución ${state.chosenRun} no informó de cambios: elige otra.`));
      } else {
        noteError(note, err, 'No se pudo leer la revisión.');
      }
    } finally {
      state.loading = false;
    }
  };

  sendForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const n = pending().length;
    sendButton.disabled = true;
    try {
      const text = message.value.trim();
      const answer = await api('POST', `/tasks/${taskId}/review/send`, text ? { message: message.value } : {});
      message.value = '';
      sendNote.hidden = true;
      const [kind, said] = await dispatchOutcome(taskId, answer);
      await Promise.all([refresh(), state.ctx && state.ctx.reload()]);
      flash(kind, kind === 'ok' ? `Revisión enviada al agente (${plural(n, 'comentario', 'comentarios')}): la tarea #${taskId} está en cola.` : said);
    } catch (err) {
      noteError(sendNote, err, 'No se envió la revisión al agente.');
      refresh();
    } finally {
      drawSend();
    }
  });

  view.setTask = (t, ctx) => {
    state.t = t;
    state.ctx = ctx;
    view.node.hidden = !t.changes;
    drawSend();
    if (t.changes) refresh();
  };
  return view;
}
