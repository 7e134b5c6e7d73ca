// Building DOM nodes without HTML strings: every text goes through a text node,
// so data from the API is never parsed as markup (no HTML strings anywhere).

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const each of child) append(parent, each);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' || name === 'checked' || name === 'disabled') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

// h('button', {type: 'button', onclick: fn}, 'Run') → <button type="button">Run</button>
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
  return element;
}

export function replace(element, ...children) {
  clear(element);
  append(element, children);
  return element;
}

// A cell's text: strings as they are, everything else as JSON.
export function cellText(value) {
  if (value === null || value === undefined) return value === null ? 'null' : '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

// A grid of rows. `columns`: names; `rows`: arrays of values (SQL) or objects (records).
export function grid(columns, rows, {caption, empty = 'No rows.'} = {}) {
  if (!rows.length) return h('p', {class: 'muted'}, empty);
  const head = h('tr', {}, columns.map((name) => h('th', {scope: 'col'}, name)));
  const body = rows.map((row) =>
    h('tr', {}, columns.map((name, idx) => {
      const value = Array.isArray(row) ? row[idx] : row[name];
      return h('td', {class: typeof value === 'number' ? 'num' : null}, cellText(value));
    })));
  return h('div', {class: 'grid-wrap'},
    h('table', {class: 'grid'}, caption ? h('caption', {}, caption) : null,
      h('thead', {}, head), h('tbody', {}, body)));
}

// The columns of a list of records: the schema's fields first, then any other key seen.
export function recordColumns(records, fields = []) {
  const columns = [...fields];
  for (const record of records) {
    for (const name of Object.keys(record)) if (!columns.includes(name)) columns.push(name);
  }
  if (!columns.includes('@timestamp') && records.length) columns.push('@timestamp');
  return columns;
}

export function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
