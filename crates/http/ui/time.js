// OPS Center: the server's timestamps shown in local time, and durations
// in words.

import { h } from './dom.js';

export function parseTime(s) {
  const ms = s ? Date.parse(s) : NaN;
  return Number.isNaN(ms) ? null : ms;
}

export function fmtTime(s) {
  const ms = parseTime(s);
  if (ms === null) return s ? String(s) : '—';
  return new Date(ms).toLocaleString('es-ES', { dateStyle: 'short', timeStyle: 'medium' });
}

export function fmtDuration(ms) {
  const min = Math.floor(ms / 60000);
  if (min < 1) return `${Math.max(0, Math.floor(ms / 1000))} s`;
  if (min < 60) return `${min} min`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function ago(s) {
  const ms = parseTime(s);
  return ms === null ? '' : `hace ${fmtDuration(Date.now() - ms)}`;
}

/** A timestamp shown in local time, with the server's value as tooltip. */
export function timeEl(s) {
  if (!s) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: s, title: `${s} (${ago(s)})` }, fmtTime(s));
}
