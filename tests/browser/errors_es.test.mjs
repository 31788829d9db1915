// Refusals in Spanish: the page's own words for each error code, with the
// server's English message kept as a collapsed detail. The login limit
// runs last: it locks this address out of logging in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, api, createTask, logout, SHOTS as shots, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp({ dispatch: false });

/** The text a person sees in `locator` (closed details excluded). */
const seen = (locator) => locator.innerText();

test('the done guard refuses in Spanish, the English message only as detail', async () => {
  const t = await createTask(server.base, { title: 'Sin evidencia' });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Sin evidencia/ }).waitFor();
  await page.getByLabel('Nuevo estado').selectOption('done');
  await page.getByRole('button', { name: 'Mover' }).click();
  const note = page.locator('.note-error').first();
  await note.getByText(/no puede pasar a «Hecha» sin evidencia de salida visible/).waitFor();
  const text = await seen(note);
  assert.doesNotMatch(text, /force=true|admin\/service|output evidence/, text);
  // The server's words are there, one click away.
  const detail = note.locator('details.error-detail');
  assert.equal(await detail.evaluate((d) => d.open), false);
  await detail.locator('summary').click();
  await detail.getByText('done_guard · HTTP 409').waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).status, 'next');
  if (shots) await page.screenshot({ path: `${shots}/done-guard.png`, fullPage: true });
  expectNoErrors([409]);
});

test('a wrong password and then the login limit are said in Spanish', async () => {
  await logout(page);
  const error = page.locator('#login-error');
  const attempt = async (password) => {
    await page.getByLabel('Usuario').fill(ADMIN.username);
    await page.getByLabel('Contraseña').fill(password);
    await page.getByRole('button', { name: 'Entrar' }).click();
  };
  await attempt('not-the-password');
  await error.getByText('Usuario o contraseña incorrectos.').waitFor();
  assert.doesNotMatch(await seen(error), /invalid username/);
  // Five failures from one address lock it out; the sixth attempt, even
  // with the right password, is refused for the rest of the window.
  for (let i = 0; i < 4; i++) await attempt(`wrong-${i}`);
  await attempt(ADMIN.password);
  await error.getByText(/^Demasiados intentos fallidos: espera \d+ s \(unos \d+ min\) antes de volver a intentarlo\.$/).waitFor();
  const text = await seen(error);
  assert.doesNotMatch(text, /too many attempts|retry in/, text);
  const secs = Number(/espera (\d+) s/.exec(text)[1]);
  assert.ok(secs > 800 && secs <= 900, `${secs} s`);
  if (shots) await page.screenshot({ path: `${shots}/login-limit.png` });
  expectNoErrors([401, 429]);
});
