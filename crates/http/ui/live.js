// The event stream (GET /api/stream): one EventSource for the page, the
// connection state shown in the sidebar, and subscribers that the pages
// register while they are shown.
//
// EventSource reconnects by itself and resumes with Last-Event-ID, so no
// event is missed while it was away; when the server refuses it (e.g. the
// session ended) it gives up, and this module tries again after a pause.

const subscribers = new Set();
const stateListeners = new Set();
let source = null;
let retryTimer = null;
let connected = false;
let lastId = null;

/** Calls `fn(event)` for every event; returns the function that stops it. */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

/** Calls `fn(connected)` now and whenever the connection changes. */
export function onState(fn) {
  stateListeners.add(fn);
  fn(connected);
  return () => stateListeners.delete(fn);
}

export function isConnected() {
  return connected;
}

function setConnected(value) {
  if (value === connected) return;
  connected = value;
  for (const fn of stateListeners) fn(connected);
}

/** Opens the stream (after a login); does nothing if it is open. */
export function connect() {
  if (source) return;
  clearTimeout(retryTimer);
  // A stream reopened after a refusal resumes where the last one stopped.
  const url = lastId === null ? '/api/stream' : `/api/stream?last_event_id=${encodeURIComponent(lastId)}`;
  source = new EventSource(url);
  source.addEventListener('open', () => setConnected(true));
  source.addEventListener('message', (msg) => {
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (msg.lastEventId) lastId = msg.lastEventId;
    for (const fn of [...subscribers]) {
      try {
        fn(ev);
      } catch (err) {
        // One page's handler must not stop the others.
        setTimeout(() => { throw err; });
      }
    }
  });
  source.addEventListener('error', () => {
    setConnected(false);
    if (source && source.readyState === EventSource.CLOSED) {
      // Refused (not a network blip): try again later, by hand.
      source = null;
      retryTimer = setTimeout(connect, 5000);
    }
  });
}

/** Closes the stream (at logout). */
export function disconnect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  lastId = null;
  setConnected(false);
}
