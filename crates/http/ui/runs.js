// OPS Center: a task's agent runs — «Transcripción» (what the agent did:
// its messages, each tool call with its input and result, errors, usage),
// fetched with `?after=` as the stream says more came, never all again;
// «Ejecuciones» (each run's agent, model, worker, outcome, tokens and
// cost); «Enviar al agente» (a follow-up that resumes the last run's
// session); and what a queued task waits for (the provider's rate limit,
// a follow-up message).

import { api } from './api.js';
import { fill, h } from './dom.js';
import { flash, noteError, setNote } from './flash.js';
import { dispatchOutcome } from './task_actions.js';
import { fmtDuration, parseTime, timeEl } from './time.js';

export const OUTCOME_LABEL = {
  running: 'en curso', finished: 'terminada', failed: 'fallida',
  cancelled: 'cancelada', rate_limited: 'límite de uso', lost: 'perdida',
};
const OUTCOME_CLASS = {
  running: 'status-doing', finished: 'flag-ok', failed: 'flag-bad',
  cancelled: 'flag-muted', rate_limited: 'flag-warn', lost: 'flag-bad',
};

/** Money as the page shows it: USD with 4 decimals. */
export const usd = (n) => `${Number(n).toLocaleString('es-ES', { minimumFractionDigits: 4, maximumFractionDigits: 4 })} USD`;
/** A count of tokens. */
export const tokens = (n) => Number(n || 0).toLocaleString('es-ES');

/** Whether an error's text is the provider refusing the credentials. */
export const keyRejected = (text) => /\b401\b|invalid[ _-]?api[ _-]?key|authenticat/i.test(text || '');

function outcomeChip(outcome) {
  return h('span', { class: `chip ${OUTCOME_CLASS[outcome] || 'flag-muted'}`, title: outcome }, OUTCOME_LABEL[outcome] || outcome);
}

function costText(cost, source) {
  if (cost === null || cost === undefined) return h('span', { class: 'muted', title: 'Ni la CLI ni el ajuste model_prices dan un precio para su modelo' }, 'sin precio');
  return h('span', { title: source === 'cli' ? 'según la CLI' : 'según el ajuste model_prices' }, usd(cost));
}

function duration(run) {
  const start = parseTime(run.started_at);
  if (start === null) return '—';
  const end = run.ended_at ? parseTime(run.ended_at) : Date.now();
  return end === null ? '—' : fmtDuration(end - start);
}

/** A timestamp in little room: the time of day, with the date when it
 *  is not today; all of it in the tooltip. */
function shortTime(s) {
  const ms = parseTime(s);
  if (ms === null) return timeEl(s);
  const d = new Date(ms);
  const time = d.toLocaleTimeString('es-ES');
  const today = d.toDateString() === new Date().toDateString();
  return h('time', { datetime: s, title: s }, today ? time : `${d.toLocaleDateString('es-ES', { day: 'numeric', month: 'numeric' })} ${time}`);
}

/** HH:MM of a timestamp (with the day when it is not today). */
function clock(s) {
  const ms = parseTime(s);
  if (ms === null) return String(s);
  const d = new Date(ms);
  const hhmm = d.toLocaleTimeString('es-ES', { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === new Date().toDateString() ? hhmm : `${hhmm} del ${d.toLocaleDateString('es-ES')}`;
}

/** What queued task `t` waits for: the provider's rate limit
 *  (`not_before`) and a follow-up message not yet taken by a run. */
export function waitingNotes(t) {
  const until = parseTime(t.not_before);
  return [
    t.status === 'queued' && until !== null && until > Date.now()
      ? h('section', { class: 'panel callout warn rate-limit' },
        h('p', null, h('strong', null, `Límite de uso del proveedor: se reintenta a las ${clock(t.not_before)}.`),
          ' Ningún launcher la recoge antes; «Cancelar ejecución» la saca de la cola.'))
      : null,
    t.follow_up
      ? h('section', { class: 'panel callout ok pending-follow-up' },
        h('p', null, h('strong', null, 'Mensaje para el agente pendiente'), ': se le envía en su próxima ejecución, que reanuda la sesión.'),
        h('pre', { class: 'text' }, t.follow_up))
      : null,
  ];
}

/** The runs of task `taskId`, kept across the task page's redraws (what
 *  is open, typed or scrolled stays): `transcript`, `runs` and `followUp`
 *  are its panels; `setTask(t, ctx)` is called with each drawing of the
 *  task (`ctx`: the page's `act`, `reload` and whether its header offers
 *  «Reintentar»), `output(ev)` with each `dispatch.output` event. */
export function runsView(taskId) {
  const state = {
    runs: null, lastSeq: 0, loading: false, again: false, loadingRuns: false, runsAgain: false,
    groups: new Map(), t: null, ctx: null, timer: null, hadEvents: false,
  };
  const view = { id: taskId, onEvents: null };

  // Transcript.
  const list = h('div', { class: 'transcript', tabindex: 0, 'aria-label': 'Transcripción del agente' });
  const status = h('p', { class: 'muted' }, 'Cargando la transcripción…');
  const transcriptNote = h('div', { hidden: true });
  view.transcript = h('section', { class: 'panel', 'data-live': 'transcript' },
    h('h2', null, 'Transcripción'), status, transcriptNote, list);

  const atEnd = () => list.scrollTop + list.clientHeight >= list.scrollHeight - 8;

  /** The block of run `n`, made when first needed, in number order. */
  const group = (n) => {
    let g = state.groups.get(n);
    if (g) return g;
    g = {
      n, pending: [], tokensIn: 0, tokensOut: 0, cost: null, session: null, events: 0,
      title: h('h3', null, `Ejecución ${n}`),
      meta: h('span', { class: 'muted small run-meta' }),
      message: h('div', { class: 'follow-up-msg', hidden: true }),
      body: h('div', { class: 'run-events' }),
      usage: h('p', { class: 'muted small t-usage', hidden: true }),
      none: h('p', { class: 'muted small', hidden: true }, 'Esta ejecución no dejó transcripción (su CLI no da eventos): está en el registro completo.'),
    };
    g.node = h('section', { class: 'run-group', 'data-run': n },
      h('header', { class: 'run-head' }, g.title, g.meta), g.message, g.body, g.none, g.usage);
    const later = [...state.groups.values()].filter((o) => o.n > n).sort((a, b) => a.n - b.n)[0];
    list.insertBefore(g.node, later ? later.node : null);
    state.groups.set(n, g);
    return g;
  };

  /** A run's heading, follow-up message and usage, from the runs list
   *  when it has the run, else from its events. */
  const drawGroup = (g) => {
    const run = state.runs && state.runs.runs.find((r) => r.number === g.n);
    g.title.textContent = `Ejecución ${g.n}${run && run.follow_up ? ' · seguimiento' : ''}`;
    fill(g.meta, run ? [run.agent || '?', run.model ? ` · ${run.model}` : '', ' · ', outcomeChip(run.outcome)] : null,
      g.session ? h('span', { title: g.session }, ` · sesión ${g.session.slice(0, 12)}`) : null);
    g.message.hidden = !(run && run.follow_up);
    if (run && run.follow_up) fill(g.message, h('span', { class: 'muted small' }, 'Mensaje enviado al agente:'), h('p', { class: 'pre-line' }, run.follow_up));
    const tin = run ? run.tokens_in : g.tokensIn;
    const tout = run ? run.tokens_out : g.tokensOut;
    const cost = run ? run.cost_usd : g.cost;
    g.usage.hidden = !(tin || tout || cost !== null);
    g.usage.textContent = `Uso: ${tokens(tin)} tokens de entrada · ${tokens(tout)} de salida · ${cost === null || cost === undefined ? 'sin precio' : usd(cost)}`;
    g.none.hidden = g.events > 0 || !run || run.outcome === 'running';
  };

  const line = (cls, e, ...children) => h('div', { class: `t-line ${cls}`, title: e.at || null }, children);

  const addEvent = (e) => {
    const g = group(e.run);
    g.events += 1;
    if (e.kind === 'message') {
      g.body.appendChild(line('t-message pre-line', e, e.text));
    } else if (e.kind === 'tool_call') {
      const state_ = h('span', { class: 'muted small t-tool-state' }, 'sin resultado todavía');
      const result = h('div', { class: 't-result' }, h('p', { class: 'muted small' }, 'La herramienta aún no ha respondido.'));
      const item = h('details', { class: 't-line t-tool', title: e.at || null },
        h('summary', null, h('code', { class: 't-tool-name' }, e.name), ' ', h('span', { class: 't-tool-summary' }, e.summary || ''), ' ', state_),
        e.detail ? [h('div', { class: 't-label' }, 'Entrada'), h('pre', { class: 't-pre' }, e.detail)] : null,
        result);
      g.body.appendChild(item);
      g.pending.push({ name: e.name, result, state: state_, item });
    } else if (e.kind === 'tool_result') {
      const at = g.pending.findIndex((p) => !e.name || p.name === e.name);
      const shown = [h('div', { class: 't-label' }, e.error ? 'Resultado (error)' : 'Resultado'),
        h('pre', { class: `t-pre${e.error ? ' t-pre-bad' : ''}` }, e.text)];
      if (at >= 0) {
        const [p] = g.pending.splice(at, 1);
        fill(p.result, shown);
        p.state.textContent = e.error ? 'error' : '';
        p.state.className = e.error ? 'chip flag-bad t-tool-state' : 'muted small t-tool-state';
        if (e.error) p.item.classList.add('t-tool-error');
      } else {
        g.body.appendChild(h('details', { class: 't-line t-tool', title: e.at || null },
          h('summary', null, 'Resultado', e.name ? [' de ', h('code', { class: 't-tool-name' }, e.name)] : null), shown));
      }
    } else if (e.kind === 'error') {
      g.body.appendChild(line('t-error', e, h('strong', null, keyRejected(e.text) ? 'Clave rechazada por el proveedor: ' : 'Error: '), e.text));
    } else if (e.kind === 'usage') {
      g.tokensIn += e.tokens_in || 0;
      g.tokensOut += e.tokens_out || 0;
      if (typeof e.cost_usd === 'number') g.cost = (g.cost || 0) + e.cost_usd;
    } else if (e.kind === 'session') {
      g.session = e.id;
    } else {
      g.body.appendChild(line('muted small', e, `${e.kind}`));
    }
    drawGroup(g);
  };

  const drawStatus = () => {
    const running = state.t && ['dispatching', 'doing'].includes(state.t.status);
    const anyRun = state.groups.size > 0;
    status.hidden = anyRun && !running;
    status.textContent = anyRun ? 'El agente está trabajando: la transcripción se completa según llega.'
      : running ? 'El agente está empezando: su transcripción aparece según trabaja.'
        : 'Sin ejecuciones todavía: la transcripción aparece cuando un agente trabaja en la tarea.';
  };

  /** Fetches what came after the last event shown; one fetch at a time,
   *  another asked for meanwhile runs after it. */
  const fetchTranscript = async () => {
    if (state.loading) {
      state.again = true;
      return;
    }
    state.loading = true;
    try {
      do {
        state.again = false;
        for (;;) {
          const page = await api('GET', `/tasks/${taskId}/transcript?after=${state.lastSeq}`);
          const follow = atEnd();
          for (const e of page.events || []) {
            if (e.seq <= state.lastSeq) continue;
            addEvent(e);
            state.lastSeq = e.seq;
          }
          if (follow) list.scrollTop = list.scrollHeight;
          if (!page.more || !(page.events || []).length) break;
        }
      } while (state.again);
      transcriptNote.hidden = true;
    } catch (err) {
      noteError(transcriptNote, err, 'No se pudo leer la transcripción.');
    } finally {
      state.loading = false;
    }
    drawStatus();
    if (state.lastSeq > 0 && !state.hadEvents) {
      state.hadEvents = true;
      if (view.onEvents) view.onEvents();
    }
  };
  view.hasEvents = () => state.lastSeq > 0;

  // Runs.
  const runsBody = h('div', null, h('p', { class: 'muted pad' }, 'Cargando las ejecuciones…'));
  view.runs = h('section', { class: 'panel table-panel runs' }, h('h2', { class: 'pad-h' }, 'Ejecuciones'), runsBody);

  const drawRuns = () => {
    const r = state.runs;
    if (!r.runs.length) {
      fill(runsBody, h('p', { class: 'muted pad' }, 'Ningún agente ha ejecutado esta tarea todavía.'));
      return;
    }
    fill(runsBody, h('table', { class: 'table wrap runs-table' },
      h('thead', null, h('tr', null, h('th', null, '#'), h('th', null, 'Agente · worker'), h('th', null, 'Inicio'),
        h('th', null, 'Resultado'), h('th', { class: 'num' }, 'Tokens', h('div', { class: 'sub' }, 'entrada / salida')),
        h('th', { class: 'num' }, 'Coste'))),
      h('tbody', null, r.runs.map((run) => h('tr', { 'data-run': run.number },
        h('td', null, String(run.number), run.follow_up ? h('div', { class: 'sub' }, 'seguimiento') : null),
        h('td', { 'data-label': 'Agente' }, h('code', null, run.agent || '?'),
          h('div', { class: 'sub' }, run.model || 'modelo de la CLI'),
          h('div', { class: 'sub' }, h('code', { title: 'worker' }, run.worker_id))),
        h('td', { 'data-label': 'Inicio' }, shortTime(run.started_at), h('div', { class: 'sub' }, duration(run))),
        h('td', { 'data-label': 'Resultado' }, outcomeChip(run.outcome),
          run.exit_code !== null && run.exit_code !== undefined ? h('div', { class: 'sub' }, `código ${run.exit_code}`) : null,
          run.signal ? h('div', { class: 'sub' }, `señal ${run.signal}`) : null),
        h('td', { class: 'num', 'data-label': 'Tokens' }, `${tokens(run.tokens_in)} / ${tokens(run.tokens_out)}`),
        h('td', { class: 'num', 'data-label': 'Coste' }, costText(run.cost_usd, run.cost_source))))),
      h('tfoot', null, h('tr', { class: 'runs-total' },
        h('td', { colspan: 4 }, h('strong', null, `Total de la tarea (${r.runs.length} ${r.runs.length === 1 ? 'ejecución' : 'ejecuciones'})`)),
        h('td', { class: 'num' }, `${tokens(r.tokens_in)} / ${tokens(r.tokens_out)}`),
        h('td', { class: 'num' }, h('strong', null, usd(r.cost_usd)))))));
  };

  const refreshRuns = async () => {
    if (state.loadingRuns) {
      state.runsAgain = true;
      return;
    }
    state.loadingRuns = true;
    try {
      do {
        state.runsAgain = false;
        state.runs = await api('GET', `/tasks/${taskId}/runs`);
      } while (state.runsAgain);
    } catch (err) {
      const n = h('div', { class: 'pad' });
      noteError(n, err, 'No se pudieron leer las ejecuciones.');
      fill(runsBody, n);
      return;
    } finally {
      state.loadingRuns = false;
    }
    drawRuns();
    for (const run of state.runs.runs) group(run.number);
    for (const g of state.groups.values()) drawGroup(g);
    drawStatus();
    drawFollowUp();
  };

  // Enviar al agente.
  const note = h('div', { hidden: true });
  const message = h('textarea', { name: 'message', rows: 4, maxlength: 20000, placeholder: 'Qué debe hacer ahora el agente: correcciones, dudas, el siguiente paso…' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Enviar al agente');
  const form = h('form', { class: 'follow-up-form' },
    h('label', null, 'Mensaje para el agente', message),
    h('p', { class: 'muted small' }, 'El agente retoma su última sesión con este mensaje como instrucción, en la misma rama. La tarea vuelve a la cola.'),
    h('div', { class: 'actions' }, send));
  const cannot = h('div', { class: 'cannot-resume', hidden: true });
  view.followUp = h('section', { class: 'panel follow-up', hidden: true },
    h('h2', null, 'Enviar al agente'), form, cannot, note);

  const retryButton = () => {
    const retry = h('button', { type: 'button', class: 'primary', title: 'Una ejecución nueva desde el prompt, sin la sesión anterior.' }, 'Reintentar');
    retry.addEventListener('click', () => state.ctx.act(retry, () => api('POST', `/tasks/${taskId}/retry`, {}),
      (answer) => dispatchOutcome(taskId, answer), 'No se pudo reintentar la tarea.'));
    return retry;
  };

  function drawFollowUp() {
    const t = state.t;
    const r = state.runs;
    const open = Boolean(t && r && !t.archived_at && ['review', 'waiting'].includes(t.status) && r.runs.length);
    view.followUp.hidden = !open;
    if (!open) return;
    form.hidden = !r.can_resume;
    cannot.hidden = r.can_resume;
    if (!r.can_resume) {
      fill(cannot, h('p', null, h('strong', null, 'Este agente no puede reanudar la sesión'),
        ': la última ejecución no dejó una sesión que continuar (su CLI no la reanuda, o no la nombró). ',
        state.ctx && state.ctx.retryShown ? 'Usa «Reintentar» arriba para una ejecución nueva desde el prompt.' : 'Puedes lanzar una ejecución nueva desde el prompt.'),
      state.ctx && !state.ctx.retryShown ? h('div', { class: 'actions' }, retryButton()) : null);
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = message.value;
    if (!text.trim()) {
      setNote(note, 'error', 'Escribe el mensaje para el agente.');
      message.focus();
      return;
    }
    send.disabled = true;
    try {
      const answer = await api('POST', `/tasks/${taskId}/follow-up`, { message: text });
      message.value = '';
      note.hidden = true;
      const [kind, said] = await dispatchOutcome(taskId, answer);
      await state.ctx.reload();
      flash(kind, kind === 'ok' ? `Mensaje enviado al agente: la tarea #${taskId} está en cola.` : said);
    } catch (err) {
      noteError(note, err, 'No se envió el mensaje al agente.');
      // The server knows better: the panel offers what it can do now.
      if (err.code === 'no_session') refreshRuns();
    } finally {
      send.disabled = false;
    }
  });

  view.setTask = (t, ctx) => {
    state.t = t;
    state.ctx = ctx;
    drawStatus();
    drawFollowUp();
    fetchTranscript();
    refreshRuns();
  };

  /** A `dispatch.output` event: its run events, if any, are fetched (a
   *  burst of chunks costs one fetch), with the runs' tokens and cost. */
  view.output = (ev) => {
    if (!(ev.payload && ev.payload.events > 0)) return;
    if (state.timer) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      fetchTranscript();
      refreshRuns();
    }, 250);
  };
  return view;
}
