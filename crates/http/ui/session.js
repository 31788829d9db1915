// OPS Center: who is logged in (`GET /api/auth/me`), logging in and out,
// and the lists the pages share while the session lasts (agents,
// workspaces), asked for once and again on demand.

import { api } from './api.js';

let user = null;
let agentList = null;
let workspaceList = null;

/** The person logged in (`GET /api/auth/me`'s answer), or null. */
export function me() {
  return user;
}

/** Asks the server who is logged in. */
export async function loadMe() {
  user = await api('GET', '/auth/me');
  return user;
}

/** Logs in; the lists of a previous session are forgotten. */
export async function logIn(username, password) {
  await api('POST', '/auth/login', { username, password });
  user = await api('GET', '/auth/me');
  agentList = null;
  workspaceList = null;
  return user;
}

export async function logOut() {
  await api('POST', '/auth/logout', {});
  user = null;
}

/** Forgets the person: the server ended the session. */
export function forget() {
  user = null;
}

/** `GET /api/agents`' list, asked for again when `reload`. */
export async function agents(reload) {
  if (!agentList || reload) agentList = (await api('GET', '/agents')).agents || [];
  return agentList;
}

/** `GET /api/workspaces`' list, asked for again when `reload`. */
export async function workspaces(reload) {
  if (!workspaceList || reload) workspaceList = (await api('GET', '/workspaces')).workspaces || [];
  return workspaceList;
}

/** The workspaces as last asked for, without asking (empty before). */
export function knownWorkspaces() {
  return workspaceList || [];
}
