// Health warnings in Spanish. The server words them in English for
// operators' logs and scripts; each known wording has a pattern here, and
// one the table does not know yet is shown as the server sent it.

const RULES = [
  [/^the database cannot be written: (.*)\. Changes are refused \(503\) until it is fixed/s,
    (m) => `La base de datos no se puede escribir (${m[1]}). Los cambios se rechazan (503) hasta que se corrija: libera espacio en su disco o corrige sus permisos; la escritura se reanuda sola.`],
  [/^the disk holding the database filled: its (\d+) MiB reserve was released so that checkpoints and Litestream can catch up, and writes are refused until (\d+) MiB are free on that disk \(now (\d+) MiB\)/,
    (m) => `El disco de la base de datos se llenó: se liberó su reserva de ${m[1]} MiB para que los checkpoints y Litestream puedan ponerse al día, y los cambios se rechazan hasta que haya ${m[2]} MiB libres en ese disco (ahora ${m[3]} MiB): libera espacio en él.`],
  [/^dispatch is enabled but no worker has sent a heartbeat in the last (\d+) s/,
    (m) => `El dispatch está activado pero ningún worker ha enviado heartbeat en los últimos ${m[1]} s: arranca el launcher (systemctl start ops-dispatch-launcher.service) o desactiva el dispatch.`],
  [/^(\d+) task\(s\) stuck in dispatching for more than (\d+) min/,
    (m) => `${m[1]} tarea(s) atascada(s) en dispatching desde hace más de ${m[2]} min: reconcílialas (botón «Reconciliar» más abajo) y revisa el launcher.`],
  [/^(\d+) queued task\(s\) no worker has taken for more than (\d+) min: (.*); the fleet is busy/s,
    (m) => `${m[1]} tarea(s) en cola que ningún worker ha tomado desde hace más de ${m[2]} min: ${queuedEs(m[3])}. La flota está ocupada, o ningún worker fresco sirve su agente, modelo o workspace.`],
  [/^(\d+) running task\(s\) whose worker no longer runs them \(no heartbeat for more than (\d+) s, or left out of its heartbeats for (\d+) s\)/,
    (m) => `${m[1]} tarea(s) en curso cuyo worker ya no las ejecuta (sin heartbeat desde hace más de ${m[2]} s, o ausentes de sus heartbeats durante ${m[3]} s): el watchdog las recupera (en espera, bloqueadas); revisa el launcher de ese worker.`],
  [/^active agent\(s\) (.*) cannot run on any fresh worker/s,
    (m) => `Agente(s) activo(s) ${m[1]} no pueden ejecutarse en ningún worker fresco: instala su CLI e inicia sesión en un host del launcher (ops-center doctor), o desactívalos.`],
  [/^running task\(s\) whose agent has shown no output for (\d+) min or more: (.*); the launcher ends/s,
    (m) => `Tarea(s) en ejecución cuyo agente no muestra salida desde hace ${m[1]} min o más: ${m[2]}. El launcher termina un agente tras AGENT_SILENCE_MINUTES (15) sin salida; mientras tanto revisa su log.`],
  [/^the service token is weak/,
    () => 'El token de servicio es débil: rótalo (deploy-auth-hardening.sh u ops-center admin set-service-token).'],
  [/^the service token is the one generated at first start/,
    () => 'El token de servicio es el generado en el primer arranque y nunca se ha rotado: define el tuyo (OPS_SERVICE_TOKEN y reinicia) antes de activar el dispatch.'],
  [/^the replica is (\d+) s behind \(replication_max_lag_seconds is (\d+)\): writes of the last \d+ s would be lost with this host\. (.*)\. Check ops-center-litestream\.service/s,
    (m) => `La réplica va ${m[1]} s por detrás (replication_max_lag_seconds es ${m[2]}): si se perdiera este host, se perderían los cambios de los últimos ${m[1]} s. Causa: ${m[3]}. Revisa ops-center-litestream.service (journalctl -u ops-center-litestream) y el espacio en los discos de la base de datos y de la réplica.`],
  [/^(\d+) open alert\(s\)/,
    (m) => `${m[1]} alerta(s) abierta(s): míralas en Operación → Automatizaciones → Watchdog.`],
];

/** `#42 (codex, model gpt-5, workspace 2, 25 min)` in Spanish. */
function queuedEs(list) {
  return list.replace(/, model /g, ', modelo ').replace(/, … ?$/, ', …');
}

/** The Spanish text of one warning (a string, or an object with `message`). */
export function warningText(w) {
  const text = typeof w === 'string' ? w : (w && w.message) || JSON.stringify(w);
  for (const [re, say] of RULES) {
    const m = re.exec(text);
    if (m) return say(m);
  }
  return text;
}

// Watchdog alerts: the server words their title and detail in English
// too. A title follows from the alert's kind and subject; a detail of a
// known wording is translated, else shown as sent.

const ALERT_TITLES = {
  'dispatch.stale': (a) => a.task_id && `Tarea ${a.task_id} atascada en dispatching`,
  'dispatch.worker_stale': (a) => a.task_id && `Tarea ${a.task_id} en curso en un worker sin heartbeat`,
  'dispatch.stale_running': (a) => a.task_id && `Tarea ${a.task_id} en curso sin su worker`,
  'dispatch.queued_unclaimed': () => 'Tareas en cola que ningún worker toma',
  'dispatch.no_fresh_worker': () => 'Dispatch activado sin ningún worker fresco',
  'dispatch.recurring_failure': (a) => a.subject && `Fallos de dispatch repetidos en ${a.subject}`,
  'replication.lag': () => 'La réplica de la base de datos va con retraso',
};

const ALERT_DETAILS = [
  [/^the replica is (\d+) s behind \(replication_max_lag_seconds is (\d+)\): writes of the last \d+ s would be lost with this host\. (.*)\. Check ops-center-litestream\.service/s,
    (m) => `La réplica iba ${m[1]} s por detrás (replication_max_lag_seconds es ${m[2]}). Causa: ${m[3]}. Revisa ops-center-litestream.service (journalctl -u ops-center-litestream) y el espacio en los discos de la base de datos y de la réplica.`],
  [/^stale dispatch: worker (.*) held the task in dispatching for (\d+) min without starting it/s,
    (m) => `Dispatch stale: el worker ${m[1]} tuvo la tarea en dispatching ${m[2]} min sin arrancarla.`],
  [/^task (\d+) is doing on worker (.*), which has sent no heartbeat in the last (\d+) s/s,
    (m) => `La tarea ${m[1]} está en curso en el worker ${m[2]}, que no envía heartbeat desde hace ${m[3]} s: puede que el agente muriera con su host; revisa el host y mueve la tarea a mano.`],
  [/^stale run: worker (.*) was last seen at (\S+) \((\d+) s ago; a worker is stale after (\d+) s\)/s,
    (m) => `Ejecución sin worker: el worker ${m[1]} se vio por última vez el ${m[2]} (hace ${m[3]} s; un worker caduca a los ${m[4]} s): su launcher o su host ya no están.`],
  [/^stale run: worker (.*) stopped listing the task among the tasks it runs at (\S+) \((\d+) s ago; grace (\d+) s\); it was last seen at (\S+?Z)/s,
    (m) => `Ejecución sin worker: el worker ${m[1]} dejó de listar la tarea entre las que ejecuta el ${m[2]} (hace ${m[3]} s; margen ${m[4]} s); se vio por última vez el ${m[5]}: su launcher ya no la ejecuta.`],
  [/^stale run: worker (.*) has no heartbeat on record/s,
    (m) => `Ejecución sin worker: el worker ${m[1]} no tiene ningún heartbeat registrado (olvidado, o nunca visto por este servidor).`],
  [/^(\d+) queued task\(s\) no worker has taken for more than (\d+) min: (.*): the fleet is busy/s,
    (m) => `${m[1]} tarea(s) en cola que ningún worker ha tomado desde hace más de ${m[2]} min: ${queuedEs(m[3])}. La flota está ocupada, o ningún worker fresco sirve su agente, modelo o workspace (mira los workers en la salud).`],
  [/^no launcher heartbeat in the last (\d+) s while dispatch_enabled=true/,
    (m) => `Ningún heartbeat de launcher en los últimos ${m[1]} s con dispatch_enabled=true: revisa ops-dispatch-launcher.service en los hosts de los workers o desactiva el dispatch.`],
  [/^(\d+) failed dispatches of (.*) in the last 24 h \(threshold (\d+)\)/s,
    (m) => `${m[1]} dispatches fallidos de ${m[2]} en las últimas 24 h (umbral ${m[3]}): mira sus comentarios de bloqueo.`],
];

/** The Spanish title of an alert (`kind`, `subject`, `task_id`, `title`). */
export function alertTitle(a) {
  const say = ALERT_TITLES[a.kind];
  return (say && say(a)) || a.title;
}

/** The Spanish detail of an alert, or its detail as sent. */
export function alertDetail(a) {
  const text = a.detail || '';
  for (const [re, say] of ALERT_DETAILS) {
    const m = re.exec(text);
    if (m) return say(m);
  }
  return text;
}
