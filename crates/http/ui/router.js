// OPS Center: the pages by address. #/tareas (with the list's filters in
// the address), #/tareas/<id>, #/operacion/automatizaciones[/dispatching|
// /watchdog], #/operacion/{ajustes,usuarios,miembros,agentes}
// (admin_screens.js); anything else is «Página no encontrada».

import { isScreen, renderScreen } from './admin_screens.js';
import { renderAutomations } from './automations.js';
import { renderBoard } from './board.js';
import { add, byId, fill, h } from './dom.js';
import { clearFlash, showNextFlash } from './flash.js';
import { focusHeading } from './focus.js';
import { newPage } from './page.js';
import { me } from './session.js';
import { renderTask } from './task_page.js';

/** Draws the page for the address shown (nothing before a login). */
export function route() {
  if (!me()) return;
  const hash = location.hash.replace(/^#/, '') || '/tareas';
  const [path, qs] = hash.split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  const seq = newPage();
  const view = byId('view');
  clearFlash();
  showNextFlash();
  fill(view);
  let section = 'tareas';
  if (parts[0] === 'tareas' && parts[1] && /^\d+$/.test(parts[1])) {
    renderTask(view, Number(parts[1]), seq);
  } else if (parts[0] === 'operacion' && parts[1] === 'automatizaciones') {
    section = 'automatizaciones';
    renderAutomations(view, parts[2] === 'watchdog' ? 'watchdog' : 'dispatching', seq);
  } else if (parts[0] === 'operacion' && isScreen(parts[1])) {
    section = parts[1];
    renderScreen(view, parts[1], me(), seq);
  } else if (parts[0] === 'tareas' || parts.length === 0) {
    renderBoard(view, params, seq);
  } else {
    add(view, h('h1', null, 'Página no encontrada'),
      h('p', null, 'Esta dirección no existe. ', h('a', { href: '#/tareas' }, 'Ir a las tareas')));
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  window.scrollTo(0, 0);
  focusHeading(view);
}
