// The server's refusals in Spanish. The server names each refusal with a
// stable `error` code and words its `message` in English for logs and
// scripts; the page says what happened in its own words, from the code
// and the parameters the server sent (a field's name, Retry-After), and
// keeps the server's message as a secondary detail.

import { h } from './dom.js';

/** The field a 400 names: `field \`x\`: …` or `unknown field \`x\``. */
function fieldOf(message) {
  const m = /field `([^`]+)`/.exec(message || '');
  return m ? m[1] : null;
}

/** A query parameter an `invalid_query` names. */
function paramOf(message) {
  const m = /(?:parameter|query) `?([a-z_]+)`?/.exec(message || '');
  return m ? m[1] : null;
}

/** Seconds as a person reads them: "888 s (unos 15 min)". */
function seconds(s) {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) return null;
  if (n < 90) return `${Math.ceil(n)} s`;
  return `${Math.ceil(n)} s (unos ${Math.ceil(n / 60)} min)`;
}

/** The seconds to wait: the `Retry-After` header, else the number in
 *  "retry in N s". */
function waitOf(err) {
  if (err.retryAfter !== undefined && err.retryAfter !== null && err.retryAfter !== '') return seconds(err.retryAfter);
  const m = /retry in (\d+) s/.exec(err.serverMessage || '');
  return m ? seconds(m[1]) : null;
}

/** What is wrong with a field, from the server's reason (after "field
 *  `x`: "); a reason not listed is "no es válido" (the server's words stay
 *  in the detail). */
const FIELD_REASONS = [
  [/^is required/, () => 'es obligatorio'],
  [/^must not be empty/, () => 'no puede estar vacío'],
  [/^is longer than (\d+) characters/, (m) => `no puede tener más de ${m[1]} caracteres`],
  [/^(?:must be|use) 1 to (\d+) characters/, (m) => `debe tener de 1 a ${m[1]} caracteres`],
  [/^(-?\d+) is outside (-?\d+)\.\.=(-?\d+)/, (m) => `debe estar entre ${m[2]} y ${m[3]} (se envió ${m[1]})`],
  [/^must be a whole number/, () => 'debe ser un número entero'],
  [/^must be an absolute path/, () => 'debe ser una ruta absoluta (que empiece por /)'],
  [/^must be manual or interactive/, () => 'debe ser «manual» o «interactive»'],
  [/^must be admin or member/, () => 'debe ser «admin» o «member»'],
  [/^must be one of (.*)/, (m) => `debe ser uno de: ${m[1]}`],
  [/^is larger than (\d+) bytes/, (m) => `ocupa más de ${m[1]} bytes`],
  [/^must be at most (\d+) bytes/, (m) => `no puede ocupar más de ${m[1]} bytes`],
  [/^must be 1 to (\d+) bytes/, (m) => `debe ocupar de 1 a ${m[1]} bytes`],
  [/^must not contain \. or \.\. components/, () => 'no puede tener componentes «.» ni «..»'],
  [/^must not contain \.\., @\{ or \/\//, () => 'no puede contener «..», «@{» ni «//»'],
  [/^must not contain control characters/, () => 'no puede contener caracteres de control'],
  [/^must not contain control, format or separator characters .*found (U\+[0-9A-F]+)/, (m) => `no puede contener caracteres de control, de formato ni separadores de línea o párrafo (tiene ${m[1]}, que no se ve igual que lo que se ejecuta)`],
  [/^must list at most (\d+) paths/, (m) => `no puede tener más de ${m[1]} rutas`],
  [/^"(.*)" is not allowed in workspace (\d+): .*the workspace allows none/, (m) => `no es válido: el workspace #${m[2]} no permite «${m[1]}», porque no tiene raíces permitidas para el repositorio propio de una tarea; un admin del workspace debe fijarlas antes (repo_roots)`],
  [/^"(.*)" is not allowed in workspace (\d+): a task's repository must be (?:the workspace's repo_path \((.*)\) or )?under one of the workspace's repo_roots: (.*)$/s,
    (m) => `no es válido: el workspace #${m[2]} no permite «${m[1]}»; solo ${m[3] ? `su repositorio (${m[3]}) o ` : ''}uno bajo ${m[4]}`],
  [/^must not contain spaces, control characters or any of (.*)/, (m) => `no puede contener espacios, caracteres de control ni ninguno de ${m[1]}`],
  [/^must not start or end with \/, or end with \. or \.lock/, () => 'no puede empezar ni terminar por «/», ni terminar por «.» o «.lock»'],
  [/^must not have a component starting with \./, () => 'no puede tener un componente que empiece por «.»'],
  [/^must not start with (.*)/, (m) => `no puede empezar por «${m[1]}»`],
  [/^must be a commit id/, () => 'debe ser un commit (de 4 a 64 dígitos hexadecimales)'],
  [/are not within one hunk/, () => 'no es válido: un comentario va sobre líneas de un mismo bloque (@@) del diff'],
  [/is not a file of run (\d+)'s change/, (m) => `no es válido: no es un archivo del cambio de la ejecución ${m[1]}`],
  [/is binary: it has no lines/, () => 'no es válido: es binario y no tiene líneas que comentar'],
  [/^no agent with (.*)/, (m) => `no corresponde a ningún agente (${m[1]})`],
  [/^must be (a string|text)/, () => 'debe ser texto'],
  [/^must be (true or false|a boolean)/, () => 'debe ser sí o no (true/false)'],
];

const field = (err, fallback) => {
  const f = fieldOf(err.serverMessage);
  // The value sent (", got …") is in the detail.
  const reason = (err.serverMessage || '').replace(/^field `[^`]+`: /, '').replace(/, got .*$/s, '');
  let what = fallback;
  for (const [re, say] of FIELD_REASONS) {
    const m = re.exec(reason);
    if (m) {
      what = `${say(m)}.`;
      break;
    }
  }
  return f ? `El campo «${f}» ${what}` : `Un campo ${what}`;
};

/** One sentence per code. Each takes the error ({status, code,
 *  serverMessage, retryAfter}) and answers Spanish text. */
const TEXT = {
  // 400: the request itself.
  bad_request: () => 'La petición no es válida.',
  invalid_json: () => 'La petición no es JSON válido.',
  invalid_field: (e) => field(e, 'no es válido.'),
  unknown_field: (e) => {
    const f = fieldOf(e.serverMessage);
    return f ? `El servidor no conoce el campo «${f}».` : 'La petición lleva un campo que el servidor no conoce.';
  },
  invalid_query: (e) => {
    const p = paramOf(e.serverMessage);
    return p ? `El parámetro «${p}» de la búsqueda no es válido.` : 'Un parámetro de la búsqueda no es válido.';
  },
  invalid_id: () => 'El identificador de la dirección no es válido.',
  unknown_setting: () => 'Ese ajuste no existe.',
  invalid_setting: () => 'El valor no es válido para ese ajuste.',
  invalid_last_event_id: () => 'El punto de reanudación del stream no es válido.',
  // 401 / 403: who is asking.
  unauthorized: (e) => {
    const m = e.serverMessage || '';
    if (/invalid username or password/.test(m)) return 'Usuario o contraseña incorrectos.';
    if (/session has expired/.test(m)) return 'La sesión ha caducado: vuelve a iniciar sesión.';
    if (/service token/.test(m)) return 'El token de servicio no es válido.';
    return 'Necesitas iniciar sesión.';
  },
  invalid_credentials: () => 'Usuario o contraseña incorrectos.',
  forbidden: () => 'No tienes permiso para esta acción: tu rol no lo permite.',
  cross_origin: () => 'El servidor rechazó la petición porque no viene de esta misma página (protección entre sitios). Recarga la página.',
  unsupported_media_type: () => 'El servidor solo acepta cuerpos JSON (Content-Type: application/json).',
  rate_limited: (e) => {
    const wait = waitOf(e);
    return wait
      ? `Demasiados intentos fallidos: espera ${wait} antes de volver a intentarlo.`
      : 'Demasiados intentos fallidos: espera unos minutos antes de volver a intentarlo.';
  },
  // 404 / 405 / 413.
  not_found: () => 'No existe (o no está en tus workspaces).',
  method_not_allowed: () => 'El servidor no acepta esta operación en esta dirección.',
  payload_too_large: () => 'La petición es demasiado grande (más de 1 MiB).',
  // 409: the task's (or thing's) state forbids it.
  done_guard: () => 'Una tarea de IA no puede pasar a «Hecha» sin evidencia de salida visible (la salida del dispatch o un log de ai-dispatch). Un administrador global puede marcar «forzar», y queda registrado.',
  invalid_transition: () => 'El estado actual de la tarea no permite este cambio.',
  task_done: () => 'La tarea está «Hecha»: no se puede bloquear. Muévela antes a otro estado.',
  task_archived: () => 'La tarea está archivada y es de solo lectura: desarchívala primero.',
  task_active: () => 'Un worker tiene la tarea ahora: sácala de «Despachando»/«En curso» (o cancélala) antes.',
  task_blocked: () => 'La tarea está bloqueada: desbloquéala primero (o usa «Reintentar», que desbloquea y despacha).',
  task_not_running: () => 'La ejecución de la tarea ya terminó.',
  not_interactive: () => 'La tarea es «Manual»: cambia su ejecución a «Interactiva» (Editar) para despacharla a un agente.',
  no_agent: () => 'La tarea no tiene agente: asígnale uno (Editar) antes de despacharla.',
  agent_inactive: () => 'El agente de la tarea está inactivo: actívalo o elige otro agente.',
  agent_in_use: () => 'Hay tareas que usan este agente: no se puede borrar (desactívalo).',
  not_sensitive: () => 'La tarea no es sensible: no necesita aprobación.',
  human_gate: () => 'Hace falta la aprobación del Human Gate antes de despachar esta tarea.',
  budget_exhausted: (e) => {
    const m = /workspace (\d+) has spent ([\d.]+) USD of its ([\d.]+) USD budget for (\d{4}-\d{2})/.exec(e.serverMessage || '');
    const spent = m ? `: el workspace #${m[1]} ha gastado ${m[2]} USD de sus ${m[3]} USD de ${m[4]}` : ': el workspace ha gastado su presupuesto de este mes';
    return `Presupuesto agotado${spent}. No se despacha ninguna de sus tareas hasta que un admin del workspace suba el presupuesto (Operación → Miembros) o empiece el mes siguiente.`;
  },
  no_session: () => 'La última ejecución no dejó una sesión que el agente pueda reanudar: usa «Reintentar» para una ejecución nueva desde el prompt.',
  no_comments: () => 'No hay comentarios pendientes que enviar: comenta alguna línea del diff antes de enviar la revisión.',
  comment_sent: () => 'Ese comentario ya se envió al agente: no se puede borrar.',
  review_too_long: () => 'La revisión es demasiado larga para enviarla de una vez: borra o acorta comentarios, o envía una parte primero.',
  repo_not_allowed: () => 'El workspace no permite el repositorio de esta tarea: elige uno permitido («Repositorio») o pide a un admin del workspace que añada su raíz.',
  stale_claim: () => 'El worker ya no tiene esta tarea reclamada.',
  claim_cancelled: () => 'La ejecución de esta tarea fue cancelada.',
  duplicate: () => 'Ya existe uno con ese nombre.',
  last_admin: () => 'Es el último administrador global: no puede perder sus permisos ni borrarse.',
  // 429 / 5xx / the network.
  too_many_streams: () => 'Tienes demasiadas pestañas conectadas en vivo: cierra alguna.',
  streams_full: () => 'El servidor atiende tantas conexiones en vivo como puede: se reintentará.',
  storage_unavailable: () => 'El servidor no puede escribir su base de datos: el cambio no se guardó. Avisa al operador (disco lleno o permisos).',
  database_not_writable: () => 'El servidor no puede escribir su base de datos: el cambio no se guardó.',
  internal: () => 'Error interno del servidor (detalles en su log).',
  network: () => 'No se pudo contactar con el servidor: revisa la conexión.',
};

/** Whether the page has its own words for `code`. */
export function knowsCode(code) {
  return Object.prototype.hasOwnProperty.call(TEXT, code);
}

/** The Spanish sentence for a refusal `{status, code, serverMessage,
 *  retryAfter}`. */
export function spanishError(e) {
  const say = TEXT[e.code];
  if (say) return say(e);
  if (e.status === 401) return TEXT.unauthorized(e);
  if (e.status === 403) return TEXT.forbidden(e);
  if (e.status === 404) return TEXT.not_found(e);
  if (e.status === 409) return 'El estado actual no permite este cambio.';
  if (e.status >= 500) return `El servidor falló (HTTP ${e.status}).`;
  return `El servidor rechazó la petición (HTTP ${e.status}).`;
}

/** The server's own words, collapsed under the Spanish text. */
export function detailNode(e) {
  if (!e || (!e.serverMessage && !e.code)) return null;
  return h('details', { class: 'error-detail' },
    h('summary', null, 'Detalle del servidor'),
    h('span', null, e.serverMessage || ''), ' ',
    h('code', null, [e.code, e.status ? `HTTP ${e.status}` : null].filter(Boolean).join(' · ')));
}
