// The task page does the operator's whole job: edit a task, unblock and
// retry a failed one, cancel a running agent, unarchive, delete; a
// dispatch while dispatch is off warns; the history shows what happened
// (a forced «Hecha», a gate approval); one toast at a time; what was typed
// when the session expired comes back after logging in; the focus goes to
// the page's heading and a skip link leads there. Any script error fails,
// except the refusals a test provokes on purpose.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createTask, dispatchToWorker, SHOTS as shots, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp();

const task = (id) => api(server.base, 'GET', `/tasks/${id}`);

async function open(t) {
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: new RegExp(t.title) }).waitFor();
}

/** A task whose dispatch failed: `waiting` and blocked, as the launcher
 *  leaves it. */
async function failedTask(title) {
  const t = await createTask(server.base, { title, priority: 500 });
  const { worker, proof } = await dispatchToWorker(server.base, t.id, `w-${t.id}`);
  await worker.report(t.id, 'failed', {
    ...proof, signature: 'cli_missing', reason: 'opencode not found', evidence: 'preparing workspace',
  });
  const after = await task(t.id);
  assert.equal(after.status, 'waiting');
  assert.equal(after.blocked, true);
  return after;
}

test('a failed task is unblocked from its page', async () => {
  const t = await failedTask('Falló y se desbloquea');
  await open(t);
  // Blocked: «Despachar» would be refused, so «Reintentar» is offered.
  assert.equal(await page.getByRole('button', { name: 'Despachar', exact: true }).count(), 0);
  await page.getByRole('button', { name: 'Desbloquear' }).click();
  await page.locator('.flash-ok').getByText(`Tarea #${t.id} desbloqueada.`).waitFor();
  assert.equal((await task(t.id)).blocked, false);
  await page.getByRole('button', { name: 'Despachar', exact: true }).waitFor();
  await page.locator('.timeline [data-kind="task.updated"]').getByText(/editó: bloqueo/).waitFor();
  expectNoErrors();
});

test('a failed task is retried (unblocked and dispatched) in one click', async () => {
  const failed = await failedTask('Falló y se reintenta');
  await open(failed);
  await page.getByRole('button', { name: 'Reintentar' }).click();
  await page.locator('.flash-ok').getByText(`Tarea #${failed.id} en cola para dispatch.`).waitFor();
  const after = await task(failed.id);
  assert.equal(after.status, 'queued');
  assert.equal(after.blocked, false);
  await page.locator('header .chips').getByText('En cola', { exact: true }).waitFor();
  expectNoErrors();
});

test('a task is edited: title, prompt, agent, model, priority, execution', async () => {
  const t = await api(server.base, 'POST', '/tasks', { title: 'Para editar', description: 'viejo' }, 201);
  await open(t);
  await page.getByRole('button', { name: 'Editar' }).click();
  const form = page.locator('form.edit-form');
  await form.getByLabel('Título').fill('Editada desde la página');
  await form.getByLabel('Prompt (descripción que recibe el agente)').fill('nuevo prompt');
  // Choosing an agent makes a manual task interactive.
  await form.locator('select[name=agent]').selectOption('opencode');
  assert.equal(await form.locator('select[name=execution]').inputValue(), 'interactive');
  await form.locator('input[name=model]').fill('gpt-test');
  await form.getByLabel('Prioridad').fill('7');
  await form.getByRole('button', { name: 'Guardar cambios' }).click();
  await page.getByRole('heading', { name: /Editada desde la página/ }).waitFor();
  const after = await task(t.id);
  assert.deepEqual([after.title, after.description, after.agent, after.model, after.priority, after.execution],
    ['Editada desde la página', 'nuevo prompt', 'opencode', 'gpt-test', 7, 'interactive']);
  assert.equal(await page.locator('form.edit-form').count(), 0);
  await page.locator('.timeline [data-kind="task.updated"]').first().getByText(/editó: .*título/).waitFor();

  // A refusal stays in the form with what was typed.
  await page.getByRole('button', { name: 'Editar' }).click();
  await form.getByLabel('Título').fill('   ');
  await form.getByLabel('Prioridad').fill('3');
  await form.getByRole('button', { name: 'Guardar cambios' }).click();
  await form.locator('.note-error').getByText('El campo «title» no puede estar vacío.').waitFor();
  assert.equal(await form.getByLabel('Prioridad').inputValue(), '3');
  assert.equal((await task(t.id)).priority, 7);
  if (shots) await page.screenshot({ path: `${shots}/task-edit.png`, fullPage: true });
  expectNoErrors([400]);
});

test('the create form makes a task for an agent interactive', async () => {
  await page.goto(`${server.base}/#/tareas`);
  await page.getByRole('button', { name: 'Nueva tarea' }).click();
  assert.equal(await page.locator('select[name=execution]').inputValue(), 'manual');
  const opencode = (await api(server.base, 'GET', '/agents')).agents.find((a) => a.slug === 'opencode');
  await page.locator('select[name=agent_id]').selectOption(String(opencode.id));
  assert.equal(await page.locator('select[name=execution]').inputValue(), 'interactive');
  await page.getByRole('button', { name: 'Cancelar' }).click();
  expectNoErrors();
});

test('dispatching while dispatch is off warns instead of a green «en cola»', async () => {
  const t = await createTask(server.base, { title: 'Sin launchers' });
  await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'false' });
  try {
    await open(t);
    await page.getByRole('button', { name: 'Despachar', exact: true }).click();
    await page.locator('.flash-warn').getByText(/el dispatch está desactivado: ningún launcher la recogerá/).waitFor();
    assert.equal(await page.locator('.flash-ok').count(), 0);
    assert.equal((await task(t.id)).status, 'queued');
  } finally {
    await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'true' });
  }
  expectNoErrors();
});

test('a running agent is cancelled and the cancellation is recorded', async () => {
  const running = await createTask(server.base, { title: 'Corre y se cancela', priority: 900 });
  const { worker, proof } = await dispatchToWorker(server.base, running.id, 'w-cancel');
  await worker.report(running.id, 'started', { ...proof, pid: 999999 });
  await open(running);
  await page.locator('header .chips').getByText('En curso', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Cancelar ejecución' }).click();
  await page.locator('.flash-ok').getByText(new RegExp(`Tarea #${running.id} cancelada`)).waitFor();
  const after = await task(running.id);
  assert.ok(!['queued', 'dispatching', 'doing'].includes(after.status), after.status);
  await page.locator('.timeline [data-kind="task.cancelled"]').getByText(/canceló la ejecución/).waitFor();
  // The worker learns it from its heartbeat, ends the agent and says how:
  // the page shows the confirmation as it arrives.
  const beat = await api(server.base, 'POST', '/dispatch/heartbeat', {
    worker_id: worker.id, host: 'browser-test', pid: 1, version: 'test',
    agents: [{ slug: 'opencode', cli: 'opencode', available: true, authenticated: true }],
    models: [], slots_total: 2, slots_busy: 1, running_task_ids: [running.id], draining: false,
  });
  assert.deepEqual(beat.cancel, [running.id]);
  await worker.report(running.id, 'cancelled', { ...proof, signal: 'SIGTERM', elapsed_ms: 120 });
  await page.locator('.timeline [data-kind="dispatch.cancel_confirmed"]').getByText(/confirmó la cancelación/).waitFor();
  expectNoErrors();
});

test('an archived task is unarchived, and a task is deleted after confirming', async () => {
  const doomed = await api(server.base, 'POST', '/tasks', { title: 'Para borrar' }, 201);
  await open(doomed);
  await page.getByRole('button', { name: 'Borrar' }).click();
  await page.getByRole('heading', { name: 'Tareas', exact: true }).waitFor();
  await page.locator('.flash-ok').getByText(`Tarea #${doomed.id} borrada.`).waitFor();
  await api(server.base, 'GET', `/tasks/${doomed.id}`, undefined, 404);

  const old = await api(server.base, 'POST', '/tasks', { title: 'Archivada y recuperada' }, 201);
  await api(server.base, 'POST', `/tasks/${old.id}/archive`);
  await open(old);
  await page.getByRole('button', { name: 'Desarchivar' }).click();
  await page.locator('.flash-ok').getByText(`Tarea #${old.id} desarchivada.`).waitFor();
  assert.equal((await task(old.id)).archived_at, null);
  expectNoErrors();
});

test('the history shows a forced «Hecha» and the gate approval, as they happen', async () => {
  const t = await createTask(server.base, { title: 'Forzada a hecha', sensitive: true });
  await open(t);
  await page.locator('.timeline [data-kind="task.created"]').getByText(/creó la tarea/).waitFor();
  await page.getByRole('button', { name: 'Aprobar Human Gate' }).click();
  await page.locator('.timeline [data-kind="gate.approved"]').getByText(/admin aprobó el Human Gate/).waitFor();
  await page.getByLabel('Nuevo estado').selectOption('done');
  await page.getByText('forzar').click();
  await page.getByRole('button', { name: 'Mover' }).click();
  const forced = page.locator('.timeline [data-kind="task.done_forced"]');
  await forced.getByText(/admin forzó «Hecha» sin evidencia de salida · Siguiente → Hecha/).waitFor();
  await page.locator('.timeline [data-kind="task.status_changed"]').getByText(/cambió el estado \(forzado\) · Siguiente → Hecha/).waitFor();
  // Newest first: the forced change is above the approval.
  const kinds = await page.locator('.timeline li').evaluateAll((lis) => lis.map((li) => li.dataset.kind));
  assert.ok(kinds.indexOf('task.done_forced') < kinds.indexOf('gate.approved'), kinds.join(' '));
  if (shots) await page.screenshot({ path: `${shots}/history.png`, fullPage: true });
  expectNoErrors();
});

test('one toast at a time: a new message replaces the old', async () => {
  const t = await api(server.base, 'POST', '/tasks', { title: 'Dos mensajes' }, 201);
  await open(t);
  await page.getByLabel('Nuevo estado').selectOption('doing');
  await page.getByRole('button', { name: 'Mover' }).click();
  await page.locator('.flash-ok').getByText(/movida a «En curso»/).waitFor();
  await page.getByLabel('Nuevo estado').selectOption('review');
  await page.getByRole('button', { name: 'Mover' }).click();
  await page.locator('.flash-ok').getByText(/movida a «En revisión»/).waitFor();
  assert.equal(await page.locator('#flash .flash-item').count(), 1);
  expectNoErrors();
});

test("a redraw asked for by one task's page does not reload the next task's page", async () => {
  const a = await api(server.base, 'POST', '/tasks', { title: 'Página anterior' }, 201);
  const b = await api(server.base, 'POST', '/tasks', { title: 'Página siguiente' }, 201);
  await open(a);
  const fetches = [];
  const count = (r) => { if (r.url().endsWith(`/api/tasks/${b.id}`)) fetches.push(r.url()); };
  page.on('request', count);
  // An event for the first task asks its page for a redraw (due a moment
  // later); the operator moves on to the second task before that.
  await page.getByLabel('Nuevo estado').selectOption('doing');
  await page.getByRole('button', { name: 'Mover' }).click();
  await page.locator('.flash-ok').getByText(/movida a «En curso»/).waitFor();
  await page.goto(`${server.base}/#/tareas/${b.id}`);
  await page.getByRole('heading', { name: /Página siguiente/ }).waitFor();
  await page.waitForTimeout(1000);
  page.off('request', count);
  assert.equal(fetches.length, 1, `the second task was fetched ${fetches.length} times`);
  expectNoErrors();
});

test('a comment typed when the session expired is there after logging in again', async () => {
  const t = await api(server.base, 'POST', '/tasks', { title: 'Borrador a salvo' }, 201);
  await open(t);
  await page.getByLabel('Añadir comentario').fill('Texto largo que no quiero perder');
  // The session ends behind the page's back (expiry, or a logout elsewhere).
  await page.evaluate(() => fetch('/api/auth/logout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }));
  await page.getByRole('button', { name: 'Comentar' }).click();
  await page.getByText('La sesión ha caducado: vuelve a iniciar sesión.').waitFor();
  await page.getByLabel('Contraseña').fill('browser-test-password');
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.getByRole('heading', { name: /Borrador a salvo/ }).waitFor();
  await page.waitForFunction(() => document.querySelector('.comment-form textarea')?.value === 'Texto largo que no quiero perder');
  // Sent now, it is saved once.
  await page.getByRole('button', { name: 'Comentar' }).click();
  await page.locator('.flash-ok').getByText('Comentario añadido.').waitFor();
  assert.equal(await page.getByLabel('Añadir comentario').inputValue(), '');
  const notes = (await task(t.id)).comments.filter((c) => c.body === 'Texto largo que no quiero perder');
  assert.equal(notes.length, 1);
  expectNoErrors([401]);
});

test('after a page change the focus is on its heading; the skip link leads there', async () => {
  const t = await api(server.base, 'POST', '/tasks', { title: 'Foco en el título' }, 201);
  await page.goto(`${server.base}/#/tareas`);
  await page.getByRole('link', { name: 'Foco en el título' }).first().click();
  await page.getByRole('heading', { name: /Foco en el título/ }).waitFor();
  await page.waitForFunction(() => document.activeElement?.tagName === 'H1');
  assert.match(await page.evaluate(() => document.activeElement.textContent), /Foco en el título/);

  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.reload();
  await page.getByRole('heading', { name: /Foco en el título/ }).waitFor();
  // The skip link comes first in the keyboard's order, out of sight until
  // it has the focus.
  const first = await page.evaluate(() => document.querySelector('#shell a[href], #shell button, #shell input').textContent);
  assert.equal(first, 'Saltar al contenido');
  assert.equal(await page.locator('#skip-link').isVisible(), true);
  const hiddenTop = await page.locator('#skip-link').evaluate((a) => a.getBoundingClientRect().bottom);
  assert.ok(hiddenTop <= 0, `the skip link shows before it has the focus (${hiddenTop})`);
  await page.locator('#skip-link').focus();
  assert.ok(await page.locator('#skip-link').evaluate((a) => a.getBoundingClientRect().top) >= 0);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.tagName === 'H1');
  assert.match(page.url(), new RegExp(`#/tareas/${t.id}$`));
  expectNoErrors();
});
