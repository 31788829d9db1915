// OPS Center: a task's code — the repository it runs in (its own or its
// workspace's) and what its last run changed (branch, diff stat, patch).
//
// DOM built from text nodes only (no markup parsing): server text never
// becomes markup.

import { api } from './api.js';
import { h, kv } from './dom.js';
import { noteError } from './flash.js';

function code(text) {
  return text ? h('code', { class: 'path' }, text) : '—';
}

/** Where the agent of task `t` works, as the server says
 *  (`effective_repo_path`, `effective_base_ref`): the path, the ref its
 *  branch starts from, and whose repository it is; `null` without one. */
function where(t) {
  if (!t.effective_repo_path) return null;
  return {
    path: t.effective_repo_path,
    ref: t.effective_base_ref,
    origin: t.repo_path ? 'propio de la tarea' : `del workspace #${t.workspace_id}`,
  };
}

/** Where the task's agent will work, in one sentence (for a dialog). */
export function repoWhereText(t) {
  const w = where(t);
  if (!w) return 'el directorio de trabajo del launcher (la tarea no tiene repositorio)';
  return `el repositorio ${w.path} (${w.ref ? `ref base ${w.ref}` : 'la rama actual del checkout'}; ${w.origin}), en su rama ops/task-${t.id}`;
}

/** The same as nodes, for the Human Gate panel: what an approver
 *  approves is also where it runs. */
export function repoWhere(t) {
  const w = where(t);
  return h('p', { class: 'gate-repo' }, 'Se ejecutará en ',
    w
      ? [h('code', { class: 'path' }, w.path), ' (', w.ref ? ['ref base ', h('code', null, w.ref)] : 'la rama actual del checkout',
        `; ${w.origin}), en la rama `, h('code', null, `ops/task-${t.id}`), '.']
      : 'el directorio de trabajo del launcher: la tarea no tiene repositorio.');
}

/** What workspace `ws` lets its tasks name as their own repository, for
 *  the help of a task's repository field. */
export function allowedText(ws) {
  const roots = (ws && ws.repo_roots) || [];
  const own = ws && ws.repo_path ? `el del workspace (${ws.repo_path})` : null;
  if (!roots.length) {
    return own
      ? `Este workspace solo permite ${own}: para otros, un admin del workspace debe fijar antes sus raíces permitidas.`
      : 'Este workspace no permite repositorios propios: un admin del workspace debe fijar antes sus raíces permitidas.';
  }
  return `Permitidos: ${own ? `${own} o ` : ''}uno bajo ${roots.join(', ')}.`;
}

/** Inputs for a repository in a form: `repo_path` and `base_ref`, with the
 *  current values. `read()` gives the fields to send (empty clears). */
export function repoInputs(current) {
  const path = h('input', {
    name: 'repo_path', autocomplete: 'off', spellcheck: 'false', class: 'mono',
    placeholder: '/srv/repos/proyecto', value: (current && current.repo_path) || '',
  });
  const ref = h('input', {
    name: 'base_ref', autocomplete: 'off', spellcheck: 'false', class: 'mono',
    placeholder: 'la rama actual del checkout', value: (current && current.base_ref) || '',
  });
  return {
    nodes: [
      h('label', null, 'Repositorio (ruta absoluta en los hosts del launcher)', path),
      h('label', null, 'Ref base (rama, tag o commit)', ref),
    ],
    read: () => ({ repo_path: path.value.trim(), base_ref: ref.value.trim() }),
  };
}

/** The workspace's allowed roots, one absolute path per line; `read()`
 *  gives the list to send (an empty one allows none) when it was edited,
 *  so that saving the repository alone never sends back a list read
 *  before someone else changed it. */
function rootsInput(current) {
  const roots = h('textarea', {
    name: 'repo_roots', rows: 3, spellcheck: 'false', class: 'mono', placeholder: '/srv/repos',
  }, ((current && current.repo_roots) || []).join('\n'));
  return {
    nodes: [h('label', null, 'Raíces permitidas para el repositorio propio de una tarea (una ruta absoluta por línea)', roots)],
    read: () => (roots.value === roots.defaultValue ? {}
      : { repo_roots: roots.value.split('\n').map((l) => l.trim()).filter(Boolean) }),
  };
}

/** A small form that PATCHes `path` with the repository fields (and, for
 *  a workspace, its allowed roots); `scope` (`task` or `workspace`) names
 *  it, so that a redraw can keep what was being typed in it. */
function repoForm(path, scope, current, title, help, refused, onSaved) {
  const repo = repoInputs(current);
  const roots = scope === 'workspace' ? rootsInput(current) : null;
  const inputs = {
    nodes: [repo.nodes, roots ? roots.nodes : null],
    read: () => ({ ...repo.read(), ...(roots ? roots.read() : {}) }),
  };
  const note = h('div', { 'data-note': '', hidden: true });
  const save = h('button', { type: 'submit' }, 'Guardar');
  const form = h('form', { class: 'repo-form', 'data-scope': scope }, h('h3', null, title),
    h('p', { class: 'muted small' }, help), inputs.nodes, h('div', { class: 'actions' }, save), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    note.hidden = false;
    note.className = 'muted small';
    note.textContent = 'Guardando…';
    try {
      const fresh = await api('PATCH', path, inputs.read());
      // Saved: nothing typed is left to keep across the redraw, which
      // shows the values as the server keeps them (roots sorted). A live
      // redraw while the request was out may have replaced this form with
      // a new one holding the same typed values: those are saved too.
      const scoped = document.querySelectorAll(`form.repo-form[data-scope="${scope}"]`);
      for (const f of [form, ...scoped].flatMap((x) => [...x.querySelectorAll('input, textarea')])) {
        f.defaultValue = f.value;
      }
      note.hidden = true;
      // Saved: the editor closes and the panel shows the new repository.
      const editor = form.closest('details');
      if (editor) editor.open = false;
      if (onSaved) onSaved(fresh);
    } catch (err) {
      noteError(note, err, refused);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

/** The side panel «Repositorio»: where the task's agent works, and forms
 *  for the task's own repository and (for those who may set it) its
 *  workspace's. */
export function repoPanel(t, workspace, canSetWorkspace, onSaved) {
  const own = Boolean(t.repo_path);
  const ws = workspace || {};
  // As the server decides: the task's own, else its workspace's.
  const path = t.effective_repo_path;
  const ref = t.effective_base_ref;
  const editable = !t.archived_at;
  const body = editable ? h('details', { class: 'repo-edit', 'data-keep': 'repo-edit' }, h('summary', null, 'Cambiar el repositorio'),
    repoForm(`/tasks/${t.id}`, 'task', t, 'De esta tarea',
      `Sustituye al del workspace. Vacío: usa el del workspace. ${allowedText(workspace)}`,
      'No se pudo guardar el repositorio de la tarea.', onSaved),
    canSetWorkspace ? repoForm(`/workspaces/${t.workspace_id}`, 'workspace', ws, `Del workspace #${t.workspace_id}`,
      'Para todas sus tareas sin repositorio propio. Las raíces deciden qué repositorios propios pueden nombrar sus tareas.',
      `No se pudo guardar el repositorio del workspace #${t.workspace_id}.`, onSaved) : null) : null;
  return h('section', { class: 'panel repo' },
    h('h2', null, 'Repositorio'),
    path
      ? kv([
        ['Ruta', code(path)],
        ['Origen', own ? 'la tarea' : `el workspace #${t.workspace_id}`],
        ['Ref base', ref ? code(ref) : 'la rama actual del checkout'],
        ['Rama de la tarea', code(`ops/task-${t.id}`)],
      ])
      : h('p', { class: 'muted' }, 'Sin repositorio: el agente trabaja en el directorio del launcher.'),
    body);
}

/** The class of one line of a unified diff, for its colour. */
function diffLineClass(line) {
  if (line.startsWith('diff --git ')) return 'diff-file';
  if (line.startsWith('+++ ') || line.startsWith('--- ')) return 'diff-meta';
  if (line.startsWith('@@')) return 'diff-hunk';
  if (line.startsWith('+')) return 'diff-add';
  if (line.startsWith('-')) return 'diff-del';
  return null;
}

/** A patch as a `<pre>` of one text span per line, coloured by kind. */
function patchPre(patch) {
  const pre = h('pre', { class: 'mono patch', tabindex: 0 });
  for (const line of patch.replace(/\n$/, '').split('\n')) {
    const cls = diffLineClass(line);
    pre.appendChild(cls ? h('span', { class: cls }, line) : document.createTextNode(line));
    pre.appendChild(document.createTextNode('\n'));
  }
  return pre;
}

function filesText(n) {
  return n === 1 ? '1 archivo' : `${n} archivos`;
}

/** The main panel «Cambios»: the branch, the diff stat and the patch of
 *  the task's last run, each collapsible (`data-keep` lets a live redraw
 *  keep them as the reader left them). */
export function changesPanel(t) {
  const c = t.changes;
  if (!c) return null;
  const files = (c.diff_stat || '').split('\n').filter((l) => l.includes('|')).length;
  const empty = !(c.patch || '').trim();
  const range = `${c.base ? `${c.base.slice(0, 12)}..` : ''}${c.branch}`;
  return h('section', { class: 'panel changes' },
    h('h2', null, 'Cambios de la última ejecución'),
    kv([
      ['Rama', code(c.branch)],
      ['Commit', code(c.head)],
      ['Base', code(c.base)],
      ['Archivos', empty ? 'ninguno' : filesText(files)],
    ]),
    empty
      ? h('p', { class: 'muted' }, 'La última ejecución no cambió ningún archivo.')
      : [
        h('details', { class: 'diff diff-stat', open: true, 'data-keep': 'diff-stat' },
          h('summary', null, 'Resumen ', h('span', { class: 'muted small' }, '(git diff --stat)')),
          h('pre', { class: 'mono' }, c.diff_stat || '')),
        c.status ? h('details', { class: 'diff diff-status', 'data-keep': 'diff-status' },
          h('summary', null, 'Archivos tocados antes del commit ', h('span', { class: 'muted small' }, '(git status)')),
          h('pre', { class: 'mono' }, c.status)) : null,
        h('details', { class: 'diff diff-patch', 'data-keep': 'diff-patch' },
          h('summary', null, 'Parche', c.patch_truncated
            ? h('span', { class: 'muted small' }, ' (recortado: el completo está en la rama)') : null),
          patchPre(c.patch)),
      ],
    h('p', { class: 'muted small review-hint' }, 'Revisar: ', h('code', null, `git log -p ${range}`),
      ' · integrar: ', h('code', null, `git merge ${c.branch}`)));
}
