// OPS Center: the login screen and the shell around the pages — who is
// logged in, the stream's state, «Cerrar sesión» — and what happens when
// the session ends under the page (its drafts kept for the next login).

import { drawNav } from './admin_screens.js';
import * as alertsCount from './alerts_count.js';
import { byId, fill, h } from './dom.js';
import { restoreDrafts, saveDrafts } from './drafts.js';
import { busy, clearFlash, errorDetail } from './flash.js';
import * as live from './live.js';
import { route } from './router.js';
import { forget, loadMe, logIn, logOut, me } from './session.js';

function showLogin(message) {
  byId('boot').hidden = true;
  byId('shell').hidden = true;
  byId('login').hidden = false;
  const err = byId('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  const form = byId('login-form');
  form.password.value = '';
  (form.username.value ? form.password : form.username).focus();
}

function showShell() {
  byId('boot').hidden = true;
  byId('login').hidden = true;
  byId('shell').hidden = false;
  const who = me();
  fill(byId('whoami'),
    h('span', { class: 'who-name' }, who.username || who.role || ''),
    h('span', { class: 'who-role' }, who.is_admin ? 'administrador' : workspaceRoleText(who)));
  live.connect();
  const operations = document.querySelector('[data-nav="automatizaciones"]');
  alertsCount.start(operations);
  drawNav(operations, who);
  route();
}

function workspaceRoleText(who) {
  const roles = (who.workspaces || []).map((w) => w.role);
  return roles.includes('admin') ? 'admin. de workspace' : 'miembro';
}

/** The server ended the session: what was typed is kept for the next
 *  login, and the login screen says why it is back. */
export function sessionExpired() {
  if (!me()) return;
  saveDrafts(byId('view'), location.hash);
  forget();
  live.disconnect();
  alertsCount.stop();
  showLogin('La sesión ha caducado: vuelve a iniciar sesión.');
}

async function submitLogin(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const button = form.querySelector('button[type=submit]');
  const err = byId('login-error');
  err.hidden = true;
  await busy(button, async () => {
    try {
      await logIn(form.username.value.trim(), form.password.value);
      form.password.value = '';
      showShell();
      restoreDrafts(byId('view'), location.hash);
    } catch (e) {
      fill(err, h('span', null, e.message), errorDetail(e));
      err.hidden = false;
      form.password.select();
    }
  });
}

async function clickLogout(ev) {
  await busy(ev.currentTarget, async () => {
    await logOut();
    live.disconnect();
    alertsCount.stop();
    clearFlash();
    showLogin();
  });
}

/** Wires the login form, «Cerrar sesión» and the stream's state, then
 *  shows the shell if a session is open, else the login screen. */
export async function start() {
  // The stream's state, always in view: pages update by themselves only
  // while it is connected.
  live.onState((on) => {
    const el = byId('live-status');
    el.className = `live-status ${on ? 'on' : 'off'}`;
    el.textContent = on ? 'En vivo' : 'Desconectado: reconectando…';
    el.title = on ? 'Los cambios aparecen sin recargar.' : 'Sin conexión con el servidor: los cambios no se verán hasta que vuelva.';
  });
  byId('login-form').addEventListener('submit', submitLogin);
  byId('logout').addEventListener('click', clickLogout);
  try {
    await loadMe();
    showShell();
  } catch (err) {
    if (err.status === 401) showLogin();
    else showLogin(err.message);
  }
}
