// A task's review in a real browser: the files a run changed (added,
// modified, deleted, renamed, binary) with their counts, each file's hunks
// loaded only when it is opened, in the unified and the side-by-side view
// with line numbers on both sides; comments on a line and on a range,
// shown under their lines and listed, an unsent one deleted; «Enviar al
// agente» marks them sent, queues the task, and the worker's next claim
// carries them as the follow-up. At 1366 px and at phone width, where the
// diff scrolls inside its box and the page does not. A fake worker plays
// the launcher over the API with the service token.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createTask, dispatchToWorker, fakeWorker, SHOTS as shots, setUp } from './harness.mjs';

const { server, page, expectNoErrors } = await setUp();

const LONG = 'const mensaje = "una línea muy larga que no cabe en un teléfono y se desplaza dentro de su caja, no la página";';
/** A change with an added, a modified, a deleted, a renamed and a binary
 *  file, as `git diff --binary base..head` prints it. */
const PATCH = `diff --git a/src/new.rs b/src/new.rs
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1,3 @@
+pub fn added() -> u32 {
+    ${LONG}
+}
diff --git a/src/lib.rs b/src/lib.rs
index 2222222..3333333 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,5 +1,6 @@
 mod a;
 mod b;
-mod old;
+mod new;
+mod extra;
 pub fn f() {}
 pub fn g() {}
@@ -20,2 +21,2 @@ pub fn h() {
 let x = 1;
-let y = 2;
+let y = 3;
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-first
-second
diff --git a/docs/old.md b/docs/new.md
similarity index 90%
rename from docs/old.md
rename to docs/new.md
index 5555555..6666666 100644
--- a/docs/old.md
+++ b/docs/new.md
@@ -1,3 +1,3 @@
 # Title
-Old text.
+New text.
 End.
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000000000000000000000000000000000000..a1b06a7ca1882a2bdc645e0db361376a6386e412
GIT binary patch
literal 7
OcmWIWb7x>=Vg>*OcmV7G

literal 0
HcmV?d00001

`;

const review = (id) => api(server.base, 'GET', `/tasks/${id}/review`);
const panel = page.locator('section.review');
const file = (path) => panel.locator(`.review-file[data-path="${path}"]`);
/** The number button of `line` on `side` in file `path`. */
const lineNumber = (path, side, line) => file(path).locator(`td.ln-${side}[data-line="${line}"] button`);

/** The page at width × 900. */
async function width(w) {
  await page.setViewportSize({ width: w, height: 900 });
}

let t = null;
/** The claim of the follow-up run (its reports need it). */
let lastClaim = null;

test('the review lists the run\'s files; a file\'s hunks load when it is opened, with line numbers in both views', async () => {
  t = await createTask(server.base, { title: 'Revisar el cambio del módulo' });
  const { worker, proof } = await dispatchToWorker(server.base, t.id, 'w-review');
  await worker.report(t.id, 'started', { ...proof, pid: 4545 });
  await worker.report(t.id, 'output', { ...proof, chunk: '{}\n', offset: 0, events: [{ kind: 'session', id: 'ses-review-1' }] });
  await width(1366);
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Revisar el cambio del módulo/ }).waitFor();
  await page.locator('#live-status.on').waitFor();
  assert.equal(await panel.isVisible(), false, 'no change, no review');
  const fileRequests = [];
  const seen = (r) => {
    const m = /\/review\/files\/(\d+)/.exec(r.url());
    if (m) fileRequests.push(Number(m[1]));
  };
  page.on('request', seen);

  await worker.report(t.id, 'finished', {
    ...proof, exit_code: 0, output: 'hecho\n', branch: `ops/task-${t.id}`,
    head: 'bbbb000000000000000000000000000000000000', base: 'aaaa000000000000000000000000000000000000', start: 'aaaa000000000000000000000000000000000000',
    diff_stat: ' docs/{old.md => new.md} | 2 +-\n gone.txt                | 2 --\n logo.png                | Bin 0 -> 7 bytes\n src/lib.rs              | 5 +++--\n src/new.rs              | 3 +++\n 5 files changed, 7 insertions(+), 5 deletions(-)\n',
    patch: PATCH, patch_truncated: false,
  });
  await panel.waitFor({ timeout: 5000 });
  await panel.getByRole('heading', { name: 'Revisión', exact: true }).waitFor();
  await panel.locator('.review-file').nth(4).waitFor();
  assert.equal(await panel.locator('.review-file').count(), 5);
  // Each file with its status and counts; a rename says old → new.
  const head = async (path) => (await file(path).locator('.review-file-head').innerText()).replace(/\s+/g, ' ');
  assert.match(await head('src/new.rs'), /añadido src\/new\.rs \+3 −0/);
  assert.match(await head('src/lib.rs'), /modificado src\/lib\.rs \+3 −2/);
  assert.match(await head('gone.txt'), /borrado gone\.txt \+0 −2/);
  assert.match(await head('docs/new.md'), /renombrado docs\/old\.md → docs\/new\.md \(90 %\) \+1 −1/);
  assert.match(await head('logo.png'), /añadido binario logo\.png$/);
  assert.match(await panel.locator('.review-meta').innerText(), new RegExp(`Ejecución 1 · rama ops/task-${t.id} · aaaa000000\\.\\.bbbb000000 · 5 archivos · \\+7 −5`));
  // The «Cambios» panel is still there.
  await page.locator('section.changes').getByRole('heading', { name: /Cambios/ }).waitFor();
  // File by file: nothing loaded until a file is opened.
  assert.deepEqual(fileRequests, []);

  await file('src/lib.rs').locator('.review-file-head').click();
  const table = file('src/lib.rs').locator('table.diff-table.unified');
  await table.waitFor();
  assert.deepEqual(fileRequests, [1]);
  assert.deepEqual(await table.locator('td.hunk').allInnerTexts(), ['@@ -1,5 +1,6 @@', '@@ -20,2 +21,2 @@ pub fn h() {']);
  // Line numbers on both sides: a context line has both, a deleted line
  // the old one, an added line the new one.
  const row = (sel) => table.locator(`tr.diff-line${sel}`);
  assert.deepEqual(await row('[data-old="4"]').locator('td.ln').allInnerTexts(), ['4', '5']);
  assert.match(await row('[data-old="4"] td.code').innerText(), /pub fn f\(\) \{\}/);
  assert.deepEqual(await row('.k-del[data-old="3"]').locator('td.ln').allInnerTexts(), ['3', '']);
  assert.deepEqual(await row('.k-add[data-new="4"]').locator('td.ln').allInnerTexts(), ['', '4']);
  assert.deepEqual(await row('[data-old="21"]').locator('td.ln').allInnerTexts(), ['21', '']);
  assert.deepEqual(await row('[data-new="22"]').locator('td.ln').allInnerTexts(), ['', '22']);
  // Additions green, deletions red.
  assert.equal(await row('.k-add[data-new="3"] td.code').evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(230, 255, 236)');
  assert.equal(await row('.k-del[data-old="3"] td.code').evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(255, 235, 233)');
  if (shots) await panel.screenshot({ path: `${shots}/review-unified.png` });

  // Side by side: a deleted line beside the added one that replaces it.
  await panel.getByRole('button', { name: 'Lado a lado' }).click();
  const split = file('src/lib.rs').locator('table.diff-table.split');
  await split.waitFor();
  const paired = split.locator('tr.diff-line[data-old="3"]');
  assert.equal(await paired.getAttribute('data-new'), '3');
  assert.deepEqual(await paired.locator('td.ln').allInnerTexts(), ['3', '3']);
  assert.match(await paired.locator('td.code').nth(0).innerText(), /mod old;/);
  assert.match(await paired.locator('td.code').nth(1).innerText(), /mod new;/);
  assert.deepEqual(await split.locator('tr.diff-line[data-new="4"] td.ln').allInnerTexts(), ['', '4']);
  assert.deepEqual(await split.locator('tr.diff-line[data-old="4"] td.ln').allInnerTexts(), ['4', '5']);
  assert.deepEqual(fileRequests, [1], 'the view changed without fetching again');
  if (shots) await panel.screenshot({ path: `${shots}/review-split.png` });
  await panel.getByRole('button', { name: 'Unificada' }).click();
  await table.waitFor();

  // A binary file has no lines; a deleted one only old numbers.
  await file('logo.png').locator('.review-file-head').click();
  await file('logo.png').getByText('Archivo binario: no hay diferencias de texto que mostrar.').waitFor();
  await file('gone.txt').locator('.review-file-head').click();
  await lineNumber('gone.txt', 'old', 2).waitFor();
  assert.equal(await file('gone.txt').locator('td.ln-new button').count(), 0);
  // Closed again by its header.
  await file('logo.png').locator('.review-file-head').click();
  assert.equal(await file('logo.png').locator('.review-file-body').isVisible(), false);
  page.off('request', seen);
  expectNoErrors();
});

test('comments on a line and on a range show under their lines and in the list; an unsent one is deleted', async () => {
  // One line.
  await lineNumber('src/lib.rs', 'new', 4).click();
  const form = file('src/lib.rs').locator('form.review-comment-form');
  await form.getByText('Comentario en la línea 4 de src/lib.rs').waitFor();
  await form.getByLabel('Comentario').fill('¿Para qué sirve extra? Documéntalo.');
  await form.getByRole('button', { name: 'Guardar comentario' }).click();
  await form.waitFor({ state: 'detached' });
  const thread = file('src/lib.rs').locator('tr.review-thread-row');
  await thread.getByText('¿Para qué sirve extra? Documéntalo.').waitFor();
  // Right under line 4.
  assert.equal(await thread.evaluate((tr) => tr.previousElementSibling.dataset.new), '4');

  // A range: click a number, shift-click another.
  await lineNumber('src/lib.rs', 'new', 1).click();
  await lineNumber('src/lib.rs', 'new', 3).click({ modifiers: ['Shift'] });
  await form.getByText('Comentario en las líneas 1–3 de src/lib.rs').waitFor();
  assert.equal(await file('src/lib.rs').locator('tr.selected').count(), 3);
  await form.getByLabel('Comentario').fill('Ordena los módulos alfabéticamente.');
  // A live redraw (someone comments on the task) keeps what is typed, the
  // focus and the range.
  await api(server.base, 'POST', `/tasks/${t.id}/comments`, { body: 'mirando el cambio', kind: 'note' }, 201);
  await page.locator('.comments').getByText('mirando el cambio').waitFor({ timeout: 3000 });
  assert.equal(await form.getByLabel('Comentario').inputValue(), 'Ordena los módulos alfabéticamente.');
  assert.equal(await form.getByLabel('Comentario').evaluate((e) => document.activeElement === e), true, 'the comment lost the focus');
  assert.equal(await file('src/lib.rs').locator('tr.selected').count(), 3);
  await form.getByRole('button', { name: 'Guardar comentario' }).click();
  await form.waitFor({ state: 'detached' });
  await file('src/lib.rs').locator('tr.review-thread-row').getByText('Ordena los módulos alfabéticamente.').waitFor();

  // One on the old side of the deleted file, then deleted.
  await lineNumber('gone.txt', 'old', 2).click();
  const goneForm = file('gone.txt').locator('form.review-comment-form');
  await goneForm.getByText('Comentario en la línea 2 de la versión anterior de gone.txt').waitFor();
  await goneForm.getByLabel('Comentario').fill('Este comentario sobra.');
  await goneForm.getByRole('button', { name: 'Guardar comentario' }).click();
  await file('gone.txt').locator('tr.review-thread-row').getByText('Este comentario sobra.').waitFor();

  const pending = panel.locator('.review-comments');
  await pending.getByRole('heading', { name: 'Comentarios pendientes (3)' }).waitFor();
  const items = pending.locator('li.review-comment');
  assert.deepEqual(await items.locator('.review-where').allInnerTexts(), ['src/lib.rs:4', 'src/lib.rs:1–3', 'gone.txt:2 (antes)']);
  assert.match(await items.nth(0).innerText(), /admin/);
  assert.doesNotMatch(await items.nth(0).innerText(), /user:/);
  assert.equal(await items.nth(0).locator('time').count(), 1);
  await panel.locator('.review-send-count').getByText('3 comentarios pendientes').waitFor();
  let r = await review(t.id);
  assert.deepEqual(r.comments.map((c) => [c.file, c.line, c.end_line, c.side, c.sent_at]),
    [['src/lib.rs', 4, 4, 'new', null], ['src/lib.rs', 1, 3, 'new', null], ['gone.txt', 2, 2, 'old', null]]);
  if (shots) {
    await page.screenshot({ path: `${shots}/review-comments-page.png`, fullPage: true });
    await panel.screenshot({ path: `${shots}/review-comments.png` });
  }

  await items.nth(2).getByRole('button', { name: 'Borrar' }).click();
  await pending.getByRole('heading', { name: 'Comentarios pendientes (2)' }).waitFor();
  await file('gone.txt').locator('tr.review-thread-row').waitFor({ state: 'detached' });
  r = await review(t.id);
  assert.equal(r.comments.length, 2);

  // At phone width the long line scrolls inside the diff's box; the page
  // does not scroll sideways.
  await file('src/new.rs').locator('.review-file-head').click();
  await file('src/new.rs').locator('table.diff-table').waitFor();
  await width(390);
  try {
    const box = file('src/new.rs').locator('.diff-scroll');
    assert.ok(await box.evaluate((b) => b.scrollWidth > b.clientWidth), 'the long line does not scroll inside its box');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await panel.getByRole('button', { name: 'Lado a lado' }).click();
    await file('src/lib.rs').locator('table.diff-table.split').waitFor();
    const splitOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(splitOverflow <= 0, `side by side, the page scrolls sideways by ${splitOverflow}px`);
    if (shots) await panel.screenshot({ path: `${shots}/review-phone-split.png` });
    await panel.getByRole('button', { name: 'Unificada' }).click();
    if (shots) await panel.screenshot({ path: `${shots}/review-phone.png` });
  } finally {
    await width(1366);
  }
  expectNoErrors();
});

test('«Enviar al agente» marks the comments sent and queues the task; the next claim carries them', async () => {
  const send = panel.locator('form.review-send');
  await send.getByLabel('Mensaje general (opcional)').fill('Revisa estos dos puntos.');
  await send.getByRole('button', { name: 'Enviar al agente' }).click();
  await page.locator('.flash-ok').getByText(`Revisión enviada al agente (2 comentarios): la tarea #${t.id} está en cola.`).waitFor();
  await page.locator('header .chips').getByText('En cola', { exact: true }).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).status, 'queued');
  const comments = panel.locator('.review-comments');
  await comments.getByRole('heading', { name: 'Comentarios pendientes (0)' }).waitFor();
  await comments.getByRole('heading', { name: 'Enviados (2)' }).waitFor();
  assert.equal(await comments.locator('.review-sent li.review-comment .chip').filter({ hasText: 'enviado' }).count(), 2);
  assert.equal(await comments.getByRole('button', { name: 'Borrar' }).count(), 0, 'a sent comment offers «Borrar»');
  assert.equal(await send.getByRole('button', { name: 'Enviar al agente' }).isDisabled(), true);
  await page.locator('.pending-follow-up').getByText(/Ordena los módulos alfabéticamente\./).waitFor();
  const r = await review(t.id);
  assert.ok(r.comments.every((c) => c.sent_at), JSON.stringify(r.comments));

  // The worker's next claim resumes the session with the comments.
  const worker = fakeWorker(server.base, 'w-review');
  await worker.heartbeat();
  const claim = await worker.claim();
  assert.equal(claim.task.id, t.id);
  assert.equal(claim.follow_up.session_id, 'ses-review-1');
  assert.match(claim.follow_up.message, /^Revisa estos dos puntos\./);
  assert.match(claim.follow_up.message, /src\/lib\.rs:4\n[\s\S]*¿Para qué sirve extra\? Documéntalo\./);
  assert.match(claim.follow_up.message, /src\/lib\.rs:1-3\n[\s\S]*Ordena los módulos alfabéticamente\./);
  assert.doesNotMatch(claim.follow_up.message, /Este comentario sobra/);
  // Its run took them: the page says which.
  lastClaim = claim.claim_token;
  await worker.report(t.id, 'started', { claim_token: claim.claim_token, pid: 4646 });
  await comments.locator('.chip').filter({ hasText: 'enviado · ejecución 2' }).first().waitFor({ timeout: 5000 });
  if (shots) await panel.screenshot({ path: `${shots}/review-sent.png` });
  // The history says what was done, in Spanish.
  await page.locator('.timeline').getByText(/envió la revisión al agente \(2 comentarios\)/).waitFor();
  await page.locator('.timeline').getByText('comentó src/lib.rs:1–3 en la revisión').waitFor();
  await page.locator('.timeline').getByText('borró un comentario de la revisión en gone.txt').waitFor();
  expectNoErrors();
});

test('the run selector shows each run\'s diff, with that run\'s comments under their lines', async () => {
  // The follow-up run adds a line to src/new.rs.
  const worker = fakeWorker(server.base, 'w-review');
  const runs = await api(server.base, 'GET', `/tasks/${t.id}/runs`);
  assert.equal(runs.runs.length, 2);
  await worker.report(t.id, 'finished', {
    claim_token: lastClaim, exit_code: 0, output: 'hecho\n', branch: `ops/task-${t.id}`,
    head: 'cccc000000000000000000000000000000000000', base: 'aaaa000000000000000000000000000000000000', start: 'bbbb000000000000000000000000000000000000',
    diff_stat: ' src/new.rs | 1 +\n 1 file changed, 1 insertion(+)\n',
    patch: 'diff --git a/src/new.rs b/src/new.rs\nindex 1111111..8888888 100644\n--- a/src/new.rs\n+++ b/src/new.rs\n@@ -1,3 +1,4 @@\n+/// La respuesta.\n pub fn added() -> u32 {\n     42\n }\n',
    patch_truncated: false,
  });
  // The newest change is shown by itself.
  await panel.locator('.review-meta').getByText(/^Ejecución 2 · /).waitFor({ timeout: 5000 });
  assert.equal(await panel.locator('.review-file').count(), 1);
  // A file open in the earlier run's diff stays open in the new one.
  await lineNumber('src/new.rs', 'new', 1).waitFor();
  assert.equal(await file('src/new.rs').locator('.review-file-head').getAttribute('aria-expanded'), 'true');
  assert.match(await file('src/new.rs').locator('tr.k-add td.code').first().innerText(), /La respuesta\./);
  // Run 1's comments are listed, but not placed on run 2's lines.
  assert.equal(await file('src/new.rs').locator('tr.review-thread-row').count(), 0);
  assert.equal(await panel.locator('.review-sent li.review-comment').count(), 2);
  await panel.locator('.review-sent li.review-comment').first().getByText('sobre la ejecución 1').waitFor();
  const select = panel.getByLabel('Ejecución revisada');
  assert.deepEqual(await select.locator('option').allInnerTexts(),
    ['La última con cambios (2)', 'Ejecución 2 · seguimiento · terminada', 'Ejecución 1 · terminada']);

  // Run 1 chosen: its five files, its comments under their lines.
  await select.selectOption('1');
  await panel.locator('.review-meta').getByText(/^Ejecución 1 · /).waitFor();
  assert.equal(await panel.locator('.review-file').count(), 5);
  await file('src/lib.rs').locator('.review-file-head').click();
  const threads = file('src/lib.rs').locator('tr.review-thread-row');
  await threads.first().waitFor();
  assert.equal(await threads.count(), 2);
  await threads.first().locator('.chip').getByText('enviado · ejecución 2').waitFor();
  if (shots) await panel.screenshot({ path: `${shots}/review-run-1.png` });
  // Back to the newest.
  await select.selectOption('');
  await panel.locator('.review-meta').getByText(/^Ejecución 2 · /).waitFor();
  expectNoErrors();
});

test('the refusals of a review are said in Spanish', async () => {
  const said = await page.evaluate(async () => {
    const { spanishError } = await import('/ui/errors_es.js');
    return [
      spanishError({ status: 409, code: 'no_comments' }),
      spanishError({ status: 409, code: 'comment_sent' }),
      spanishError({ status: 400, code: 'invalid_field', serverMessage: 'field `line`: lines 1-30 of the new side of "src/lib.rs" are not within one hunk of run 1\'s diff (hunks: @@ -1,5 +1,6 @@)' }),
    ];
  });
  assert.equal(said[0], 'No hay comentarios pendientes que enviar: comenta alguna línea del diff antes de enviar la revisión.');
  assert.equal(said[1], 'Ese comentario ya se envió al agente: no se puede borrar.');
  assert.equal(said[2], 'El campo «line» no es válido: un comentario va sobre líneas de un mismo bloque (@@) del diff.');
  // A sent comment stays as it was sent.
  const [c] = (await review(t.id)).comments;
  await api(server.base, 'DELETE', `/tasks/${t.id}/review/comments/${c.id}`, undefined, 409);
  expectNoErrors();
});
