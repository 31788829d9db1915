// OPS Center: the web UI. Plain browser modules, no dependencies; this
// one wires them together and starts the page.
//
// Every piece of server text reaches the page through text nodes or
// attribute values (dom.js's `h`), never as markup.

import { onUnauthorized } from './api.js';
import { byId } from './dom.js';
import { skipLink } from './focus.js';
import { onRedraw } from './page.js';
import { route } from './router.js';
import { sessionExpired, start } from './shell.js';

// A 401 from the API while logged in: the session ended under the page.
onUnauthorized(sessionExpired);
// The pages are drawn by the router, again when a page asks to be.
onRedraw(route);
window.addEventListener('hashchange', route);
skipLink(byId('skip-link'), byId('view'));
start();
