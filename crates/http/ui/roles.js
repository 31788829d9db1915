// What the person logged in may do, from GET /api/auth/me (`role`:
// `admin`, `user` or `service`; `workspaces`: their memberships with
// `role` `admin` or `member`). The rules are README's "Who may do what";
// the server enforces them, and the page offers only what it would allow.
// Each check answers null when allowed, else the reason in Spanish.

const isGlobalAdmin = (me) => Boolean(me && (me.role === 'admin' || me.is_admin));
const isService = (me) => Boolean(me && me.role === 'service');
const adminOf = (me, wsId) => Boolean(me && (me.workspaces || [])
  .some((w) => w.role === 'admin' && (wsId === undefined || w.workspace_id === wsId)));

const ONLY_GLOBAL = 'Solo un administrador global puede hacerlo.';
const ONLY_ADMINS = 'Solo un administrador (global o de un workspace) puede hacerlo.';

/** Toggling dispatch_enabled, running the watchdog, listing stale tasks. */
export function mayOperate(me) {
  return isGlobalAdmin(me) || isService(me) || adminOf(me) ? null : ONLY_ADMINS;
}

/** Reconciling stale tasks, ?force=true, other settings, agents. */
export function mayAdminister(me) {
  return isGlobalAdmin(me) || isService(me) ? null : ONLY_GLOBAL;
}

/** Approving the Human Gate, or clearing `sensitive`, of a task of
 *  workspace `wsId`: a human admin of it (never the service token). */
export function mayApproveGate(me, wsId) {
  if (isService(me)) return 'El token de servicio nunca aprueba el Human Gate: lo hace una persona.';
  return isGlobalAdmin(me) || adminOf(me, wsId) ? null : 'Solo un administrador global o de este workspace puede aprobar el Human Gate.';
}

/** Resolving an alert: a workspace admin resolves those about tasks
 *  (the list shows only tasks of their workspaces; the server checks that
 *  they administer that one), alerts about no task are for global admins. */
export function mayResolveAlert(me, aboutTask) {
  if (isGlobalAdmin(me) || isService(me)) return null;
  if (!aboutTask) return ONLY_GLOBAL;
  return adminOf(me) ? null : ONLY_ADMINS;
}

/** Disables `button` with the reason when `reason` is given. */
export function gate(button, reason) {
  if (reason) {
    button.disabled = true;
    button.title = reason;
    button.dataset.denied = 'true';
  }
  return button;
}
