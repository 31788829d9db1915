// OPS Center: building the page from text nodes only. Server text becomes
// a text node or an attribute value, never markup.

/** Creates an element. `props`: `class`, `on<event>` handlers, booleans
 *  (set when true), anything else as an attribute; null/false/undefined
 *  are skipped. Children may be nodes, strings, numbers, nested arrays,
 *  or null/false (skipped). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  return add(el, ...children);
}

/** Appends children to `el` (skipping null/false) and returns it. */
export function add(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return add(el, ...children);
}

/** The element of the page with id `id`. */
export const byId = (id) => document.getElementById(id);

/** A copy of index.html's `<template id=...>`, with a lookup for its
 *  `data-slot` elements. */
export function template(id) {
  const frag = byId(id).content.cloneNode(true);
  const slots = {};
  for (const el of frag.querySelectorAll('[data-slot]')) slots[el.dataset.slot] = el;
  return { frag, slots };
}

/** A definition list of `[term, value]` rows (null rows skipped). */
export function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}
