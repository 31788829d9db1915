// The operator's main flows in a real browser: log in, create and dispatch
// a task and see its agent's output, the Human Gate, and reconciling a
// stale task from Operación → Automatizaciones. Any script error fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createTask, dispatchToWorker, fakeWorker, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp();

test('create a task in the form, dispatch it, and read the agent output', async () => {
  await page.getByRole('button', { name: 'Nueva tarea' }).click();
  await page.getByLabel('Título').fill('Arreglar la página de login');
  await page.getByLabel('Prompt (descripción que recibe el agente)').fill('El botón no responde.');
  await page.locator('select[name=execution]').selectOption('interactive');
  const opencode = (await api(server.base, 'GET', '/agents')).agents.find((a) => a.slug === 'opencode');
  await page.locator('select[name=agent_id]').selectOption(String(opencode.id));
  await page.getByRole('button', { name: 'Crear tarea' }).click();
  await page.getByRole('heading', { name: /Arreglar la página de login/ }).waitFor();
  const id = Number(page.url().match(/#\/tareas\/(\d+)/)[1]);

  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(`Tarea #${id} en cola para dispatch.`).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${id}`)).status, 'queued');

  const worker = fakeWorker(server.base);
  await worker.heartbeat();
  const claim = await worker.claim();
  assert.equal(claim.task.id, id);
  const proof = { claim_token: claim.claim_token };
  await page.locator('#live-status.on').waitFor();
  await worker.report(id, 'started', { ...proof, pid: 4242, log_path: '/tmp/t.log', err_log_path: '/tmp/t.err.log' });
  // Without reloading: the status and each chunk appear as they happen.
  await page.locator('header .chips').getByText('En curso', { exact: true }).waitFor({ timeout: 3000 });
  await worker.report(id, 'output', { ...proof, chunk: 'hola desde el agente\n' });
  await page.locator('pre.live-output').getByText(/hola desde el agente/).waitFor({ timeout: 3000 });
  await worker.report(id, 'output', { ...proof, chunk: 'segunda línea\n' });
  await page.locator('pre.live-output').getByText(/segunda línea/).waitFor({ timeout: 3000 });
  assert.equal(await page.locator('.follow-output').isChecked(), true);
  await worker.report(id, 'finished', { ...proof, exit_code: 0, output: 'hola desde el agente\nlisto\n' });
  await page.locator('header .chips').getByText('En revisión', { exact: true }).waitFor({ timeout: 3000 });
  await page.locator('pre.output').getByText(/listo/).waitFor();
  expectNoErrors();
});

test('a sensitive task waits for the Human Gate until the admin approves it', async () => {
  const t = await createTask(server.base, { title: 'Rotar credenciales', sensitive: true });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Rotar credenciales/ }).waitFor();

  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(/Human Gate: esta tarea sensible necesita la aprobación/).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).blocked, true);

  await page.getByRole('button', { name: 'Aprobar Human Gate' }).click();
  await page.getByText('Human Gate aprobado.').waitFor();
  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(`Tarea #${t.id} en cola para dispatch.`).waitFor();
  const after = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(after.status, 'queued');
  assert.equal(after.gate_approved_by, 'admin');
  // The refused dispatch answered 409 on purpose.
  expectNoErrors([409]);
});

test('reconcile a task stuck in dispatching from Automatizaciones', async () => {
  // The highest priority, so that the worker claims this one.
  const t = await createTask(server.base, { title: 'Se quedó colgada', priority: 100 });
  await dispatchToWorker(server.base, t.id, 'browser-worker-2');

  await page.goto(`${server.base}/#/operacion/automatizaciones/dispatching`);
  await page.getByRole('heading', { name: 'Tareas en dispatching' }).waitFor();
  await page.getByRole('link', { name: 'Se quedó colgada' }).waitFor();
  await page.getByLabel('Minutos (vacío: el ajuste)').fill('0');
  await page.getByRole('button', { name: 'Reconciliar stale' }).click();
  await page.getByText(new RegExp(`reconciled: 1 · task_ids: #${t.id}`)).waitFor();
  const after = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(after.status, 'waiting');
  assert.equal(after.blocked, true);
  await page.screenshot({ path: process.env.SCREENSHOT || '/tmp/ops-ui-automatizaciones.png', fullPage: true });
  expectNoErrors();
});

test('the task list follows the stream, and the board moves cards by drag and by keyboard', async () => {
  await page.goto(`${server.base}/#/tareas`);
  await page.getByRole('heading', { name: 'Tareas', exact: true }).waitFor();
  // Created elsewhere (by a script): it appears without reloading.
  const t = await createTask(server.base, { title: 'Tarjeta en vivo' });
  await page.locator('table.tasks').getByText('Tarjeta en vivo').waitFor({ timeout: 3000 });

  await page.getByRole('button', { name: 'Tablero' }).click();
  const shot = process.env.OPS_UI_SCREENSHOTS;
  const col = (status) => page.locator(`.board-col[data-status=${status}]`);
  const card = page.locator(`.board-card[data-task="${t.id}"]`);
  await col('next').locator(`[data-task="${t.id}"]`).waitFor();
  // The dispatcher's columns take no card.
  assert.equal(await col('queued').evaluate((el) => el.classList.contains('locked')), true);

  // Taken by its edge: the title inside is a link.
  await card.dragTo(col('review'), { sourcePosition: { x: 4, y: 4 } });
  await col('review').locator(`[data-task="${t.id}"]`).waitFor({ timeout: 3000 });
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).status, 'review');

  // By keyboard: ← skips the dispatcher's columns (review → doing).
  await page.locator(`.board-card[data-task="${t.id}"]`).focus();
  await page.keyboard.press('ArrowLeft');
  await col('doing').locator(`[data-task="${t.id}"]`).waitFor({ timeout: 3000 });
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).status, 'doing');
  await page.keyboard.press('ArrowLeft');
  await col('next').locator(`[data-task="${t.id}"]`).waitFor({ timeout: 3000 });
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).status, 'next');

  // A change made elsewhere moves the card by itself.
  await api(server.base, 'PATCH', `/tasks/${t.id}/status`, { status: 'waiting' });
  await col('waiting').locator(`[data-task="${t.id}"]`).waitFor({ timeout: 3000 });
  if (shot) await page.screenshot({ path: `${shot}/board.png`, fullPage: true });
  expectNoErrors();
});

test('at phone width the task list is cards, without sideways scrolling', async () => {
  await page.setViewportSize({ width: 390, height: 800 });
  try {
    await page.goto(`${server.base}/#/tareas`);
    await page.locator('table.tasks tbody tr').first().waitFor();
    assert.equal(await page.locator('table.tasks thead').isVisible(), false);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    // Nor does any field of a card spill out of its cell.
    const spilled = await page.locator('table.tasks td').evaluateAll((tds) => tds
      .filter((td) => td.scrollWidth > td.clientWidth + 1).map((td) => td.textContent));
    assert.deepEqual(spilled, []);
    const shot = process.env.OPS_UI_SCREENSHOTS;
    if (shot) await page.screenshot({ path: `${shot}/phone-list.png`, fullPage: true });
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
  expectNoErrors();
});

test('health warnings are in Spanish', async () => {
  await page.goto(`${server.base}/#/operacion/automatizaciones`);
  const warnings = page.locator('ul.warnings li');
  await warnings.first().waitFor();
  for (const text of await warnings.allTextContents()) {
    assert.doesNotMatch(text, /^(the|dispatch is|active agent|running task|\d+ (task|open))/, text);
  }
  const shot = process.env.OPS_UI_SCREENSHOTS;
  if (shot) await page.screenshot({ path: `${shot}/automatizaciones.png`, fullPage: true });
  expectNoErrors();
});

test('the watchdog report is in Spanish, every field named', async () => {
  await page.goto(`${server.base}/#/operacion/automatizaciones/watchdog`);
  await page.getByRole('button', { name: 'Ejecutar watchdog' }).click();
  const report = page.locator('section[data-slot=report]');
  await report.getByRole('heading', { name: /Informe del watchdog/ }).waitFor();
  await report.getByText('Alertas resueltas (su condición terminó)').waitFor();
  // A field the page does not know is shown by its JSON name, in code.
  assert.deepEqual(await report.locator('dl.kv dt code').allTextContents(), []);
  // The stale alert of the reconciled task, in Spanish, its «Resolver» in
  // view without scrolling the table sideways.
  const alerts = page.locator('table.alerts');
  await alerts.getByText(/Tarea \d+ atascada en dispatching/).waitFor();
  await alerts.getByText(/el worker browser-worker-2 tuvo la tarea en dispatching \d+ min sin arrancarla/).waitFor();
  assert.doesNotMatch(await alerts.innerText(), /stuck in dispatching|held the task/);
  const panel = await page.locator('section[data-slot=alerts]').boundingBox();
  const resolve = await alerts.getByRole('button', { name: 'Resolver' }).first().boundingBox();
  assert.ok(resolve.x + resolve.width <= panel.x + panel.width, '«Resolver» is out of view');
  const shot = process.env.OPS_UI_SCREENSHOTS;
  if (shot) await page.screenshot({ path: `${shot}/watchdog.png`, fullPage: true });
  expectNoErrors();
});
