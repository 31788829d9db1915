// What a person can do to one task besides moving its status: edit it,
// unblock it, retry it (unblock + dispatch), cancel its running agent,
// unarchive it, delete it. `page` is what the task page shown does for
// them: `act(button, fn, okText, context)` (runs an action, redraws the
// task, shows the outcome; `okText` may be a function of the answer
// giving `[kind, text]`), `save(button, fn, okText, noteEl, context)`
// (the same, a refusal shown in `noteEl`), `refused(err, context)` (a
// refusal shown above the task) and `deleting(id)` (a delete from this
// page is under way, or no longer with null).

import { api } from './api.js';
import { h } from './dom.js';
import { flashNext, setNote } from './flash.js';
import { IN_FLIGHT } from './vocabulary.js';

/** The message after a dispatch or retry: a warning, not a green «en
 *  cola», when nothing will take the task because dispatch is off. The
 *  answer says so (`dispatch_enabled`, `warning`); a server whose answer
 *  does not is asked for the setting. */
export async function dispatchOutcome(id, answer) {
  let enabled = answer && typeof answer.dispatch_enabled === 'boolean' ? answer.dispatch_enabled : null;
  if (answer && (answer.warning === 'dispatch_disabled' || (answer.warnings || []).includes('dispatch_disabled'))) enabled = false;
  if (enabled === null) {
    try {
      const s = await api('GET', '/settings/dispatch_enabled');
      enabled = String(s && (s.value ?? s.dispatch_enabled)) === 'true';
    } catch {
      enabled = true;
    }
  }
  return enabled
    ? ['ok', `Tarea #${id} en cola para dispatch.`]
    : ['warn', `Tarea #${id} en cola, pero el dispatch está desactivado: ningún launcher la recogerá hasta que se active (Operación → Automatizaciones).`];
}

/** The buttons for task `t`, in the order a person needs them. `onEdit`
 *  opens the edit form. */
export function taskActions(page, t, onEdit) {
  const { act } = page;
  const out = [];
  const archived = Boolean(t.archived_at);
  const button = (label, cls, title) => h('button', { type: 'button', class: cls || null, title: title || null }, label);

  if (archived) {
    const unarchive = button('Desarchivar', 'primary', 'La tarea vuelve a las listas y se puede editar.');
    unarchive.addEventListener('click', () => act(unarchive, () => api('POST', `/tasks/${t.id}/unarchive`, {}),
      `Tarea #${t.id} desarchivada.`, 'No se pudo desarchivar la tarea.'));
    out.push(unarchive);
  } else {
    if (t.blocked && ['next', 'waiting', 'review'].includes(t.status) && t.execution === 'interactive') {
      const retry = button('Reintentar', 'primary', 'Desbloquea la tarea y la despacha de nuevo, en un solo paso.');
      retry.addEventListener('click', () => act(retry, () => api('POST', `/tasks/${t.id}/retry`, {}),
        (answer) => dispatchOutcome(t.id, answer), 'No se pudo reintentar la tarea.'));
      out.push(retry);
    }
    if (t.blocked) {
      const unblock = button('Desbloquear', null, 'Quita el bloqueo; la tarea queda en su estado actual.');
      unblock.addEventListener('click', () => act(unblock, () => api('PATCH', `/tasks/${t.id}`, { blocked: false }),
        `Tarea #${t.id} desbloqueada.`, 'No se pudo desbloquear la tarea.'));
      out.push(unblock);
    }
    if (IN_FLIGHT.includes(t.status)) {
      const cancel = button('Cancelar ejecución', 'danger', 'Retira la tarea del worker; el launcher termina el agente y dice cómo acabó.');
      cancel.addEventListener('click', () => {
        const running = t.status === 'queued' ? 'sacarla de la cola' : 'terminar el agente que la ejecuta';
        if (!confirm(`¿Cancelar la tarea #${t.id}? Esto va a ${running}.`)) return;
        act(cancel, () => api('POST', `/tasks/${t.id}/cancel`, {}),
          `Tarea #${t.id} cancelada: el launcher terminará el agente y lo registrará en la tarea.`, 'No se pudo cancelar la tarea.');
      });
      out.push(cancel);
    }
    const edit = button('Editar', null, 'Título, prompt, agente, modelo, prioridad, ejecución, sensible, espera cambios.');
    edit.addEventListener('click', onEdit);
    out.push(edit);
  }
  const del = button('Borrar', 'danger ghost', 'Borra la tarea, sus comentarios y su historial.');
  del.addEventListener('click', async () => {
    if (!confirm(`¿Borrar la tarea #${t.id} «${t.title}»? No se puede deshacer.`)) return;
    del.disabled = true;
    page.deleting(t.id);
    try {
      await api('DELETE', `/tasks/${t.id}`);
      flashNext('ok', `Tarea #${t.id} borrada.`);
      location.hash = '#/tareas';
    } catch (err) {
      page.deleting(null);
      page.refused(err, 'No se pudo borrar la tarea.');
    } finally {
      del.disabled = false;
    }
  });
  out.push(del);
  return out;
}

/** The fields of the edit form that differ from task `t`. */
function changes(t, f) {
  const body = {};
  const title = f.title.value.trim();
  if (title !== t.title) body.title = title;
  if (f.description.value !== (t.description || '')) body.description = f.description.value;
  if (f.execution.value !== t.execution) body.execution = f.execution.value;
  const slug = f.agent.value || null;
  if (slug !== (t.agent || null)) body.agent = slug;
  const model = f.model.value.trim() || null;
  if (model !== (t.model || null)) body.model = model;
  const priority = Number(f.priority.value);
  if (priority !== (t.priority ?? 0)) body.priority = priority;
  if (f.sensitive.checked !== Boolean(t.sensitive)) body.sensitive = f.sensitive.checked;
  if (f.expects_changes.checked !== (t.expects_changes !== false)) body.expects_changes = f.expects_changes.checked;
  return body;
}

/** The edit form of task `t`. `agents`: GET /api/agents' list. Sends
 *  only what changed (PATCH /api/tasks/:id); `mayClearSensitive` null or
 *  the reason a person may not clear `sensitive`. */
export function editForm(page, t, agents, mayClearSensitive, onDone) {
  const note = h('div', { hidden: true, 'data-note': '' });
  const sensitive = h('input', { type: 'checkbox', name: 'sensitive', checked: Boolean(t.sensitive) });
  if (t.sensitive && mayClearSensitive) {
    sensitive.disabled = true;
    sensitive.title = mayClearSensitive;
  }
  const form = h('form', { class: 'form-grid edit-form', 'data-scope': `edit-${t.id}` },
    h('h2', { class: 'span-2' }, `Editar la tarea #${t.id}`),
    h('label', { class: 'span-2' }, 'Título', h('input', { name: 'title', required: true, maxlength: 500, value: t.title })),
    h('label', { class: 'span-2' }, 'Prompt (descripción que recibe el agente)',
      h('textarea', { name: 'description', rows: 6 }, t.description || '')),
    h('label', null, 'Ejecución',
      h('select', { name: 'execution' },
        h('option', { value: 'manual', selected: t.execution === 'manual' }, 'Manual (la hace una persona)'),
        h('option', { value: 'interactive', selected: t.execution === 'interactive' }, 'Interactiva (la despacha un agente)'))),
    h('label', null, 'Agente',
      h('select', { name: 'agent' },
        h('option', { value: '' }, '— sin agente —'),
        agents.map((a) => h('option', { value: a.slug, selected: a.slug === t.agent },
          `${a.name || a.slug} (${a.slug})${a.active ? '' : ' — inactivo'}`)))),
    h('label', null, 'Modelo', h('input', { name: 'model', placeholder: 'el del agente', autocomplete: 'off', value: t.model || '' })),
    h('label', null, 'Prioridad', h('input', { name: 'priority', type: 'number', value: t.priority ?? 0, min: -1000, max: 1000, step: 1 })),
    h('label', { class: 'check span-2' }, sensitive,
      ' Sensible: necesita la aprobación del Human Gate antes de despacharse',
      t.sensitive && mayClearSensitive ? h('span', { class: 'muted small' }, ` (${mayClearSensitive})`) : null),
    h('label', { class: 'check span-2' },
      h('input', { type: 'checkbox', name: 'expects_changes', checked: t.expects_changes !== false }),
      ' Espera cambios en el repositorio: si una ejecución termina sin cambiar su rama, queda bloqueada («sin cambios») en vez de pasar a revisión'),
    t.sensitive && t.gate_approved_at ? h('p', { class: 'muted small span-2' },
      'Cambiar el título, el prompt, el agente, el modelo o «sensible» retira la aprobación del Human Gate.') : null,
    h('div', { class: 'span-2' }, note),
    h('div', { class: 'span-2 actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Guardar cambios'),
      h('button', { type: 'button', class: 'ghost', onclick: onDone }, 'Cancelar')));
  // Choosing an agent for a manual task means it is for the agent.
  form.elements.agent.addEventListener('change', () => {
    if (form.elements.agent.value) form.elements.execution.value = 'interactive';
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = changes(t, form.elements);
    if (!Number.isInteger(Number(form.elements.priority.value))) {
      setNote(note, 'error', 'La prioridad debe ser un número entero.');
      return;
    }
    if (Object.keys(body).length === 0) {
      setNote(note, 'info', 'No has cambiado nada.');
      return;
    }
    // A refusal stays in the form, with what was typed.
    const submit = form.querySelector('button[type=submit]');
    await page.save(submit, () => api('PATCH', `/tasks/${t.id}`, body),
      `Tarea #${t.id} guardada.`, note, 'No se pudieron guardar los cambios.');
  });
  return form;
}
