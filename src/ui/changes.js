// OPS Center: a task's code — the repository it runs in (its own or its
// workspace's) and what its last run changed (branch, diff stat, patch).
//
// DOM built from text nodes only (no markup parsing): server text never
// becomes markup. `api(method, path, body)` is the page's API call.

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function kv(rows) {
  return el('dl', { class: 'kv' },
    rows.filter(Boolean).map(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
}

function code(text) {
  return text ? el('code', { class: 'path' }, text) : '—';
}

/** Inputs for a repository in a form: `repo_path` and `base_ref`, with the
 *  current values. `read()` gives the fields to send (empty clears). */
export function repoInputs(current) {
  const path = el('input', {
    name: 'repo_path', autocomplete: 'off', spellcheck: 'false', class: 'mono',
    placeholder: '/srv/repos/proyecto', value: (current && current.repo_path) || '',
  });
  const ref = el('input', {
    name: 'base_ref', autocomplete: 'off', spellcheck: 'false', class: 'mono',
    placeholder: 'la rama actual del checkout', value: (current && current.base_ref) || '',
  });
  return {
    nodes: [
      el('label', null, 'Repositorio (ruta absoluta en los hosts del launcher)', path),
      el('label', null, 'Ref base (rama, tag o commit)', ref),
    ],
    read: () => ({ repo_path: path.value.trim(), base_ref: ref.value.trim() }),
  };
}

/** A small form that PATCHes `path` with the repository fields. */
function repoForm(api, path, current, title, help, onSaved) {
  const inputs = repoInputs(current);
  const note = el('p', { class: 'muted small', hidden: true });
  const save = el('button', { type: 'submit' }, 'Guardar');
  const form = el('form', { class: 'repo-form' }, el('h3', null, title), el('p', { class: 'muted small' }, help),
    inputs.nodes, el('div', { class: 'actions' }, save), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    note.hidden = false;
    note.className = 'muted small';
    note.textContent = 'Guardando…';
    try {
      const fresh = await api('PATCH', path, inputs.read());
      note.textContent = 'Guardado.';
      if (onSaved) onSaved(fresh);
    } catch (err) {
      note.className = 'error small';
      note.textContent = (err && err.message) || String(err);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

/** The side panel «Repositorio»: where the task's agent works, and forms
 *  for the task's own repository and its workspace's. */
export function repoPanel(api, t, workspace, onSaved) {
  const own = Boolean(t.repo_path);
  const ws = workspace || {};
  const path = own ? t.repo_path : ws.repo_path;
  // As the server decides: the task's ref, else (with the workspace's
  // path) the workspace's.
  const ref = own ? t.base_ref : (t.base_ref || ws.base_ref);
  const body = el('details', { class: 'repo-edit' }, el('summary', null, 'Cambiar el repositorio'),
    repoForm(api, `/tasks/${t.id}`, t, 'De esta tarea',
      'Sustituye al del workspace. Vacío: usa el del workspace.', onSaved),
    repoForm(api, `/workspaces/${t.workspace_id}`, ws, `Del workspace #${t.workspace_id}`,
      'Para todas sus tareas sin repositorio propio (admin del workspace).', onSaved));
  return el('section', { class: 'panel' },
    el('h2', null, 'Repositorio'),
    path
      ? kv([
        ['Ruta', code(path)],
        ['Origen', own ? 'la tarea' : `el workspace #${t.workspace_id}`],
        ['Ref base', ref ? code(ref) : 'la rama actual del checkout'],
        ['Rama de la tarea', code(`ops/task-${t.id}`)],
      ])
      : el('p', { class: 'muted' }, 'Sin repositorio: el agente trabaja en el directorio del launcher.'),
    body);
}

/** The main panel «Cambios»: the branch, the diff stat and the patch of
 *  the task's last run, each collapsible. */
export function changesPanel(t) {
  const c = t.changes;
  if (!c) return null;
  const files = (c.diff_stat || '').split('\n').filter((l) => l.includes('|')).length;
  const empty = !(c.patch || '').trim();
  return el('section', { class: 'panel changes' },
    el('h2', null, 'Cambios ', el('code', { class: 'muted small' }, c.branch)),
    kv([
      ['Rama', code(c.branch)],
      ['Commit', code(c.head)],
      ['Base', code(c.base)],
      ['Archivos', String(files)],
    ]),
    empty
      ? el('p', { class: 'muted' }, 'La última ejecución no cambió ningún archivo.')
      : [
        el('details', { class: 'diff', open: true }, el('summary', null, 'Resumen (git diff --stat)'),
          el('pre', { class: 'mono' }, c.diff_stat || '')),
        c.status ? el('details', { class: 'diff' }, el('summary', null, 'Estado antes del commit (git status)'),
          el('pre', { class: 'mono' }, c.status)) : null,
        el('details', { class: 'diff' },
          el('summary', null, c.patch_truncated ? 'Parche (recortado: ver la rama)' : 'Parche'),
          el('pre', { class: 'mono patch' }, c.patch)),
      ],
    el('p', { class: 'muted small' }, 'Revisar: ', el('code', null, `git log -p ${c.base ? c.base.slice(0, 12) + '..' : ''}${c.branch}`),
      ' · integrar: ', el('code', null, `git merge ${c.branch}`)));
}
