// A task's runs on its page: the transcript shown live (a tool call that
// expands to its input and result, an error in red, a rejected key said
// as such) and fetched only by what is new; the runs with tokens and
// cost; «Enviar al agente» queues a follow-up whose run is marked
// «seguimiento»; a run without a session offers «Reintentar» instead; a
// rate-limited task says when it is retried. Operación: a workspace's
// monthly budget and its usage, and the model prices setting. A fake
// worker plays the launcher over the API with the service token.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminApi, api, createTask, dispatchToWorker, fakeWorker, SHOTS as shots, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp();

const task = (id) => api(server.base, 'GET', `/tasks/${id}`);

async function open(t) {
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: new RegExp(t.title) }).waitFor();
}

/** The transcript requests the page makes, by their `after`. */
function watchTranscript() {
  const afters = [];
  const seen = (r) => {
    const m = /\/api\/tasks\/\d+\/transcript\?after=(\d+)$/.exec(r.url());
    if (m) afters.push(Number(m[1]));
  };
  page.on('request', seen);
  return { afters, stop: () => page.off('request', seen) };
}

let reviewed = null;

test('the transcript shows the agent at work: tool calls expand, errors are red, runs have their cost', async () => {
  const t = await createTask(server.base, { title: 'Escribe hola.txt', model: 'gpt-5' });
  await open(t);
  const requests = watchTranscript();
  const { worker, proof } = await dispatchToWorker(server.base, t.id, 'w-runs');
  await worker.report(t.id, 'started', { ...proof, pid: 4242 });
  await page.locator('header .chips').getByText('En curso', { exact: true }).waitFor();
  await worker.report(t.id, 'output', {
    ...proof, chunk: '{"type":"system"}\n', offset: 0, events: [
      { kind: 'session', id: 'ses-0123456789abcdef' },
      { kind: 'message', text: 'Voy a crear hola.txt.' },
      { kind: 'tool_call', name: 'Write', summary: 'hola.txt', detail: '{"file_path": "hola.txt", "content": "hola"}' },
    ],
  });
  const transcript = page.locator('.transcript');
  await transcript.getByText('Voy a crear hola.txt.').waitFor();
  const call = transcript.locator('details.t-tool').first();
  await call.locator('summary').getByText('hola.txt').waitFor();
  // Folded: one line until it is opened.
  assert.equal(await call.evaluate((d) => d.open), false);
  await worker.report(t.id, 'output', {
    ...proof, chunk: '{"type":"user"}\n', offset: 18, events: [
      { kind: 'tool_result', name: 'Write', text: 'File created successfully' },
      { kind: 'error', text: 'API error 401: invalid api key' },
      { kind: 'message', text: 'Hecho: hola.txt escrito.' },
      { kind: 'usage', tokens_in: 1200, tokens_out: 80, cost_usd: 0.0123 },
    ],
  });
  await transcript.getByText('Hecho: hola.txt escrito.').waitFor();
  await call.locator('summary').click();
  await call.getByText('"content": "hola"').waitFor();
  await call.getByText('File created successfully').waitFor();
  // The provider's words, in red, said to be a rejected key.
  const error = transcript.locator('.t-error');
  await error.getByText(/Clave rechazada por el proveedor:/).waitFor();
  await error.getByText(/API error 401: invalid api key/).waitFor();
  const color = await error.evaluate((e) => getComputedStyle(e).color);
  assert.equal(color, 'rgb(185, 28, 28)');
  // Usage is one summary line per run, not a line per event.
  await transcript.locator('.t-usage').getByText(/1200 tokens de entrada · 80 de salida · 0,0123 USD/).waitFor();

  await worker.report(t.id, 'finished', { ...proof, exit_code: 0, output: 'Hecho: hola.txt escrito.\n' });
  await page.locator('header .chips').getByText('En revisión', { exact: true }).waitFor();
  const row = page.locator('.runs-table tbody tr[data-run="1"]');
  await row.getByText('terminada').waitFor();
  assert.match(await row.innerText(), /opencode\s+gpt-5\s+w-runs\s/);
  await row.getByText('1200 / 80').waitFor();
  await row.getByText('0,0123 USD').waitFor();
  await page.locator('.runs-table tfoot').getByText(/Total de la tarea \(1 ejecución\)/).waitFor();
  // With a transcript, the raw log is one click away.
  const raw = page.locator('details.raw-log');
  assert.equal(await raw.evaluate((d) => d.open), false);
  await raw.locator('summary').getByText('Ver registro completo').click();
  await raw.locator('pre.output').getByText(/Hecho: hola.txt escrito./).first().waitFor();
  // Only what was new was fetched: each request after the last event
  // shown, never from the start again.
  requests.stop();
  const afters = requests.afters.join(',');
  assert.deepEqual(requests.afters, [...requests.afters].sort((x, y) => x - y), afters);
  assert.ok(requests.afters.includes(3), afters);
  await raw.locator('summary').click();
  if (shots) await page.screenshot({ path: `${shots}/transcript.png`, fullPage: true });
  reviewed = t;
  expectNoErrors();
});

test('a message sent to the agent queues the task and its run is a follow-up', async () => {
  const t = reviewed;
  await open(t);
  const panel = page.locator('section.follow-up');
  await panel.getByLabel('Mensaje para el agente').fill('Añade también adios.txt');
  await panel.getByRole('button', { name: 'Enviar al agente' }).click();
  await page.locator('.flash-ok').getByText(`Mensaje enviado al agente: la tarea #${t.id} está en cola.`).waitFor();
  await page.locator('header .chips').getByText('En cola', { exact: true }).waitFor();
  assert.equal((await task(t.id)).status, 'queued');
  await page.locator('.pending-follow-up').getByText('Añade también adios.txt').waitFor();
  assert.equal(await panel.isVisible(), false);

  const worker = fakeWorker(server.base, 'w-runs');
  await worker.heartbeat();
  const claim = await worker.claim();
  assert.equal(claim.task.id, t.id);
  assert.deepEqual(claim.follow_up, { session_id: 'ses-0123456789abcdef', message: 'Añade también adios.txt' });
  const proof = { claim_token: claim.claim_token };
  await worker.report(t.id, 'started', { ...proof, pid: 4343 });
  await worker.report(t.id, 'output', {
    ...proof, chunk: '{"type":"assistant"}\n', offset: 0, events: [
      { kind: 'session', id: 'ses-0123456789abcdef' },
      { kind: 'tool_call', name: 'Bash', summary: 'touch adios.txt', detail: 'touch adios.txt' },
      { kind: 'tool_result', name: 'Bash', text: 'permission denied', error: true },
    ],
  });
  const second = page.locator('.run-group[data-run="2"]');
  await second.getByRole('heading', { name: 'Ejecución 2 · seguimiento' }).waitFor();
  await second.locator('.follow-up-msg').getByText('Añade también adios.txt').waitFor();
  await second.locator('.t-tool.t-tool-error summary').getByText('touch adios.txt').waitFor();
  await worker.report(t.id, 'finished', { ...proof, exit_code: 0, output: 'listo\n' });
  await page.locator('header .chips').getByText('En revisión', { exact: true }).waitFor();
  const row = page.locator('.runs-table tbody tr[data-run="2"]');
  await row.getByText('terminada').waitFor();
  await row.getByText('seguimiento').waitFor();
  await row.getByText('sin precio').waitFor();
  await page.locator('.runs-table tfoot').getByText(/2 ejecuciones/).waitFor();
  if (shots) await page.screenshot({ path: `${shots}/follow-up.png`, fullPage: true });
  // At phone width the transcript and the runs fit, without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 800 });
  try {
    await second.locator('.t-tool summary').click();
    if (shots) await page.screenshot({ path: `${shots}/runs-phone.png`, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
  expectNoErrors();
});

test('a run that named no session offers «Reintentar» instead of a follow-up', async () => {
  const t = await createTask(server.base, { title: 'Sin sesión' });
  const { worker, proof } = await dispatchToWorker(server.base, t.id, 'w-plain');
  await worker.report(t.id, 'started', { ...proof, pid: 4444 });
  await worker.report(t.id, 'output', { ...proof, chunk: 'texto plano\n', offset: 0 });
  await worker.report(t.id, 'finished', { ...proof, exit_code: 0, output: 'texto plano\n' });
  assert.equal((await task(t.id)).status, 'review');
  await open(t);
  const panel = page.locator('section.follow-up');
  await panel.getByText('Este agente no puede reanudar la sesión').waitFor();
  assert.equal(await panel.getByRole('button', { name: 'Enviar al agente' }).isVisible(), false);
  // No transcript: the raw log is open, and the run says where its output is.
  await page.locator('pre.live-output').getByText('texto plano').waitFor();
  await page.locator('.run-group[data-run="1"]').getByText(/no dejó transcripción/).waitFor();
  await panel.getByRole('button', { name: 'Reintentar' }).click();
  await page.locator('.flash-ok').getByText(`Tarea #${t.id} en cola para dispatch.`).waitFor();
  assert.equal((await task(t.id)).status, 'queued');
  await api(server.base, 'POST', `/tasks/${t.id}/cancel`);
  expectNoErrors();
});

test('a rate-limited task says when it is retried', async () => {
  const t = await createTask(server.base, { title: 'Límite de uso' });
  const { worker, proof } = await dispatchToWorker(server.base, t.id, 'w-limit');
  await worker.report(t.id, 'started', { ...proof, pid: 4545 });
  await worker.report(t.id, 'failed', {
    ...proof, signature: 'rate_limited', reason: 'usage limit reached', rate_limited: { retry_after_seconds: 1800 },
  });
  const after = await task(t.id);
  assert.equal(after.status, 'queued');
  await open(t);
  const hhmm = new Date(Date.parse(after.not_before)).toLocaleTimeString('es-ES', { hour: '2-digit', minute: '2-digit' });
  // After 23:30 the retry falls on the next day, which the page names.
  await page.locator('.rate-limit').getByText(new RegExp(`^Límite de uso del proveedor: se reintenta a las ${hhmm}( del \\d+/\\d+/\\d+)?\\.$`)).waitFor();
  await page.locator('.runs-table tbody tr[data-run="1"]').getByText('límite de uso').waitFor();
  await api(server.base, 'POST', `/tasks/${t.id}/cancel`);
  expectNoErrors();
});

test("a workspace's monthly budget is saved and its usage shown; an exhausted one refuses a follow-up", async () => {
  await page.goto(`${server.base}/#/operacion/miembros`);
  const panel = page.locator('[data-workspace="1"]');
  const input = panel.getByLabel('Presupuesto mensual (USD)');
  await panel.locator('.usage').getByText(/Este mes \(\d{4}-\d{2}\): 0,0123 USD · 1200 tokens de entrada · 80 de salida · \d+ ejecuciones · sin presupuesto/).waitFor();
  await input.fill('doce');
  await panel.getByRole('button', { name: 'Guardar presupuesto' }).click();
  await panel.locator('.note-error').getByText(/Escribe un importe en USD/).waitFor();
  await input.fill('12,5');
  await panel.getByRole('button', { name: 'Guardar presupuesto' }).click();
  await page.locator('.flash-ok').getByText('Presupuesto mensual de «default»: 12,5 USD.').waitFor();
  const admin = await adminApi(server.base);
  const ws = (await admin('GET', '/workspaces')).workspaces.find((w) => w.id === 1);
  assert.equal(ws.budget_usd_month, 12.5);
  await page.locator('[data-workspace="1"] .usage').getByText('0,1 % del presupuesto').waitFor();
  if (shots) await page.screenshot({ path: `${shots}/budget.png`, fullPage: true });

  // Spent: a follow-up is refused, said in Spanish.
  await admin('PATCH', '/workspaces/1', { budget_usd_month: 0.01 });
  await open(reviewed);
  await page.locator('section.follow-up').getByLabel('Mensaje para el agente').fill('Una cosa más');
  await page.getByRole('button', { name: 'Enviar al agente' }).click();
  await page.locator('section.follow-up .note-error').getByText(/^Presupuesto agotado: el workspace #1 ha gastado 0.01 USD de sus 0.01 USD/).waitFor();
  assert.equal(await page.getByLabel('Mensaje para el agente').inputValue(), 'Una cosa más');

  await page.goto(`${server.base}/#/operacion/miembros`);
  await page.locator('[data-workspace="1"] .usage').getByText(/\d+ % del presupuesto/).waitFor();
  await page.locator('[data-workspace="1"]').getByLabel('Presupuesto mensual (USD)').fill('');
  await page.locator('[data-workspace="1"]').getByRole('button', { name: 'Guardar presupuesto' }).click();
  await page.locator('.flash-ok').getByText('«default» ya no tiene presupuesto mensual.').waitFor();
  assert.equal((await admin('GET', '/workspaces')).workspaces.find((w) => w.id === 1).budget_usd_month, null);
  expectNoErrors([409]);
});

test('model prices are saved as JSON; a bad value shows what the server says', async () => {
  await page.goto(`${server.base}/#/operacion/ajustes`);
  const row = page.locator('form[data-setting="model_prices"]');
  const input = row.getByLabel('Precios de los modelos');
  await row.getByText(/USD por millón de tokens de entrada/).waitFor();
  await input.fill('{"gpt-5": {"input": 1.25, "output": 10}}');
  await row.getByRole('button', { name: 'Guardar' }).click();
  await page.locator('.flash-ok').getByText('Ajuste «Precios de los modelos» guardado.').waitFor();
  assert.deepEqual(JSON.parse((await api(server.base, 'GET', '/settings')).model_prices), { 'gpt-5': { input: 1.25, output: 10 } });
  await page.waitForFunction(() => document.querySelector('form[data-setting="model_prices"] textarea').value.includes('"gpt-5": { "input": 1.25, "output": 10 }'));

  await input.fill('{"gpt-5": {"input": 1.25,');
  await row.getByRole('button', { name: 'Guardar' }).click();
  const refusal = row.locator('.note-error');
  await refusal.getByText('El servidor rechazó el valor; el ajuste no cambió.').waitFor();
  await refusal.locator('.server-says').getByText(/expected a JSON object of model families/).waitFor();
  await input.fill('{"gpt-5": {"input": -1, "output": 10}}');
  await row.getByRole('button', { name: 'Guardar' }).click();
  await refusal.locator('.server-says').getByText(/gpt-5.input: -1 is outside/).waitFor();
  assert.deepEqual(JSON.parse((await api(server.base, 'GET', '/settings')).model_prices), { 'gpt-5': { input: 1.25, output: 10 } });
  if (shots) await page.screenshot({ path: `${shots}/model-prices.png`, fullPage: true });
  expectNoErrors([400]);
});
