// OPS Center: Operación's administration screens — settings (the model
// prices too), users, workspace members with their monthly budget and
// usage, and agents — and which of them the menu offers to whom (the API's rules of README's "Who may do what", read from
// `GET /api/auth/me`).

import { api } from './api.js';
import { add, fill, h } from './dom.js';
import { detailNode } from './errors_es.js';
import { flash, setNote } from './flash.js';
import { current, debounced, pageHeader, watch } from './page.js';
import { mayAdminister, mayOperate } from './roles.js';
import { tokens, usd } from './runs.js';
import { timeEl } from './time.js';

// ---------------------------------------------------------------------------
// Who may use which screen

const isGlobalAdmin = (me) => Boolean(me && (me.is_admin || me.role === 'service'));

/** The workspaces `me` administers (all of them for a global admin: null). */
function adminOf(me) {
  if (isGlobalAdmin(me)) return null;
  return new Set((me.workspaces || []).filter((w) => w.role === 'admin').map((w) => w.workspace_id));
}

// The rules are roles.js's: `mayOperate` (global or workspace admin) and
// `mayAdminister` (global admin) answer null when allowed. Users are for
// a global admin who is a person.
const SCREENS = [
  { key: 'ajustes', label: 'Ajustes', may: (me) => mayOperate(me) === null },
  { key: 'usuarios', label: 'Usuarios', may: (me) => Boolean(me && me.is_admin) },
  { key: 'miembros', label: 'Miembros', may: (me) => mayOperate(me) === null },
  { key: 'agentes', label: 'Agentes', may: (me) => mayAdminister(me) === null },
];

/** The screens `me` may use, in menu order. */
export function screensFor(me) {
  return SCREENS.filter((s) => s.may(me));
}

/** Puts the links of the screens `me` may use after `anchor` (the last
 *  link of Operación), replacing those of a previous login. */
export function drawNav(anchor, me) {
  for (const el of document.querySelectorAll('[data-admin-nav]')) el.remove();
  let at = anchor.closest('.nav-row') || anchor;
  for (const s of screensFor(me)) {
    const link = h('a', { href: `#/operacion/${s.key}`, 'data-nav': s.key, 'data-admin-nav': '' }, s.label);
    at.after(link);
    at = link;
  }
}

/** Whether `key` names one of these screens. */
export function isScreen(key) {
  return SCREENS.some((s) => s.key === key);
}

/** Draws the screen `key` in `view`, or says why `me` may not use it. */
export function renderScreen(view, key, me, seq) {
  const screen = SCREENS.find((s) => s.key === key);
  add(view, pageHeader(`Operación → ${screen.label}`, screen.label));
  if (!screen.may(me)) {
    add(view, h('p', { class: 'note note-info' },
      'Esta pantalla es para administradores: pide a un administrador global que haga el cambio.'));
    return;
  }
  const body = add(view, h('div', { class: 'admin-screen' })).lastChild;
  ({ ajustes: settingsScreen, usuarios: usersScreen, miembros: membersScreen, agentes: agentsScreen })[key](body, me, seq);
}

/** Reloads with `load` on the events `wanted` accepts, while `seq` is shown. */
function follow(seq, wanted, load) {
  watch(seq, (ev) => typeof ev.kind === 'string' && wanted(ev.kind), debounced(load, 500));
}

function note() {
  return h('div', { class: 'note', hidden: true, role: 'alert' });
}

/** Shows the refusal `err` in `n`: what was being done, then why in
 *  Spanish (errors_es.js, through the page's ApiError), the server's own
 *  message folded away as detail. */
function refuse(n, err, context) {
  fill(n);
  n.hidden = false;
  n.className = 'note note-error';
  add(n,
    h('strong', { class: 'note-context' }, context || 'El servidor rechazó el cambio.'),
    err && err.message ? h('span', null, err.message) : null,
    detailNode(err));
}

/** Runs `fn` with `button` disabled; a refusal is shown in `n`. */
async function run(button, fn, n, context) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    refuse(n, err, context);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Ajustes

/** What the UI says of each setting, and the same rule the API checks
 *  (`domain/settings.rs`): booleans, whole numbers in a range, the token. */
const SETTINGS = [
  { key: 'dispatch_enabled', kind: 'bool', label: 'Dispatch activado',
    help: 'Si está desactivado, los launchers no reciben tareas en cola.', scope: 'workspace' },
  { key: 'dispatch_stale_minutes', kind: 'int', min: 1, max: 10080, unit: 'min',
    label: 'Una tarea en dispatching es stale tras', help: 'El watchdog y «Reconciliar stale» la pasan a «En espera», bloqueada.' },
  { key: 'dispatch_worker_stale_seconds', kind: 'int', min: 5, max: 86400, unit: 's',
    label: 'Un worker deja de ser fresco sin heartbeat tras', help: 'Un worker que no es fresco no recibe tareas.' },
  { key: 'dispatch_claim_grace_seconds', kind: 'int', min: 1, max: 3600, unit: 's',
    label: 'Plazo para que un worker confirme una tarea reclamada',
    help: 'Si sus heartbeats no la nombran en este plazo, la tarea vuelve a la cola.' },
  { key: 'watchdog_interval_seconds', kind: 'int', min: 5, max: 86400, unit: 's',
    label: 'El watchdog se ejecuta cada', help: 'También se puede ejecutar a mano en Automatizaciones → Watchdog.' },
  { key: 'watchdog_failure_threshold', kind: 'int', min: 1, max: 1000, unit: 'fallos',
    label: 'Fallos repetidos que abren una alerta', help: 'Fallos con la misma firma.' },
  { key: 'events_retention_days', kind: 'int', min: 0, max: 36500, unit: 'días',
    label: 'Los eventos se guardan durante', help: '0: para siempre. Se guardan siempre los de tareas sin terminar o con alertas abiertas.' },
  { key: 'replication_max_lag_seconds', kind: 'int', min: 1, max: 86400, unit: 's',
    label: 'La réplica puede ir por detrás como mucho',
    help: 'Con Litestream: pasado este retraso la salud deja de estar bien y el watchdog abre una alerta.' },
  { key: 'ui_language', kind: 'choice', choices: [['es', 'español'], ['en', 'inglés']],
    label: 'Idioma de los títulos del watchdog', help: 'Las alertas y las tareas de seguimiento que abre el watchdog se titulan en este idioma.' },
  { key: 'model_prices', kind: 'json', label: 'Precios de los modelos',
    help: 'Lo que cuesta una ejecución cuando su CLI no lo dice: un objeto JSON con una entrada por familia de modelo y su precio '
      + 'en USD por millón de tokens de entrada («input») y de salida («output»). Un modelo toma la familia más larga por la que '
      + 'empieza su nombre, sin el prefijo del proveedor («openai/…»). {}: sin precios (su coste queda «sin precio»).',
    example: '{"gpt-5": {"input": 1.25, "output": 10}, "claude-sonnet": {"input": 3, "output": 15}}' },
  { key: 'service_api_token', kind: 'token', label: 'Token de servicio',
    help: 'Lo usan los launchers y los scripts (cabecera X-OPS-Service-Token). Al cambiarlo, actualízalo en cada launcher.', human: true },
];

const TOKEN_MIN = 32;

/** The value to send for `def`, or `{error}` saying in Spanish what the
 *  API would refuse. */
export function checkSetting(def, raw) {
  const value = String(raw).trim();
  if (def.kind === 'bool') {
    return value === 'true' || value === 'false' ? { value } : { error: 'Elige «sí» o «no».' };
  }
  if (def.kind === 'choice') {
    return def.choices.some(([v]) => v === value) ? { value } : { error: `Elige una de: ${def.choices.map(([, t]) => t).join(', ')}.` };
  }
  if (def.kind === 'int') {
    if (!/^-?\d+$/.test(value)) return { error: `Escribe un número entero de ${def.min} a ${def.max}.` };
    const n = Number(value);
    if (n < def.min || n > def.max) return { error: `${n} está fuera del intervalo permitido: de ${def.min} a ${def.max}.` };
    return { value: String(n) };
  }
  if (def.kind === 'json') {
    // Whether it is valid is the server's to say, in its own words.
    return value ? { value } : { error: 'Escribe un objeto JSON: {} quita todos los precios.' };
  }
  if (def.kind === 'token') {
    if (value.length < TOKEN_MIN) return { error: `El token necesita al menos ${TOKEN_MIN} caracteres.` };
    if (!/^[\x21-\x7e]+$/.test(value)) return { error: 'El token solo admite caracteres ASCII imprimibles, sin espacios.' };
    if (new Set(value).size < 8) return { error: 'El token necesita al menos 8 caracteres distintos.' };
    return { value };
  }
  return { value };
}

function settingsScreen(body, me, seq) {
  const global = isGlobalAdmin(me);
  const list = h('div', { class: 'settings' }, h('p', { class: 'muted' }, 'Cargando ajustes…'));
  add(body,
    h('p', { class: 'muted small' }, global
      ? ['Los mismos ajustes que ', h('code', null, 'GET /api/settings'), '. Cada uno se comprueba aquí igual que en el servidor antes de guardarse.']
      : 'Como administrador de workspace puedes cambiar «Dispatch activado»; los demás los cambia un administrador global.'),
    list);

  const load = async () => {
    let values;
    try {
      values = await api('GET', '/settings');
    } catch (err) {
      if (current(seq)) {
        const n = note();
        refuse(n, err, 'No se pudieron leer los ajustes.');
        fill(list, n);
      }
      return;
    }
    if (!current(seq)) return;
    // A setting this UI does not know yet is still shown and editable.
    const known = new Set(SETTINGS.map((d) => d.key));
    const extra = Object.keys(values).filter((k) => !known.has(k))
      .map((key) => ({ key, kind: 'text', label: key, help: 'Ajuste del servidor.' }));
    // A live redraw keeps a row being edited (its value changed, or its
    // refusal shown) as the person left it.
    const kept = new Map([...list.querySelectorAll('form[data-setting]')]
      .filter((row) => row.edited()).map((row) => [row.dataset.setting, row]));
    fill(list, [...SETTINGS, ...extra].filter((d) => d.key in values || d.kind === 'token')
      .map((d) => kept.get(d.key) || settingRow(d, values[d.key], global || d.scope === 'workspace', me, load)));
  };
  follow(seq, (k) => k === 'settings.changed', load);
  load();
}

/** A JSON setting's text, indented one family per line. */
function prettyJson(saved) {
  try {
    const value = JSON.parse(saved ?? '');
    if (value && typeof value === 'object' && !Object.keys(value).length) return '{}';
    return JSON.stringify(value, null, 2).replace(/\{\n\s+("input": .*),\n\s+("output": .*)\n\s+\}/g, '{ $1, $2 }');
  } catch {
    return saved ?? '';
  }
}

function settingRow(def, saved, allowed, me, reload) {
  const n = note();
  const id = `ajuste-${def.key}`;
  let input;
  if (def.kind === 'bool') {
    input = h('select', { id, name: def.key },
      h('option', { value: 'true', selected: saved === true }, 'sí'),
      h('option', { value: 'false', selected: saved !== true }, 'no'));
  } else if (def.kind === 'choice') {
    input = h('select', { id, name: def.key }, def.choices.map(([v, t]) => h('option', { value: v, selected: saved === v }, t)));
  } else if (def.kind === 'int') {
    input = h('input', { id, name: def.key, type: 'text', inputmode: 'numeric', class: 'narrow', value: saved ?? '', autocomplete: 'off' });
  } else if (def.kind === 'token') {
    input = h('input', { id, name: def.key, type: 'password', autocomplete: 'new-password', spellcheck: 'false', class: 'mono',
      placeholder: saved ? 'configurado (no se muestra): escribe uno nuevo' : 'sin configurar' });
  } else if (def.kind === 'json') {
    input = h('textarea', { id, name: def.key, rows: 6, spellcheck: 'false', class: 'mono', placeholder: def.example }, prettyJson(saved));
  } else {
    input = h('input', { id, name: def.key, value: saved ?? '', autocomplete: 'off' });
  }
  // The token is the service's own credential: only a person replaces it.
  const may = allowed && !(def.human && me.role === 'service');
  input.disabled = !may;
  const save = h('button', { type: 'submit', disabled: !may }, 'Guardar');
  const range = def.kind === 'int' ? `de ${def.min} a ${def.max}${def.unit ? ` ${def.unit}` : ''}` : null;
  const form = h('form', { class: `setting-row${def.kind === 'json' ? ' setting-json' : ''}`, 'data-setting': def.key },
    h('div', { class: 'setting-text' },
      h('label', { for: id }, def.label),
      h('p', { class: 'muted small' }, def.help, range ? ` Valores: ${range}.` : null,
        may ? null : ' Solo lo cambia un administrador global.'),
      def.example ? h('p', { class: 'muted small' }, 'Ejemplo: ', h('code', null, def.example)) : null,
      h('code', { class: 'muted small' }, def.key)),
    h('div', { class: 'setting-input' }, input, def.unit && def.kind === 'int' ? h('span', { class: 'muted small' }, def.unit) : null, save),
    n);
  const shown = input.value;
  form.edited = () => input.value !== shown || !n.hidden;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const checked = checkSetting(def, input.value);
    if (checked.error) {
      setNote(n, 'error', checked.error, null, 'No se guardó el ajuste.');
      input.focus();
      return;
    }
    if (def.kind === 'token' && !confirm('¿Cambiar el token de servicio? Los launchers con el token anterior dejarán de poder conectarse.')) return;
    await run(save, async () => {
      try {
        await api('PUT', `/settings/${encodeURIComponent(def.key)}`, { value: checked.value });
      } catch (err) {
        // What is wrong with a JSON value is only in the server's words.
        if (def.kind === 'json' && err.code === 'invalid_setting' && err.serverMessage) {
          refuse(n, err, 'El servidor rechazó el valor; el ajuste no cambió.');
          n.insertBefore(h('span', { class: 'server-says mono' }, err.serverMessage), n.querySelector('details'));
          return;
        }
        throw err;
      }
      flash('ok', `Ajuste «${def.label}» guardado.`);
      // Saved: the row shows the server's value again.
      form.edited = () => false;
      await reload();
    }, n, 'El servidor rechazó el valor; el ajuste no cambió.');
  });
  return form;
}

// ---------------------------------------------------------------------------
// Usuarios

const PASSWORD_MIN = 12;
const USERNAME = /^[A-Za-z0-9._@-]{1,64}$/;

function checkPassword(p) {
  if ([...p].length < PASSWORD_MIN) return `La contraseña necesita al menos ${PASSWORD_MIN} caracteres.`;
  if (!p.trim()) return 'La contraseña no puede ser solo espacios.';
  return null;
}

const ROLE_LABEL = { admin: 'administrador', member: 'miembro' };

function usersScreen(body, me, seq) {
  const createNote = note();
  const form = h('form', { class: 'form-grid panel', 'aria-label': 'Nuevo usuario' },
    h('h2', { class: 'span-2' }, 'Nuevo usuario'),
    h('label', null, 'Usuario', h('input', { name: 'username', required: true, maxlength: 64, autocomplete: 'off', spellcheck: 'false' })),
    h('label', null, 'Contraseña (12 caracteres o más)', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' })),
    h('label', { class: 'check span-2' }, h('input', { type: 'checkbox', name: 'is_admin' }), ' Administrador global (usuarios, agentes, ajustes)'),
    h('div', { class: 'span-2' }, createNote),
    h('div', { class: 'span-2 actions' }, h('button', { type: 'submit', class: 'primary' }, 'Crear usuario')));
  const listNote = note();
  const table = h('section', { class: 'panel table-panel' }, h('p', { class: 'muted pad' }, 'Cargando usuarios…'));
  add(body, form, listNote, table);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const username = f.username.value.trim();
    const problem = !USERNAME.test(username)
      ? 'El usuario admite de 1 a 64 letras, dígitos, «.», «_», «-» o «@».'
      : checkPassword(f.password.value);
    if (problem) {
      setNote(createNote, 'error', problem, null, 'No se creó el usuario.');
      return;
    }
    await run(form.querySelector('button[type=submit]'), async () => {
      const u = await api('POST', '/users', { username, password: f.password.value, is_admin: f.is_admin.checked });
      form.reset();
      setNote(createNote, 'ok', `Usuario «${u.username}» creado (#${u.id}). Añádelo a un workspace en Miembros.`);
      await load();
    }, createNote, 'No se creó el usuario.');
  });

  const load = async () => {
    let data;
    try {
      data = await api('GET', '/users?limit=1000');
    } catch (err) {
      if (!current(seq)) return;
      const n = note();
      refuse(n, err, 'No se pudieron leer los usuarios.');
      fill(table, h('div', { class: 'pad' }, n));
      return;
    }
    if (!current(seq)) return;
    const users = data.users || [];
    fill(table, h('h2', { class: 'pad-h' }, `Usuarios (${data.total ?? users.length})`),
      h('table', { class: 'table wrap users' },
        h('thead', null, h('tr', null, h('th', null, 'Usuario'), h('th', null, 'Rol global'), h('th', null, 'Workspaces'),
          h('th', null, 'Creado'), h('th', null, 'Acciones'))),
        h('tbody', null, users.map((u) => userRow(u, me, listNote, load)))));
  };
  follow(seq, (k) => k.startsWith('user.') || k.startsWith('workspace.member'), load);
  load();
}

function userRow(u, me, n, reload) {
  const self = me && me.id === u.id;
  const role = h('select', { 'aria-label': `Rol de ${u.username}` },
    h('option', { value: 'admin', selected: u.is_admin }, 'administrador global'),
    h('option', { value: 'user', selected: !u.is_admin }, 'usuario'));
  role.addEventListener('change', () => run(role, async () => {
    try {
      await api('PATCH', `/users/${u.id}`, { is_admin: role.value === 'admin' });
    } catch (err) {
      role.value = u.is_admin ? 'admin' : 'user';
      throw err;
    }
    flash('ok', `Rol de «${u.username}» cambiado.`);
    await reload();
  }, n, `No se cambió el rol de «${u.username}».`));

  const pw = h('input', { type: 'password', autocomplete: 'new-password', placeholder: 'nueva contraseña', 'aria-label': `Nueva contraseña de ${u.username}`, class: 'narrow-wide' });
  const setPw = h('button', { type: 'button' }, 'Cambiar contraseña');
  setPw.addEventListener('click', () => {
    const problem = checkPassword(pw.value);
    if (problem) {
      setNote(n, 'error', problem, null, `No se cambió la contraseña de «${u.username}».`);
      return;
    }
    run(setPw, async () => {
      await api('PATCH', `/users/${u.id}`, { password: pw.value });
      pw.value = '';
      setNote(n, 'ok', `Contraseña de «${u.username}» cambiada: sus sesiones abiertas se cerraron.`);
    }, n, `No se cambió la contraseña de «${u.username}».`);
  });
  const del = h('button', { type: 'button', class: 'danger' }, 'Eliminar');
  del.addEventListener('click', () => {
    if (!confirm(`¿Eliminar el usuario «${u.username}»? Pierde el acceso y sus membresías.`)) return;
    run(del, async () => {
      await api('DELETE', `/users/${u.id}`);
      flash('ok', `Usuario «${u.username}» eliminado.`);
      await reload();
    }, n, `No se eliminó «${u.username}».`);
  });
  return h('tr', { 'data-user': u.username },
    h('td', null, h('strong', null, u.username), self ? h('span', { class: 'chip flag-muted' }, 'tú') : null,
      h('div', { class: 'sub' }, `#${u.id}`)),
    h('td', { 'data-label': 'Rol global' }, role),
    h('td', { class: 'flags', 'data-label': 'Workspaces' }, (u.workspaces || []).length
      ? u.workspaces.map((w) => h('span', { class: 'chip' }, `#${w.workspace_id}: ${ROLE_LABEL[w.role] || w.role}`))
      : h('span', { class: 'muted' }, 'ninguno')),
    h('td', { 'data-label': 'Creado' }, timeEl(u.created_at)),
    h('td', null, h('div', { class: 'row-actions' }, pw, setPw, del)));
}

// ---------------------------------------------------------------------------
// Miembros

function membersScreen(body, me, seq) {
  const global = isGlobalAdmin(me);
  const admins = adminOf(me);
  const area = h('div', null, h('p', { class: 'muted' }, 'Cargando workspaces…'));
  const newWs = global ? newWorkspaceForm(() => load()) : null;
  add(body, newWs, area);

  const load = async () => {
    let wsList;
    let users = null;
    try {
      [wsList, users] = await Promise.all([
        api('GET', '/workspaces?limit=1000').then((d) => d.workspaces || []),
        global ? api('GET', '/users?limit=1000').then((d) => d.users || []) : Promise.resolve(null),
      ]);
    } catch (err) {
      if (current(seq)) {
        const n = note();
        refuse(n, err, 'No se pudieron leer los workspaces.');
        fill(area, n);
      }
      return;
    }
    if (!current(seq)) return;
    const mine = wsList.filter((w) => admins === null || admins.has(w.id));
    fill(area, mine.map((w) => workspacePanel(w, users, load)));
  };
  follow(seq, (k) => k.startsWith('workspace.') || k.startsWith('user.'), load);
  load();
}

function newWorkspaceForm(reload) {
  const n = note();
  const form = h('form', { class: 'panel inline-form', 'aria-label': 'Nuevo workspace' },
    h('label', { class: 'inline' }, 'Nuevo workspace ', h('input', { name: 'name', required: true, maxlength: 200, autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Crear workspace'), n);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = form.elements.name.value.trim();
    if (!name) return;
    await run(form.querySelector('button'), async () => {
      const w = await api('POST', '/workspaces', { name });
      form.reset();
      flash('ok', `Workspace «${w.name}» creado (#${w.id}).`);
      await reload();
    }, n, 'No se creó el workspace.');
  });
  return form;
}

/** One workspace: its members (known from the users list, which only a
 *  global admin may read) and the form to add one. */
function workspacePanel(w, users, reload) {
  const n = note();
  const members = users ? users.flatMap((u) => (u.workspaces || [])
    .filter((m) => m.workspace_id === w.id).map((m) => ({ user: u, role: m.role }))) : null;
  const roleSelect = (value, label) => h('select', { 'aria-label': label },
    h('option', { value: 'member', selected: value === 'member' }, 'miembro'),
    h('option', { value: 'admin', selected: value === 'admin' }, 'administrador del workspace'));
  const setRole = (userId, role, name) => api('PUT', `/workspaces/${w.id}/members/${userId}`, { role })
    .then(() => flash('ok', `«${name}» es ${ROLE_LABEL[role]} de «${w.name}».`));

  const rows = members === null ? null : members.map(({ user, role }) => {
    const sel = roleSelect(role, `Rol de ${user.username} en ${w.name}`);
    sel.addEventListener('change', () => run(sel, async () => {
      try {
        await setRole(user.id, sel.value, user.username);
      } catch (err) {
        sel.value = role;
        throw err;
      }
      await reload();
    }, n, `No se cambió el rol de «${user.username}».`));
    const remove = h('button', { type: 'button', class: 'danger' }, 'Quitar');
    remove.addEventListener('click', () => {
      if (!confirm(`¿Quitar a «${user.username}» de «${w.name}»? Dejará de ver sus tareas.`)) return;
      run(remove, async () => {
        await api('DELETE', `/workspaces/${w.id}/members/${user.id}`);
        flash('ok', `«${user.username}» ya no es miembro de «${w.name}».`);
        await reload();
      }, n, `No se quitó a «${user.username}».`);
    });
    return h('tr', { 'data-member': user.username },
      h('td', null, h('strong', null, user.username), h('div', { class: 'sub' }, `#${user.id}`)),
      h('td', { 'data-label': 'Rol' }, sel), h('td', null, remove));
  });

  // Whom to add: a choice of the users who are not members yet, or (for a
  // workspace admin, who cannot list users) a user number.
  const candidates = users ? users.filter((u) => !members.some((m) => m.user.id === u.id)) : null;
  const who = candidates
    ? h('select', { name: 'user', 'aria-label': `Usuario a añadir a ${w.name}` },
      candidates.map((u) => h('option', { value: u.id }, `${u.username} (#${u.id})`)))
    : h('input', { name: 'user', type: 'number', min: 1, step: 1, class: 'narrow', 'aria-label': `Número de usuario a añadir a ${w.name}` });
  const role = roleSelect('member', `Rol del nuevo miembro de ${w.name}`);
  const addButton = h('button', { type: 'submit', disabled: candidates !== null && candidates.length === 0 }, 'Añadir');
  const form = h('form', { class: 'inline-form' },
    h('label', { class: 'inline' }, 'Añadir ', who), h('label', { class: 'inline' }, 'como ', role), addButton);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const userId = Number(who.value);
    if (!Number.isInteger(userId) || userId < 1) {
      setNote(n, 'error', 'Indica el número del usuario (un entero positivo).');
      return;
    }
    const name = candidates ? (candidates.find((u) => u.id === userId) || {}).username : `#${userId}`;
    await run(addButton, async () => {
      await setRole(userId, role.value, name);
      await reload();
    }, n, 'No se añadió el miembro.');
  });

  return h('section', { class: 'panel table-panel', 'data-workspace': w.id },
    h('h2', { class: 'pad-h' }, w.name, ' ', h('span', { class: 'muted small' }, `workspace #${w.id}`)),
    n,
    rows === null
      ? h('p', { class: 'muted small pad' }, 'La lista de miembros la ve un administrador global; aquí puedes añadir por número de usuario o cambiar su rol.')
      : rows.length
        ? h('table', { class: 'table wrap' },
          h('thead', null, h('tr', null, h('th', null, 'Usuario'), h('th', null, 'Rol en el workspace'), h('th', null, ''))),
          h('tbody', null, rows))
        : h('p', { class: 'muted pad' }, 'Este workspace aún no tiene miembros (los administradores globales lo ven todo).'),
    h('div', { class: 'pad' }, form),
    budgetForm(w, reload));
}

/** Workspace `w`'s monthly budget (PATCH budget_usd_month; empty: none)
 *  and what it has spent this month. */
function budgetForm(w, reload) {
  const n = note();
  const input = h('input', {
    name: 'budget_usd_month', type: 'text', inputmode: 'decimal', class: 'narrow', autocomplete: 'off',
    placeholder: 'sin presupuesto', value: w.budget_usd_month ?? '',
  });
  const save = h('button', { type: 'submit' }, 'Guardar presupuesto');
  const usage = h('p', { class: 'small usage' }, h('span', { class: 'muted' }, 'Leyendo el gasto de este mes…'));
  const form = h('form', { class: 'inline-form budget-form', 'aria-label': `Presupuesto de ${w.name}` },
    h('h3', null, 'Presupuesto y gasto'),
    h('label', { class: 'inline' }, 'Presupuesto mensual (USD) ', input), save,
    h('p', { class: 'muted small' }, 'Vacío: sin presupuesto. Cuenta el coste de las ejecuciones empezadas en el mes (UTC): ',
      'al 80 % se abre una alerta; al 100 % sus agentes se detienen y no se despacha ninguna de sus tareas hasta que se suba o empiece el mes siguiente.'),
    usage, n);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const raw = input.value.trim().replace(',', '.');
    const value = raw === '' ? null : Number(raw);
    if (value !== null && (!/^\d+(\.\d+)?$/.test(raw) || value > 1000000)) {
      setNote(n, 'error', 'Escribe un importe en USD de 0 a 1.000.000 (p. ej. 50 o 12,5), o déjalo vacío para no tener presupuesto.', null, 'No se guardó el presupuesto.');
      input.focus();
      return;
    }
    await run(save, async () => {
      await api('PATCH', `/workspaces/${w.id}`, { budget_usd_month: value });
      flash('ok', value === null ? `«${w.name}» ya no tiene presupuesto mensual.` : `Presupuesto mensual de «${w.name}»: ${value.toLocaleString('es-ES')} USD.`);
      await reload();
    }, n, 'No se guardó el presupuesto.');
  });
  api('GET', `/workspaces/${w.id}/usage`).then((u) => {
    const pct = u.budget_used_percent;
    fill(usage, `Este mes (${u.month}): `, h('strong', null, usd(u.cost_usd)),
      ` · ${tokens(u.tokens_in)} tokens de entrada · ${tokens(u.tokens_out)} de salida · ${u.runs} ${u.runs === 1 ? 'ejecución' : 'ejecuciones'} · `,
      pct === null || pct === undefined
        ? h('span', { class: 'muted' }, 'sin presupuesto')
        : h('span', { class: `chip ${pct >= 100 ? 'flag-bad' : pct >= 80 ? 'flag-warn' : 'flag-ok'}` },
          `${Number(pct).toLocaleString('es-ES', { maximumFractionDigits: 1 })} % del presupuesto`));
  }).catch((err) => {
    fill(usage);
    refuse(usage, err, 'No se pudo leer el gasto de este mes.');
  });
  return h('div', { class: 'pad budget' }, form);
}

// ---------------------------------------------------------------------------
// Agentes

const SLUG = /^[a-z0-9_-]{1,64}$/;

function agentFields(a) {
  return [
    h('label', null, 'Slug', h('input', { name: 'slug', required: true, maxlength: 64, value: a ? a.slug : '', autocomplete: 'off', spellcheck: 'false', class: 'mono' })),
    h('label', null, 'Nombre', h('input', { name: 'name', maxlength: 200, value: a ? a.name : '', autocomplete: 'off' })),
    h('label', { class: 'span-2' }, 'Comando de lanzamiento (launch_command; vacío: el del launcher)',
      h('input', { name: 'launch_command', value: (a && a.launch_command) || '', autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: 'p. ej. opencode run --model {model} {prompt}' })),
    h('label', null, 'Modelo (vacío: el de la CLI)', h('input', { name: 'model', value: (a && a.model) || '', autocomplete: 'off', spellcheck: 'false' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'active', checked: a ? a.active : true }), ' Activo'),
  ];
}

/** The body of a create or edit, or `{error}`. */
function readAgent(form) {
  const f = form.elements;
  const slug = f.slug.value.trim();
  if (!SLUG.test(slug)) return { error: 'El slug admite de 1 a 64 minúsculas, dígitos, «-» o «_».' };
  const text = (v) => (v.trim() === '' ? null : v.trim());
  return {
    body: { slug, name: f.name.value.trim() || slug, launch_command: text(f.launch_command.value), model: text(f.model.value), active: f.active.checked },
  };
}

function agentsScreen(body, me, seq) {
  const createNote = note();
  const form = h('form', { class: 'form-grid panel', 'aria-label': 'Nuevo agente' },
    h('h2', { class: 'span-2' }, 'Nuevo agente'), agentFields(null),
    h('div', { class: 'span-2' }, createNote),
    h('div', { class: 'span-2 actions' }, h('button', { type: 'submit', class: 'primary' }, 'Crear agente')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = readAgent(form);
    if (r.error) {
      setNote(createNote, 'error', r.error, null, 'No se creó el agente.');
      return;
    }
    await run(form.querySelector('button[type=submit]'), async () => {
      const a = await api('POST', '/agents', r.body);
      form.reset();
      setNote(createNote, 'ok', `Agente «${a.slug}» creado.`);
      await load();
    }, createNote, 'No se creó el agente.');
  });
  const listNote = note();
  const table = h('section', { class: 'panel table-panel' }, h('p', { class: 'muted pad' }, 'Cargando agentes…'));
  add(body, h('p', { class: 'muted small' },
    'Un agente es una CLI que ejecutan los launchers. Cambiar su slug, comando o modelo retira las aprobaciones del Human Gate de sus tareas. ',
    'Un agente con tareas no se puede eliminar: desactívalo.'), table, listNote, form);

  const load = async () => {
    let data;
    try {
      data = await api('GET', '/agents?limit=1000');
    } catch (err) {
      if (current(seq)) {
        const n = note();
        refuse(n, err, 'No se pudieron leer los agentes.');
        fill(table, h('div', { class: 'pad' }, n));
      }
      return;
    }
    if (!current(seq)) return;
    const agents = data.agents || [];
    fill(table, h('h2', { class: 'pad-h' }, `Agentes (${data.total ?? agents.length})`),
      h('table', { class: 'table wrap agents' },
        h('thead', null, h('tr', null, h('th', null, 'Agente'), h('th', null, 'Estado'), h('th', null, 'Comando de lanzamiento'),
          h('th', null, 'Modelo'), h('th', null, 'Acciones'))),
        h('tbody', null, agents.flatMap((a) => agentRows(a, listNote, load)))));
  };
  follow(seq, (k) => k.startsWith('agent.'), load);
  load();
}

function agentRows(a, n, reload) {
  const toggle = h('button', { type: 'button' }, a.active ? 'Desactivar' : 'Activar');
  toggle.addEventListener('click', () => run(toggle, async () => {
    await api('PATCH', `/agents/${a.id}`, { active: !a.active });
    flash('ok', a.active ? `Agente «${a.slug}» desactivado: sus tareas no se despacharán.` : `Agente «${a.slug}» activado.`);
    await reload();
  }, n, `No se cambió el agente «${a.slug}».`));
  const editRow = h('tr', { class: 'edit-row', hidden: true });
  const edit = h('button', { type: 'button', 'aria-expanded': 'false' }, 'Editar');
  edit.addEventListener('click', () => {
    editRow.hidden = !editRow.hidden;
    edit.setAttribute('aria-expanded', String(!editRow.hidden));
    if (!editRow.hidden) fill(editRow, h('td', { colspan: 5 }, agentEditForm(a, reload, () => edit.click())));
  });
  const del = h('button', { type: 'button', class: 'danger' }, 'Eliminar');
  del.addEventListener('click', () => {
    if (!confirm(`¿Eliminar el agente «${a.slug}»?`)) return;
    run(del, async () => {
      try {
        await api('DELETE', `/agents/${a.id}`);
      } catch (err) {
        refuse(n, err, err.code === 'agent_in_use'
          ? `No se eliminó el agente «${a.slug}»: desactívalo en su lugar.`
          : `No se eliminó el agente «${a.slug}».`);
        n.scrollIntoView({ block: 'nearest' });
        return;
      }
      flash('ok', `Agente «${a.slug}» eliminado.`);
      await reload();
    });
  });
  return [h('tr', { 'data-agent': a.slug },
    h('td', null, h('code', null, a.slug), a.name && a.name !== a.slug ? h('div', { class: 'sub' }, a.name) : null),
    h('td', null, h('span', { class: `chip ${a.active ? 'flag-ok' : 'flag-muted'}` }, a.active ? 'activo' : 'inactivo')),
    h('td', { class: 'mono-cell', 'data-label': 'Comando' }, a.launch_command ? h('code', null, a.launch_command) : h('span', { class: 'muted' }, 'el del launcher')),
    h('td', { 'data-label': 'Modelo' }, a.model || h('span', { class: 'muted' }, 'el de la CLI')),
    h('td', null, h('div', { class: 'row-actions' }, toggle, edit, del))), editRow];
}

function agentEditForm(a, reload, close) {
  const n = note();
  const form = h('form', { class: 'form-grid', 'aria-label': `Editar agente ${a.slug}` }, agentFields(a),
    h('div', { class: 'span-2' }, n),
    h('div', { class: 'span-2 actions' }, h('button', { type: 'submit', class: 'primary' }, 'Guardar agente'),
      h('button', { type: 'button', class: 'ghost', onclick: close }, 'Cancelar')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = readAgent(form);
    if (r.error) {
      setNote(n, 'error', r.error, null, 'No se guardó el agente.');
      return;
    }
    await run(form.querySelector('button[type=submit]'), async () => {
      const out = await api('PATCH', `/agents/${a.id}`, r.body);
      flash('ok', `Agente «${out.slug}» guardado.`);
      await reload();
    }, n, 'No se guardó el agente.');
  });
  return form;
}
