// Operación's screens and the task list's search in a real browser:
// search and filters kept in the address among 5,000 tasks, an address
// past the last page, the settings, users, members and agents screens
// (and who sees them), the menu's open-alerts counter, and no English on
// the main screens. Any script error fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, api, createTask, fakeWorker, login, SHOTS as shots, setUp } from './harness.mjs';

const LOAD = 5000;
// The tasks are made before the admin logs in.
const { server, page, expectNoErrors } = await setUp({ dispatch: false, login: false });

/** `n` tasks through the API with the service token, `width` at a time. */
async function createMany(n, width = 16) {
  const agents = await api(server.base, 'GET', '/agents');
  const opencode = agents.agents.find((a) => a.slug === 'opencode');
  let next = 0;
  const one = async () => {
    while (next < n) {
      const i = next++;
      await api(server.base, 'POST', '/tasks', {
        title: `Tarea de carga ${i}`, description: 'x', execution: 'interactive', agent_id: opencode.id, priority: i % 5,
      }, 201);
    }
  };
  await Promise.all(Array.from({ length: width }, one));
}

async function logInAs(user) {
  await page.goto(`${server.base}/`);
  await page.locator('#login:not([hidden]), #shell:not([hidden])').first().waitFor();
  const out = page.getByRole('button', { name: 'Cerrar sesión' });
  if (await out.isVisible()) {
    // Once the menu has its count (a request still on its way when the
    // session ends would be refused).
    await page.locator('[data-nav-count][data-count]').waitFor({ state: 'attached' });
    await page.waitForLoadState('networkidle');
    await out.click();
  }
  await page.getByLabel('Usuario').fill(user.username);
  await page.getByLabel('Contraseña').fill(user.password);
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.getByRole('heading', { name: 'Tareas', exact: true }).waitFor();
}

const rows = () => page.locator('table.tasks tbody tr');

/** The users as the logged-in global admin reads them (the service token
 *  may not manage users). */
const usersNow = () => page.evaluate(() => fetch('/api/users').then((r) => r.json())).then((d) => d.users);

await createMany(LOAD / 2);
const needle = await createTask(server.base, { title: 'Migrar la base de datos de facturación', priority: 9 });
await createMany(LOAD / 2);
await login(page, server.base);

test('the search box finds one task among 5,000 by title and by number, kept in the address', async () => {
  await page.goto(`${server.base}/#/tareas`);
  await page.getByText(`1–50 de ${LOAD + 1}`).waitFor();
  const search = page.getByRole('searchbox', { name: 'Buscar tareas', exact: true });
  // Typed as a person types: one search once the typing stops.
  await search.pressSequentially('facturación', { delay: 30 });
  await page.waitForURL(/#\/tareas\?q=facturaci/);
  await page.getByText('1–1 de 1').waitFor();
  assert.equal(await rows().count(), 1);
  await rows().getByRole('link', { name: 'Migrar la base de datos de facturación' }).waitFor();
  assert.equal(await search.inputValue(), 'facturación');
  assert.equal(await search.evaluate((el) => el === document.activeElement), true, 'the box keeps the focus');
  if (shots) await page.screenshot({ path: `${shots}/search.png`, fullPage: true });

  // A reload shows the same search and result.
  await page.reload();
  await page.getByText('1–1 de 1').waitFor();
  assert.equal(await page.getByRole('searchbox').inputValue(), 'facturación');

  // By number: "#N" is that task.
  await page.getByRole('searchbox').fill(`#${needle.id}`);
  await page.getByRole('searchbox').press('Enter');
  await page.waitForURL(new RegExp(`q=%23${needle.id}`));
  await page.getByText('1–1 de 1').waitFor();
  await rows().getByRole('link', { name: 'Migrar la base de datos de facturación' }).waitFor();

  // Back: the title search again.
  await page.goBack();
  await page.waitForURL(/q=facturaci/);
  await page.getByText('1–1 de 1').waitFor();
  assert.equal(await page.getByRole('searchbox').inputValue(), 'facturación');

  // A search that matches nothing says so (never "create the first").
  await page.goto(`${server.base}/#/tareas?q=ningunacoincidencia`);
  await page.getByText('Ninguna tarea coincide con la búsqueda o los filtros.').waitFor();
  expectNoErrors();
});

test('the filters (priority, blocked, agent, status) are the server\'s, in the address, and restored', async () => {
  const blocked = await createTask(server.base, { title: 'Tarea bloqueada de prueba', priority: 9 });
  await api(server.base, 'PATCH', `/tasks/${blocked.id}`, { blocked: true, blocked_reason: 'falta acceso' });
  await page.goto(`${server.base}/#/tareas`);
  await page.getByText(`de ${LOAD + 2}`).waitFor();

  await page.getByLabel('Prioridad').fill('9');
  await page.getByLabel('Prioridad').press('Enter');
  await page.waitForURL(/prioridad=9/);
  await page.getByText('1–2 de 2').waitFor();

  await page.getByLabel('Bloqueo').selectOption('1');
  await page.waitForURL(/bloqueadas=1/);
  await page.getByText('1–1 de 1').waitFor();
  await rows().getByRole('link', { name: 'Tarea bloqueada de prueba' }).waitFor();

  await page.getByLabel('Bloqueo').selectOption('0');
  await page.getByText('1–1 de 1').waitFor();
  await rows().getByRole('link', { name: 'Migrar la base de datos de facturación' }).waitFor();

  await page.getByLabel('Agente').selectOption('codex');
  await page.waitForURL(/agente=codex/);
  await page.getByText('Ninguna tarea coincide con la búsqueda o los filtros.').waitFor();

  // Back twice: blocked=no, then blocked only.
  await page.goBack();
  await page.getByText('1–1 de 1').waitFor();
  assert.equal(await page.getByLabel('Agente').inputValue(), '');
  assert.equal(await page.getByLabel('Bloqueo').inputValue(), '0');
  await page.goBack();
  await rows().getByRole('link', { name: 'Tarea bloqueada de prueba' }).waitFor();
  assert.equal(await page.getByLabel('Bloqueo').inputValue(), '1');
  assert.equal(await page.getByLabel('Prioridad').inputValue(), '9');

  // The board keeps the filters: the one blocked task, in its column.
  await page.getByRole('button', { name: 'Tablero' }).click();
  await page.waitForURL(/vista=tablero/);
  const next = page.locator('.board-col[data-status=next]');
  await next.locator(`[data-task="${blocked.id}"]`).waitFor();
  assert.equal(await page.locator('.board-card').count(), 1);
  assert.match(page.url(), /bloqueadas=1/);

  await page.getByRole('button', { name: 'Quitar filtros' }).click();
  await page.waitForURL((u) => !/bloqueadas|prioridad/.test(u.hash));
  expectNoErrors();
});

test('an address past the last page shows the last page and says so', async () => {
  const total = (await api(server.base, 'GET', '/tasks?limit=1')).total;
  await page.goto(`${server.base}/#/tareas?desde=9000`);
  await page.getByText(`No hay tareas a partir de la 9001: hay ${total}. Se muestra la última página.`).waitFor();
  const last = Math.floor((total - 1) / 50) * 50;
  await page.getByText(`${last + 1}–${total} de ${total}`).waitFor();
  assert.equal(await rows().count(), total - last);
  assert.match(page.url(), new RegExp(`desde=${last}$`));
  assert.equal(await page.getByText('Aún no hay tareas').count(), 0);
  expectNoErrors();
});

test('a setting changed in Ajustes is the API\'s; a bad value is refused and changes nothing', async () => {
  await page.getByRole('link', { name: 'Ajustes' }).click();
  await page.getByRole('heading', { name: 'Ajustes', exact: true }).waitFor();
  const row = page.locator('[data-setting=dispatch_stale_minutes]');
  const input = row.getByRole('textbox');
  await input.fill('35');
  await row.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Ajuste «Una tarea en dispatching es stale tras» guardado.').waitFor();
  assert.equal((await api(server.base, 'GET', '/settings')).dispatch_stale_minutes, 35);

  const puts = [];
  page.on('request', (r) => { if (r.method() === 'PUT') puts.push(r.url()); });
  for (const [bad, why] of [['0', '0 está fuera del intervalo permitido: de 1 a 10080.'], ['veinte', 'Escribe un número entero de 1 a 10080.']]) {
    await input.fill(bad);
    await row.getByRole('button', { name: 'Guardar' }).click();
    await row.getByText(why).waitFor();
    await row.getByText('No se guardó el ajuste.').waitFor();
  }
  assert.deepEqual(puts, [], 'a value the API would refuse is not sent');
  assert.equal((await api(server.base, 'GET', '/settings')).dispatch_stale_minutes, 35);

  // The boolean, as the API has it.
  const enabled = page.locator('[data-setting=dispatch_enabled]');
  await enabled.getByRole('combobox').selectOption('true');
  await enabled.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Ajuste «Dispatch activado» guardado.').waitFor();
  assert.equal((await api(server.base, 'GET', '/settings')).dispatch_enabled, true);
  await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'false' });

  // A choice, as the API has it.
  const language = page.locator('[data-setting=ui_language]');
  await language.getByRole('combobox').selectOption('en');
  await language.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Ajuste «Idioma de los títulos del watchdog» guardado.').waitFor();
  assert.equal((await api(server.base, 'GET', '/settings')).ui_language, 'en');
  await api(server.base, 'PUT', '/settings/ui_language', { value: 'es' });
  expectNoErrors();
});

test('create a user in Usuarios and add them to a workspace in Miembros', async () => {
  await page.getByRole('link', { name: 'Usuarios' }).click();
  const form = page.getByRole('form', { name: 'Nuevo usuario' });
  await form.getByLabel('Usuario', { exact: true }).fill('lucia');
  await form.getByLabel('Contraseña (12 caracteres o más)').fill('corta');
  await form.getByRole('button', { name: 'Crear usuario' }).click();
  await form.getByText('La contraseña necesita al menos 12 caracteres.').waitFor();
  await form.getByLabel('Contraseña (12 caracteres o más)').fill('una-clave-larga-de-lucia');
  await form.getByRole('button', { name: 'Crear usuario' }).click();
  await form.getByText(/Usuario «lucia» creado/).waitFor();
  await page.locator('tr[data-user=lucia]').waitFor();

  // A second one with the same name: the server's refusal, in Spanish.
  await form.getByLabel('Usuario', { exact: true }).fill('lucia');
  await form.getByLabel('Contraseña (12 caracteres o más)').fill('otra-clave-larga-de-lucia');
  await form.getByRole('button', { name: 'Crear usuario' }).click();
  await form.getByText('No se creó el usuario.').waitFor();

  await page.getByRole('link', { name: 'Miembros' }).click();
  const ws = page.locator('[data-workspace="1"]');
  const created = (await usersNow()).find((u) => u.username === 'lucia');
  await ws.getByLabel(/Usuario a añadir a/).selectOption(String(created.id));
  await ws.getByRole('button', { name: 'Añadir' }).click();
  await ws.locator('tr[data-member=lucia]').waitFor();
  let lucia = (await usersNow()).find((u) => u.username === 'lucia');
  assert.deepEqual(lucia.workspaces, [{ workspace_id: 1, role: 'member' }]);

  await ws.getByLabel('Rol de lucia en').selectOption('admin');
  await page.getByText(/«lucia» es administrador de/).waitFor();
  lucia = (await usersNow()).find((u) => u.username === 'lucia');
  assert.deepEqual(lucia.workspaces, [{ workspace_id: 1, role: 'admin' }]);
  expectNoErrors([409]);
});

test('create and deactivate an agent; deleting one that tasks use is refused, clearly', async () => {
  await page.getByRole('link', { name: 'Agentes' }).click();
  const form = page.getByRole('form', { name: 'Nuevo agente' });
  await form.getByLabel('Slug').fill('revisor');
  await form.getByLabel('Nombre').fill('Revisor de código');
  await form.getByLabel(/Comando de lanzamiento/).fill('revisor-cli --model {model} {prompt}');
  await form.getByLabel(/Modelo/).fill('modelo-grande');
  await form.getByRole('button', { name: 'Crear agente' }).click();
  const row = page.locator('tr[data-agent=revisor]');
  await row.getByText('revisor-cli --model {model} {prompt}').waitFor();
  let agent = (await api(server.base, 'GET', '/agents')).agents.find((a) => a.slug === 'revisor');
  assert.equal(agent.model, 'modelo-grande');
  assert.equal(agent.active, true);

  await row.getByRole('button', { name: 'Desactivar' }).click();
  await row.getByText('inactivo').waitFor();
  agent = (await api(server.base, 'GET', '/agents')).agents.find((a) => a.slug === 'revisor');
  assert.equal(agent.active, false);

  const used = page.locator('tr[data-agent=opencode]');
  await used.getByRole('button', { name: 'Eliminar' }).click();
  await page.getByText('No se eliminó el agente «opencode»: desactívalo en su lugar.').waitFor();
  await page.getByText(/Hay tareas que usan este agente/).waitFor();
  assert.ok((await api(server.base, 'GET', '/agents')).agents.some((a) => a.slug === 'opencode'));

  // An unused one goes.
  await row.getByRole('button', { name: 'Eliminar' }).click();
  await row.waitFor({ state: 'detached' });
  expectNoErrors([409]);
});

test('the menu counts the open alerts, live, as they open and resolve', async () => {
  await page.getByRole('link', { name: 'Tareas', exact: true }).click();
  const badge = page.locator('[data-nav-count=alerts]');
  assert.equal(await badge.isHidden(), true);
  // Dispatch on without a fresh worker: the watchdog opens an alert.
  await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'true' });
  await api(server.base, 'POST', '/watchdog/run', {});
  await page.locator('[data-nav-count=alerts][data-count="1"]').waitFor({ timeout: 5000 });
  assert.equal(await badge.getAttribute('aria-label'), '1 alerta abierta: ver el Watchdog');
  if (shots) {
    await page.setViewportSize({ width: 1440, height: 900 });
    await badge.click();
    await page.locator('table.alerts').waitFor();
    await page.screenshot({ path: `${shots}/alerts-counter-1440.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  }
  // A fresh worker ends the condition; the next pass resolves it.
  await fakeWorker(server.base).heartbeat();
  await api(server.base, 'POST', '/watchdog/run', {});
  await badge.waitFor({ state: 'hidden', timeout: 5000 });
  await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'false' });
  expectNoErrors();
});

test('a member sees no administration screen; a workspace admin sees only theirs', async () => {
  const member = { username: 'mateo', password: 'clave-larga-de-mateo' };
  const wsAdmin = { username: 'wsadmin', password: 'clave-larga-de-wsadmin' };
  for (const u of [member, wsAdmin]) {
    // Users are made by a global admin (the service token may not).
    await page.evaluate(async (body) => {
      const r = await fetch('/api/users', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (r.status !== 201) throw new Error(await r.text());
    }, u);
  }
  const users = await usersNow();
  const id = (name) => users.find((u) => u.username === name).id;
  await page.evaluate(async ([m, a]) => {
    for (const [u, role] of [[m, 'member'], [a, 'admin']]) {
      await fetch(`/api/workspaces/1/members/${u}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ role }) });
    }
  }, [id('mateo'), id('wsadmin')]);

  const nav = page.getByRole('navigation', { name: 'Navegación principal' });
  await logInAs(member);
  for (const name of ['Ajustes', 'Usuarios', 'Miembros', 'Agentes']) {
    assert.equal(await nav.getByRole('link', { name }).count(), 0, `a member sees ${name}`);
  }
  await page.goto(`${server.base}/#/operacion/usuarios`);
  await page.getByText('Esta pantalla es para administradores').waitFor();

  await logInAs(wsAdmin);
  await nav.getByRole('link', { name: 'Ajustes' }).waitFor();
  await nav.getByRole('link', { name: 'Miembros' }).waitFor();
  assert.equal(await nav.getByRole('link', { name: 'Usuarios' }).count(), 0);
  assert.equal(await nav.getByRole('link', { name: 'Agentes' }).count(), 0);
  await nav.getByRole('link', { name: 'Ajustes' }).click();
  assert.equal(await page.locator('[data-setting=dispatch_enabled] select').isEnabled(), true);
  assert.equal(await page.locator('[data-setting=dispatch_stale_minutes] input').isDisabled(), true);

  await logInAs(ADMIN);
  expectNoErrors();
});

test('the Operación screens fit at 1440 px and at phone width, without sideways scrolling', async () => {
  const screens = ['ajustes', 'usuarios', 'miembros', 'agentes', 'automatizaciones/watchdog'];
  for (const [width, height] of [[1440, 900], [390, 844]]) {
    await page.setViewportSize({ width, height });
    for (const name of screens) {
      await page.goto(`${server.base}/#/operacion/${name}`);
      await page.waitForLoadState('networkidle');
      await page.waitForFunction(() => !/Cargando/.test(document.querySelector('#view').innerText));
      const overflow = await page.evaluate(() => [document.documentElement, ...document.querySelectorAll('.table-panel, .panel, .setting-row')]
        .filter((el) => el.scrollWidth > el.clientWidth + 1)
        .map((el) => `${el.className || el.tagName}: ${el.scrollWidth} > ${el.clientWidth}`));
      assert.deepEqual(overflow, [], `${name} at ${width} px scrolls sideways`);
      if (shots) await page.screenshot({ path: `${shots}/${name.replace('/', '-')}-${width}.png`, fullPage: true });
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  expectNoErrors();
});

/** English from the server's messages and common UI words that must not
 *  show in the Spanish UI. Words Spanish operators use on purpose are
 *  allowed: Dispatching, dispatch, Human Gate, stale, watchdog, worker,
 *  launcher, heartbeat, slug, prompt, token, workspace, log, health, OK. */
const ENGLISH = [
  'invalid', 'must be', 'must not', 'not found', 'unknown', 'expected', 'required', 'cannot', 'already',
  'unblock it first', 'Dispatch is enabled', 'is disabled', 'no fresh', 'too many', 'attempts', 'retry',
  'failed', 'forbidden', 'refused', 'password', 'username', 'settings', 'task', 'tasks', 'alert', 'alerts',
  'agent', 'agents', 'user', 'users', 'the', 'and', 'with', 'without', 'of', 'to', 'is', 'are',
  'loading', 'save', 'cancel', 'delete', 'edit', 'search', 'filter', 'next', 'previous', 'queued',
  'waiting', 'doing', 'review', 'done', 'blocked', 'archived', 'enabled', 'disabled', 'yes',
];
const ENGLISH_RE = new RegExp(`(?<![\\p{L}_])(${ENGLISH.map((w) => w.replace(/ /g, '\\s+')).join('|')})(?![\\p{L}_])`, 'iu');

/** The text a person sees on the page: rendered text nodes and the
 *  options of the selects shown, leaving out `code` and `pre` (API
 *  names and agent output shown verbatim on purpose). */
function visibleText() {
  const out = [];
  const skip = (el) => el.closest('code, pre, script, style, template, option');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || skip(el) || !el.checkVisibility()) continue;
    out.push(n.textContent.trim());
  }
  for (const s of document.querySelectorAll('select')) {
    if (s.checkVisibility()) for (const o of s.options) out.push(o.textContent.trim());
  }
  for (const i of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    if (i.checkVisibility()) out.push(i.placeholder);
  }
  return out;
}

/** English this test finds outside Operación's screens, left for the
 *  task page's own work: its status choices name the API's status in
 *  parentheses. Each entry is a whole visible string. */
const KNOWN_ELSEWHERE = [
  /^(Siguiente|En cola|Despachando|En curso|En revisión|Hecha|En espera) \((next|queued|dispatching|doing|review|done|waiting)\)( · actual)?$/,
];

test('every visible string on the main screens is Spanish', async () => {
  const t = await createTask(server.base, { title: 'Revisar el informe mensual' });
  await api(server.base, 'POST', `/tasks/${t.id}/comments`, { body: 'Comentario de prueba', kind: 'note' }, 201);
  const screens = [
    ['lista', '#/tareas'],
    ['tablero', '#/tareas?vista=tablero'],
    ['tarea', `#/tareas/${t.id}`],
    ['Dispatching', '#/operacion/automatizaciones/dispatching'],
    ['Watchdog', '#/operacion/automatizaciones/watchdog'],
    ['Ajustes', '#/operacion/ajustes'],
    ['Usuarios', '#/operacion/usuarios'],
    ['Miembros', '#/operacion/miembros'],
    ['Agentes', '#/operacion/agentes'],
  ];
  const found = [];
  for (const [name, hash] of screens) {
    await page.goto(`${server.base}/${hash}`);
    await page.waitForLoadState('networkidle');
    await page.waitForFunction(() => !/Cargando/.test(document.querySelector('#view').innerText));
    for (const text of await page.evaluate(visibleText)) {
      // Task titles and comments are the operators' own data.
      if (/^Tarea de carga \d+$/.test(text)) continue;
      if (KNOWN_ELSEWHERE.some((re) => re.test(text))) continue;
      const m = text.match(ENGLISH_RE);
      if (m) found.push(`${name}: «${m[1]}» in «${text}»`);
    }
  }
  assert.deepEqual(found, [], `English on the Spanish UI:\n${found.join('\n')}`);
  expectNoErrors();
});
