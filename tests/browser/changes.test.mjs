// A task's code in a real browser: «Cambios» (the branch, diff stat and
// patch a run reported) appearing live, the «Repositorio» forms of a task
// and of its workspace, and the repository fields of «Nueva tarea». Any
// script error fails, except the refusals a test provokes on purpose.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createTask, dispatchToWorker, SHOTS as shots, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp();
// Tasks here name repositories under /srv/repos: workspace 1 allows them
// (set as the admin: the service token administers no workspace).
const allowed = await page.request.patch(`${server.base}/api/workspaces/1`, { data: { repo_roots: ['/srv/repos'] } });
assert.equal(allowed.status(), 200, await allowed.text());

const DIFF_STAT = ' src/login.js | 3 ++-\n src/nuevo.js | 2 ++\n 2 files changed, 4 insertions(+), 1 deletion(-)\n';
const PATCH = [
  'diff --git a/src/login.js b/src/login.js',
  'index 3b18e51..a9c2f04 100644',
  '--- a/src/login.js',
  '+++ b/src/login.js',
  '@@ -1,4 +1,5 @@',
  ' export function submit(form) {',
  '-  return false;',
  '+  form.button.disabled = true;',
  '+  return true;',
  ' }',
  'diff --git a/src/nuevo.js b/src/nuevo.js',
  'new file mode 100644',
  'index 0000000..e69de29',
  '--- /dev/null',
  '+++ b/src/nuevo.js',
  '@@ -0,0 +1,2 @@',
  '+// <script>alert(1)</script> stays text',
  '+export const listo = true;',
  '',
].join('\n');

/** Claims task `id` with a fresh fake worker and reports it started. */
async function run(id, workerId) {
  const { worker, proof } = await dispatchToWorker(server.base, id, workerId);
  await worker.report(id, 'started', { ...proof, pid: 4343, log_path: '/tmp/c.log', err_log_path: '/tmp/c.err.log' });
  return { worker, proof };
}

test('a finished run\'s change appears in «Cambios» without reloading, the patch collapsible', async () => {
  const t = await createTask(server.base, { title: 'Arreglar el envío del login', priority: 50 });
  await api(server.base, 'PATCH', `/tasks/${t.id}`, { repo_path: '/srv/repos/web', base_ref: 'main' });
  const { worker, proof } = await run(t.id, 'browser-worker-changes');

  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Arreglar el envío del login/ }).waitFor();
  await page.locator('#live-status.on').waitFor();
  await worker.report(t.id, 'output', { ...proof, chunk: 'editando src/login.js\n' });
  await page.locator('pre.live-output').getByText(/editando src\/login.js/).waitFor({ timeout: 3000 });
  // No change yet: no panel.
  assert.equal(await page.locator('section.changes').count(), 0);
  // A reload would lose this mark.
  await page.evaluate(() => { window.sameDocument = true; });

  const base = '3b18e51c0ffee0000000000000000000000000aa';
  const head = 'a9c2f04deadbeef000000000000000000000000bb';
  await worker.report(t.id, 'finished', {
    ...proof, exit_code: 0, output: 'listo\n',
    branch: `ops/task-${t.id}`, head, base, git_status: ' M src/login.js\n?? src/nuevo.js\n',
    diff_stat: DIFF_STAT, patch: PATCH, patch_truncated: false,
  });
  const panel = page.locator('section.changes');
  await panel.waitFor({ timeout: 3000 });
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
  await panel.getByRole('heading', { name: /Cambios/ }).waitFor();
  assert.match(await panel.locator('dl').innerText(), new RegExp(`ops/task-${t.id}`));
  assert.match(await panel.locator('dl').innerText(), /2 archivos/);
  const stat = panel.locator('details.diff-stat pre');
  assert.equal(await stat.isVisible(), true, 'the diff stat is shown open');
  assert.match(await stat.innerText(), /src\/login\.js \| 3 \+\+-/);
  assert.match(await stat.innerText(), /2 files changed/);

  // The patch: closed at first, opened and closed by its summary.
  const patch = panel.locator('details.diff-patch');
  const patchText = patch.locator('pre.patch');
  assert.equal(await patchText.isVisible(), false, 'the patch starts collapsed');
  await patch.locator('summary').click();
  await patchText.waitFor({ state: 'visible' });
  assert.match(await patchText.innerText(), /\+ {2}form\.button\.disabled = true;/);
  // Server text stays text: the line is there, no element was made of it.
  assert.match(await patchText.innerText(), /<script>alert\(1\)<\/script> stays text/);
  assert.equal(await patchText.locator('script').count(), 0);
  // Added and removed lines are told apart.
  assert.equal(await patchText.locator('.diff-add').count(), 4);
  assert.equal(await patchText.locator('.diff-del').count(), 1);

  // A live redraw (a comment arriving) keeps the patch open.
  await api(server.base, 'POST', `/tasks/${t.id}/comments`, { body: 'revisado el parche', kind: 'note' }, 201);
  await page.locator('.comments').getByText('revisado el parche').waitFor({ timeout: 3000 });
  assert.equal(await patchText.isVisible(), true, 'a live redraw closed the patch');
  if (shots) await page.screenshot({ path: `${shots}/task-changes.png`, fullPage: true });

  // At phone width the patch scrolls inside its box, not the page.
  await page.setViewportSize({ width: 390, height: 800 });
  try {
    if (shots) await page.screenshot({ path: `${shots}/task-changes-phone.png`, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  await patch.locator('summary').click();
  await patchText.waitFor({ state: 'hidden' });
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).changes.branch, `ops/task-${t.id}`);
  expectNoErrors();
});

test('a run that changed nothing says so in «Cambios»', async () => {
  const t = await createTask(server.base, { title: 'Sin cambios', priority: 60 });
  const { worker, proof } = await run(t.id, 'browser-worker-nochange');
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Sin cambios/ }).waitFor();
  await page.locator('#live-status.on').waitFor();
  await worker.report(t.id, 'finished', {
    ...proof, exit_code: 0, output: 'nada que cambiar\n', branch: `ops/task-${t.id}`, head: 'c0ffee', base: 'c0ffee',
  });
  await page.locator('section.changes').getByText('La última ejecución no cambió ningún archivo.').waitFor({ timeout: 3000 });
  expectNoErrors();
});

test('the task\'s «Repositorio» form saves the repository, and a bad path shows the refusal', async () => {
  const t = await createTask(server.base, { title: 'Tarea con repositorio' });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  const panel = page.locator('section.repo');
  await panel.getByText('Sin repositorio: el agente trabaja en el directorio del launcher.').waitFor();
  await panel.getByText('Cambiar el repositorio').click();
  const own = panel.locator('form.repo-form[data-scope=task]');

  // A relative path: the server's refusal, in the page's words first.
  await own.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('repos/web');
  await own.getByRole('button', { name: 'Guardar' }).click();
  const refusal = own.locator('.note-error');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /No se pudo guardar el repositorio de la tarea/);
  assert.match(await refusal.innerText(), /El campo «repo_path» debe ser una ruta absoluta \(que empiece por \/\)\./);
  // The server's words, collapsed under the page's.
  const detail = refusal.locator('details.error-detail');
  assert.match(await detail.textContent(), /must be an absolute path/);
  assert.match(await detail.textContent(), /invalid_field · HTTP 400/);
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).repo_path, null);
  expectNoErrors([400]);

  // One outside the workspace's roots: refused, saying what is allowed.
  await own.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('/srv/otros/web');
  await own.getByRole('button', { name: 'Guardar' }).click();
  await own.locator('.note-error').getByText(/El campo «repo_path» no es válido: el workspace #1 no permite «\/srv\/otros\/web»; solo uno bajo \/srv\/repos\./).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).repo_path, null);
  expectNoErrors([400]);

  // A good one is saved and shown; what was typed is not lost meanwhile.
  await own.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('/srv/repos/web');
  await own.getByLabel('Ref base (rama, tag o commit)').fill('release/2.1');
  await own.getByRole('button', { name: 'Guardar' }).click();
  await panel.locator('dl').getByText('/srv/repos/web').waitFor({ timeout: 3000 });
  let saved = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(saved.repo_path, '/srv/repos/web');
  assert.equal(saved.base_ref, 'release/2.1');
  assert.match(await panel.locator('dl').innerText(), /la tarea/);
  assert.match(await panel.locator('dl').innerText(), /release\/2\.1/);
  assert.match(await panel.locator('dl').innerText(), new RegExp(`ops/task-${t.id}`));

  // A bad ref: refused, nothing changed.
  await panel.getByText('Cambiar el repositorio').click();
  await own.getByLabel('Ref base (rama, tag o commit)').fill('-rm');
  await own.getByRole('button', { name: 'Guardar' }).click();
  await own.locator('.note-error').getByText('El campo «base_ref» no puede empezar por «-».').waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).base_ref, 'release/2.1');
  expectNoErrors([400]);

  // Emptied: the task falls back to its workspace (none here).
  await own.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('');
  await own.getByLabel('Ref base (rama, tag o commit)').fill('');
  await own.getByRole('button', { name: 'Guardar' }).click();
  await panel.getByText('Sin repositorio: el agente trabaja en el directorio del launcher.').waitFor({ timeout: 3000 });
  saved = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(saved.repo_path, null);
  assert.equal(saved.base_ref, null);
  expectNoErrors();
});

test('the workspace\'s repository, set from a task, applies to its tasks', async () => {
  const t = await createTask(server.base, { title: 'Usa el del workspace' });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  const panel = page.locator('section.repo');
  await panel.getByText('Cambiar el repositorio').click();
  const ws = panel.locator('form.repo-form[data-scope=workspace]');
  await ws.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('/srv/repos/monorepo');
  await ws.getByRole('button', { name: 'Guardar' }).click();
  await panel.locator('dl').getByText('/srv/repos/monorepo').waitFor({ timeout: 3000 });
  assert.match(await panel.locator('dl').innerText(), new RegExp(`el workspace #${t.workspace_id}`));
  const w = (await api(server.base, 'GET', '/workspaces')).workspaces.find((x) => x.id === t.workspace_id);
  assert.equal(w.repo_path, '/srv/repos/monorepo');
  // The task itself names none.
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).repo_path, null);

  // Changed elsewhere (by the admin, from a script: the service may not
  // set a workspace's repository): the page follows.
  const elsewhere = async (body) => {
    const res = await page.request.patch(`${server.base}/api/workspaces/${t.workspace_id}`, { data: body });
    assert.equal(res.status(), 200, await res.text());
  };
  await elsewhere({ repo_path: '/srv/repos/otro' });
  await panel.locator('dl').getByText('/srv/repos/otro').waitFor({ timeout: 3000 });
  await elsewhere({ repo_path: null });
  await panel.getByText('Sin repositorio: el agente trabaja en el directorio del launcher.').waitFor({ timeout: 3000 });
  expectNoErrors();
});

test('«Nueva tarea» takes a repository, and refuses a bad one saying why', async () => {
  await page.goto(`${server.base}/#/tareas`);
  await page.getByRole('button', { name: 'Nueva tarea' }).click();
  const form = page.locator('form.form-grid');
  await form.getByLabel('Título').fill('Tarea en su repositorio');
  await form.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('/srv/repos/../etc');
  const before = (await api(server.base, 'GET', '/tasks')).total;
  await form.getByRole('button', { name: 'Crear tarea' }).click();
  const refusal = form.locator('.note-error');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /No se pudo crear la tarea/);
  assert.match(await refusal.innerText(), /El campo «repo_path» no puede tener componentes «\.» ni «\.\.»\./);
  assert.match(await refusal.locator('details.error-detail').textContent(), /must not contain \. or \.\. components/);
  assert.equal((await api(server.base, 'GET', '/tasks')).total, before, 'a task was created');
  if (shots) await page.screenshot({ path: `${shots}/new-task-refused.png`, fullPage: true });
  expectNoErrors([400]);

  await form.getByLabel('Repositorio (ruta absoluta en los hosts del launcher)').fill('/srv/repos/api');
  await form.getByLabel('Ref base (rama, tag o commit)').fill('develop');
  await form.getByRole('button', { name: 'Crear tarea' }).click();
  await page.getByRole('heading', { name: /Tarea en su repositorio/ }).waitFor();
  const id = Number(page.url().match(/#\/tareas\/(\d+)/)[1]);
  const t = await api(server.base, 'GET', `/tasks/${id}`);
  assert.equal(t.repo_path, '/srv/repos/api');
  assert.equal(t.base_ref, 'develop');
  await page.locator('section.repo dl').getByText('/srv/repos/api').waitFor();
  expectNoErrors();
});

test('the workspace\'s allowed roots are set from its form, and the Human Gate shows where the task runs', async () => {
  const t = await createTask(server.base, { title: 'Sensible con repositorio', sensitive: true, repo_path: '/srv/repos/pagos', base_ref: 'main' });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  const gate = page.locator('.gate-repo');
  await gate.getByText('/srv/repos/pagos').waitFor();
  assert.match(await gate.innerText(), /Se ejecutará en \/srv\/repos\/pagos \(ref base main; propio de la tarea\), en la rama ops\/task-\d+\./);
  if (shots) await page.screenshot({ path: `${shots}/human-gate-repository.png`, fullPage: true });
  // The approval dialog names it too.
  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
  });
  await page.getByRole('button', { name: 'Aprobar Human Gate' }).click();
  await page.getByText('Human Gate aprobado.').waitFor();
  assert.match(asked, /Un agente podrá ejecutarla en el repositorio \/srv\/repos\/pagos \(ref base main; propio de la tarea\)/);
  await gate.getByText('/srv/repos/pagos').waitFor();

  // The roots, one per line, from the workspace's form.
  const panel = page.locator('section.repo');
  await panel.getByText('Cambiar el repositorio').click();
  const ws = panel.locator('form.repo-form[data-scope=workspace]');
  const roots = ws.getByLabel(/Raíces permitidas/);
  assert.equal(await roots.inputValue(), '/srv/repos');
  await roots.fill('/srv/repos\n/opt/trabajo\n');
  await ws.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Repositorio guardado.').waitFor();
  const w = (await api(server.base, 'GET', '/workspaces')).workspaces.find((x) => x.id === 1);
  assert.deepEqual(w.repo_roots, ['/opt/trabajo', '/srv/repos']);
  // Shown as kept: sorted.
  await page.waitForFunction(() => document.querySelector('textarea[name=repo_roots]')?.value === '/opt/trabajo\n/srv/repos');
  // The task's form says what it may name now.
  await panel.getByText('Cambiar el repositorio').click();
  await panel.locator('form.repo-form[data-scope=task]').getByText(/Permitidos: uno bajo \/opt\/trabajo, \/srv\/repos\./).waitFor();
  if (shots) await page.screenshot({ path: `${shots}/repository-roots.png`, fullPage: true });
  // Narrowed past the task's repository: its approval is withdrawn.
  await roots.fill('/opt/trabajo');
  await ws.getByRole('button', { name: 'Guardar' }).click();
  await page.locator('section.callout').getByText(/debe aprobarla/).waitFor({ timeout: 3000 });
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).gate_approved_at, null);
  await page.request.patch(`${server.base}/api/workspaces/1`, { data: { repo_roots: ['/srv/repos'] } });
  expectNoErrors();
});

test('«Espera cambios en el repositorio» is set in «Nueva tarea» and in Editar; a run that changed nothing is blocked «sin cambios»', async () => {
  await page.goto(`${server.base}/#/tareas`);
  await page.getByRole('button', { name: 'Nueva tarea' }).click();
  const form = page.locator('form.form-grid');
  await form.getByLabel('Título').fill('Solo una pregunta');
  const expects = form.getByLabel(/Espera cambios en el repositorio/);
  assert.equal(await expects.isChecked(), true, 'checked by default');
  await expects.uncheck();
  await form.getByRole('button', { name: 'Crear tarea' }).click();
  await page.getByRole('heading', { name: /Solo una pregunta/ }).waitFor();
  const id = Number(page.url().match(/#\/tareas\/(\d+)/)[1]);
  assert.equal((await api(server.base, 'GET', `/tasks/${id}`)).expects_changes, false);
  await page.locator('dl').getByText('No: su salida basta para la revisión').waitFor();

  // Editar: it expects a change after all.
  await page.getByRole('button', { name: 'Editar' }).click();
  const edit = page.locator('form.edit-form');
  const again = edit.getByLabel(/Espera cambios en el repositorio/);
  assert.equal(await again.isChecked(), false);
  await again.check();
  await edit.getByRole('button', { name: 'Guardar cambios' }).click();
  await page.locator('dl').getByText('Sí: sin cambios en su rama queda bloqueada').waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${id}`)).expects_changes, true);

  // Its run leaves the branch where it found it: blocked, and the page says why.
  await api(server.base, 'PATCH', `/tasks/${id}`, { execution: 'interactive', agent: 'opencode' });
  const { worker, proof } = await run(id, 'browser-worker-expects');
  await worker.report(id, 'finished', {
    ...proof, exit_code: 0, output: 'todo estaba bien\n', branch: `ops/task-${id}`, head: 'c0ffee', base: 'beef00', start: 'c0ffee',
  });
  await page.getByText('sin cambios: el agente terminó sin modificar el repositorio').first().waitFor({ timeout: 5000 });
  const t = await api(server.base, 'GET', `/tasks/${id}`);
  assert.equal(t.status, 'waiting');
  assert.equal(t.blocked, true);
  if (shots) await page.screenshot({ path: `${shots}/sin-cambios.png`, fullPage: true });
  expectNoErrors();
});
