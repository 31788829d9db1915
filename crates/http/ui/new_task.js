// OPS Center: «Nueva tarea», the form that creates a task
// (`POST /api/tasks`): its agent, workspace and repository.

import { api } from './api.js';
import { allowedText, repoInputs } from './changes.js';
import { fill, h } from './dom.js';
import { busy, flashNext, noteError, setNote } from './flash.js';
import { agents, workspaces } from './session.js';

/** The form «Nueva tarea» in `panel`; `done()` closes it. A task created
 *  opens its page. */
export async function renderCreateForm(panel, done) {
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
      flashNext('ok', `Tarea #${task.id} creada.`);
      location.hash = `#/tareas/${task.id}`;
    }, note, 'No se pudo crear la tarea.');
  });
  fill(panel, form);
  form.elements.title.focus();
}

