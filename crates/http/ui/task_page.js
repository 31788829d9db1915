// OPS Center: a task's page — its status and actions, the Human Gate, the
// prompt, the agent's runs and transcript (runs.js), its raw output as it
// is written, its code (changes.js) and its review (review.js), comments (comments.js) and history
// (history.js) — redrawn live from the stream, keeping what the person
// was doing.

import { api } from './api.js';
import { changesPanel, repoPanel, repoWhere, repoWhereText } from './changes.js';
import { commentsPanel, isOutputChunk } from './comments.js';
import { add, fill, h, kv } from './dom.js';
import { busy, flash, flashNext, noteError, showError } from './flash.js';
import { focusHeading } from './focus.js';
import { historyPanel } from './history.js';
import { current, debounced, watch } from './page.js';
import { reviewView } from './review.js';
import { runsView, waitingNotes } from './runs.js';
import { mayAdminister, mayApproveGate } from './roles.js';
import { agents, knownWorkspaces, me, workspaces } from './session.js';
import { dispatchOutcome, editForm, taskActions } from './task_actions.js';
import { timeEl } from './time.js';
import { DISPATCHABLE, EXECUTION_LABEL, MANUAL_STATUSES, STATUSES, STATUS_LABEL, statusChip, taskFlags } from './vocabulary.js';

/** What the task page shown can do when the stream brings news of it;
 *  set by each `drawTask`. */
const taskLive = { appendOutput: null, reload: null, workspaceId: null, editing: null, history: null, deleting: null, runs: null, review: null, rawOpen: null };

/** The page of task `id`. */
export function renderTask(view, id, seq) {
  add(view, h('p', { class: 'crumbs' }, h('a', { href: '#/tareas' }, '← Tareas')),
    h('p', { class: 'muted' }, `Cargando la tarea #${id}…`));
  taskLive.appendOutput = null;
  taskLive.reload = null;
  taskLive.editing = null;
  taskLive.history = null;
  taskLive.runs = null;
  taskLive.review = null;
  taskLive.rawOpen = null;
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
      flashNext('warn', `La tarea #${id} fue borrada (por ${ev.actor || '?'}).`);
      location.hash = '#/tareas';
    } else if (ev.kind === 'dispatch.output') {
      if (taskLive.appendOutput && typeof ev.output === 'string') taskLive.appendOutput(ev.output);
      if (taskLive.runs) taskLive.runs.output(ev);
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
  // The transcript is the same node after the redraw, but a node taken out
  // of the page forgets how far it was scrolled.
  const transcript = view.querySelector('.transcript');
  const transcriptAt = transcript && transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 8
    ? Infinity : transcript && transcript.scrollTop;
  // Parts kept across redraws (the review) are taken out of the page and
  // put back: what had the focus there, and how far the diffs were
  // scrolled, are given back.
  const active = document.activeElement;
  const focusKept = active && active !== document.body && active.closest('[data-keep-focus]')
    ? { el: active, start: active.selectionStart, end: active.selectionEnd } : null;
  const scrolled = [...view.querySelectorAll('[data-keep-focus] .diff-scroll')].map((el) => [el, el.scrollLeft, el.scrollTop]);
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
    const transcriptAgain = view.querySelector('.transcript');
    if (transcriptAgain && transcriptAt) transcriptAgain.scrollTop = transcriptAt === Infinity ? transcriptAgain.scrollHeight : transcriptAt;
    if (taskLive.scroll) taskLive.scroll();
    if (focusKept && focusKept.el.isConnected) {
      focusKept.el.focus({ preventScroll: true });
      if (typeof focusKept.start === 'number') focusKept.el.setSelectionRange(focusKept.start, focusKept.end);
    }
    for (const [el, left, top] of scrolled) {
      el.scrollLeft = left;
      el.scrollTop = top;
    }
  };
}

/** Whether the person logged in may set workspace `id`'s repository. */
function canSetWorkspaceRepo(id) {
  const who = me() || {};
  return Boolean(who.is_admin
    || (who.workspaces || []).some((w) => w.workspace_id === id && w.role === 'admin'));
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
  /** What task_actions.js's buttons and edit form do on this page. */
  const page = {
    act, save,
    refused: (err, context) => noteError(actionNote, err, context),
    deleting: (id) => {
      taskLive.deleting = id;
    },
  };

  const archived = Boolean(t.archived_at);
  const actions = [];
  // A blocked task is retried (unblock + dispatch) instead.
  if (!archived && DISPATCHABLE.includes(t.status) && !t.blocked) {
    const dispatch = h('button', { type: 'button', class: 'primary', title: 'POST /api/tasks/:id/dispatch: pasa la tarea a la cola de los launchers' }, 'Despachar');
    dispatch.addEventListener('click', () => act(dispatch, () => api('POST', `/tasks/${t.id}/dispatch`, {}),
      (answer) => dispatchOutcome(t.id, answer), 'No se pudo despachar la tarea.'));
    actions.push(dispatch);
  }
  if (!archived && t.sensitive && !t.gate_approved_at && !mayApproveGate(me(), t.workspace_id)) {
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
    mayAdminister(me())
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
    taskLive.editing = h('section', { class: 'panel' }, editForm(page, t, list, mayApproveGate(me(), t.workspace_id), () => {
      taskLive.editing.remove();
      taskLive.editing = null;
    }));
    // A live redraw may have replaced this page's area while the agents
    // were loading: the form goes in the one shown.
    taskLive.editArea.appendChild(taskLive.editing);
    taskLive.editing.querySelector('input[name=title]').focus();
  };
  const more = taskActions(page, t, openEdit);

  // The history node is kept across redraws of the same task.
  if (!taskLive.history || taskLive.history.id !== t.id) taskLive.history = historyPanel(t.id);
  // So are the runs and their transcript: fetched by what is new.
  if (!taskLive.runs || taskLive.runs.id !== t.id) taskLive.runs = runsView(t.id);
  const runs = taskLive.runs;
  // And the review: its open files, view and comment being written.
  if (!taskLive.review || taskLive.review.id !== t.id) taskLive.review = reviewView(t.id);
  taskLive.review.setTask(t, { reload });
  runs.setTask(t, {
    act, reload,
    retryShown: more.some((b) => b.textContent === 'Reintentar'),
  });

  let archive = null;
  if (!archived) {
    archive = h('button', { type: 'button', class: 'danger ghost' }, 'Archivar');
    archive.addEventListener('click', () => {
      if (!confirm(`¿Archivar la tarea #${t.id}? Quedará de solo lectura.`)) return;
      act(archive, () => api('POST', `/tasks/${t.id}/archive`, {}), `Tarea #${t.id} archivada.`, 'No se pudo archivar la tarea.');
    });
  }

  const comments = t.comments || [];
  const logs = comments.filter(isOutputChunk);
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

  // The raw log: open by itself while there is no transcript (a custom
  // command's plain text), folded once there is, unless the person chose.
  const raw = h('details', { class: 'raw-log', open: taskLive.rawOpen ?? !runs.hasEvents() },
    h('summary', null, 'Ver registro completo ', h('span', { class: 'muted small' }, '(la salida tal como la escribe el agente)')),
    h('section', { class: 'panel', 'data-live': 'output' },
      h('div', { class: 'panel-head' },
        h('h2', null, 'Salida del agente en vivo'),
        h('label', { class: 'inline check small' }, follow, ' Seguir la salida')),
      outputState,
      output),
    h('section', { class: 'panel' },
      h('h2', null, 'Salida del dispatch ', h('code', { class: 'muted small' }, 'dispatch_output')),
      t.dispatch_output ? h('pre', { class: 'output' }, t.dispatch_output) : h('p', { class: 'muted' }, 'Sin salida todavía.')));
  raw.querySelector('summary').addEventListener('click', () => {
    taskLive.rawOpen = !raw.open;
  });
  raw.addEventListener('toggle', scroll);
  runs.onEvents = () => {
    if (taskLive.rawOpen === null) raw.open = false;
  };

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
    waitingNotes(t),
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
        runs.transcript,
        runs.followUp,
        raw,
        runs.runs,
        changesPanel(t),
        t.changes ? taskLive.review.node : null,
        commentsPanel(t, comments, logs, blockers, reload),
        taskLive.history.node),
      h('aside', { class: 'col-side' },
        h('section', { class: 'panel' },
          h('h2', null, 'Detalles'),
          kv([
            ['Ejecución', EXECUTION_LABEL[t.execution] || t.execution],
            ['Agente', t.agent ? h('code', null, t.agent) : '—'],
            ['Modelo', t.model || '—'],
            ['Prioridad', String(t.priority ?? 0)],
            ['Workspace', `#${t.workspace_id}`],
            ['Creada', timeEl(t.created_at)],
            ['Actualizada', timeEl(t.updated_at)],
            t.archived_at ? ['Archivada', timeEl(t.archived_at)] : null,
          ])),
        repoPanel(t, knownWorkspaces().find((w) => w.id === t.workspace_id),
          canSetWorkspaceRepo(t.workspace_id), () => reload({ workspaces: true }).then(() => flash('ok', 'Repositorio guardado.'))),
        h('section', { class: 'panel' },
          h('h2', null, 'Dispatch'),
          kv([
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
