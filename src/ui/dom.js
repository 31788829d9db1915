// DOM helpers shared by the UI's modules. Text always goes in as text
// nodes or attribute values, never parsed as markup.

/** Creates an element. `props`: `class`, `on<event>` handlers, booleans
 *  (set when true), anything else as an attribute; null/undefined/false
 *  are skipped. Children may be nodes, strings, numbers, arrays, or
 *  null/false (skipped). */
export function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
