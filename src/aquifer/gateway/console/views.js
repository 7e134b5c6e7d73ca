// The console's pages. Each view(params, ctx) returns a node and may keep
// updating it; ctx.onLeave(fn) registers clean-up (closing a live feed).
import {ApiError, api, subscribe} from './api.js';
import {cellText, formatBytes, grid, h, recordColumns, replace} from './dom.js';
import {hourlyChart} from './chart.js';

const PAGE = 50;

// An error from the API, with its code and message (and each bad record's field).
export function errorBox(error) {
  const apiError = error instanceof ApiError ? error : new ApiError(0, 'client_error', String(error && error.message || error));
  const status = apiError.status ? ` (HTTP ${apiError.status})` : '';
  return h('div', {class: 'error', role: 'alert'},
    h('strong', {class: 'error-code'}, apiError.code), status, ': ',
    h('span', {class: 'error-message'}, apiError.message),
    apiError.details.length
      ? h('ul', {}, apiError.details.map((detail) =>
        h('li', {}, `record ${detail.record}${detail.field ? `, field ${detail.field}` : ''}: ${detail.message}`)))
      : null);
}

function busy(target, text = 'Loading…') {
  return replace(target, h('p', {class: 'muted', 'aria-busy': 'true'}, text));
}

// Runs `work`, showing its error in `target` instead of throwing.
async function guarded(target, work) {
  try {
    return await work();
  } catch (error) {
    replace(target, errorBox(error));
    return undefined;
  }
}

function heading(text, ...extra) {
  return h('h1', {tabindex: '-1'}, text, ...extra);
}

function link(href, text) {
  return h('a', {href}, text);
}

function tableHref(project, table, tab = 'index') {
  return `#/t/${encodeURIComponent(project)}/${encodeURIComponent(table)}/${tab}`;
}

// --- Login -----------------------------------------------------------------------------------

export function loginView(_params, ctx) {
  const message = h('div', {});
  const input = h('input', {id: 'secret', name: 'secret', type: 'password', autocomplete: 'current-password',
    required: true, spellcheck: 'false'});
  const form = h('form', {class: 'card narrow', onsubmit: async (event) => {
    event.preventDefault();
    busy(message, 'Checking the secret…');
    await guarded(message, async () => {
      await ctx.login(input.value.trim());
    });
  }},
  heading('Log in'),
  h('p', {}, 'Paste a secret: the admin secret `aquifer serve` printed, or one minted for a project. It is kept in this tab only (sessionStorage).'),
  h('label', {for: 'secret'}, 'Secret'), input,
  h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Log in')),
  message);
  return form;
}

// --- Projects --------------------------------------------------------------------------------

export function projectsView(_params) {
  const body = h('div', {});
  const root = h('section', {}, heading('Projects'), body);
  busy(body);
  guarded(body, async () => {
    const usage = await api.usage();
    const projects = usage.projects.map((entry) => entry.project).sort();
    if (!projects.length) {
      replace(body, h('p', {class: 'muted'}, 'This secret sees no project yet. Create one with POST /v1/projects (admin).'));
      return;
    }
    replace(body, h('ul', {class: 'list'}, projects.map((name) =>
      h('li', {}, link(`#/p/${encodeURIComponent(name)}`, name)))));
  });
  return root;
}

// --- Tables of a project ---------------------------------------------------------------------

export function tablesView({project}) {
  const body = h('div', {});
  const root = h('section', {},
    h('p', {class: 'crumbs'}, link('#/', 'Projects'), ' / ', project),
    heading(`Tables of ${project}`), body);
  busy(body);
  guarded(body, async () => {
    const listed = await api.listTables(project);
    if (!listed.tables.length) {
      replace(body, h('p', {class: 'muted'}, 'No table yet.'));
      return;
    }
    replace(body, grid(['table', 'key', 'stores', 'instance'], listed.tables.map((table) => [
      table.name, table.key.join(', '),
      ['log', 'index', 'warehouse'].filter((store) => table[`use_${store}`]).join(', '), table.instance_id,
    ]), {caption: `${listed.tables.length} table(s)`}));
    // The table names as links (the grid renders text only).
    const cells = body.querySelectorAll('tbody tr td:first-child');
    listed.tables.forEach((table, idx) => replace(cells[idx], link(tableHref(project, table.name), table.name)));
  });
  return root;
}

// --- One table -------------------------------------------------------------------------------

function fieldType(type) {
  if (typeof type === 'string') return type;
  if (Array.isArray(type)) return type.map(fieldType).join(' | ');
  if (type && type.logicalType) return `${type.type}/${type.logicalType}`;
  if (type && type.type === 'array') return `array<${fieldType(type.items)}>`;
  if (type && type.type === 'map') return `map<${fieldType(type.values)}>`;
  if (type && type.type === 'enum') return `enum(${(type.symbols || []).join(', ')})`;
  if (type && type.type) return type.name ? `${type.type} ${type.name}` : type.type;
  return JSON.stringify(type);
}

function schemaSection(table) {
  const fields = (table.schema && table.schema.fields) || [];
  return h('section', {class: 'card', 'aria-labelledby': 'schema-h'},
    h('h2', {id: 'schema-h'}, 'Schema'),
    h('dl', {class: 'facts'},
      h('dt', {}, 'Key'), h('dd', {class: 'table-key'}, table.key.join(', ')),
      h('dt', {}, 'Instance'), h('dd', {class: 'mono'}, table.instance_id),
      h('dt', {}, 'Stores'), h('dd', {}, ['log', 'index', 'warehouse'].filter((store) => table[`use_${store}`]).join(', ')),
      h('dt', {}, 'Created'), h('dd', {}, new Date(table.created_ms).toISOString())),
    grid(['field', 'type', 'key', 'default'], fields.map((field) => [
      field.name, fieldType(field.type), table.key.includes(field.name) ? 'yes' : '',
      'default' in field ? cellText(field.default) : '',
    ]), {caption: 'Fields'}));
}

// A paged list of records: first page from `first()`, next ones from the cursor.
function recordPager(target, fields, first) {
  let cursor = null;
  let page = 0;
  const show = (result) => {
    page += 1;
    cursor = result.next_cursor;
    const records = result.data || [];
    const next = h('button', {type: 'button', disabled: !cursor, onclick: () => load(() => api.cursor(cursor, PAGE))},
      'Next page');
    replace(target,
      h('p', {class: 'muted'}, `Page ${page}: ${records.length} record(s)${result.residual ? ' (filtered after the scan: residual)' : ''}.`),
      grid(recordColumns(records, fields), records, {empty: 'No records.'}),
      h('div', {class: 'actions'}, next));
  };
  const load = (fetchPage) => {
    busy(target);
    return guarded(target, async () => show(await fetchPage()));
  };
  page = 0;
  return load(first);
}

function indexTab(table, fields, body) {
  const filter = h('textarea', {id: 'filter', rows: 3, spellcheck: 'false',
    placeholder: '{"user": "ada", "ts": {"_gte": 5}}'});
  const results = h('div', {});
  const run = (event) => {
    if (event) event.preventDefault();
    const text = filter.value.trim();
    if (text) {
      try {
        JSON.parse(text);
      } catch (error) {
        replace(results, errorBox(new ApiError(0, 'invalid_filter', `the filter is not JSON: ${error.message}`)));
        return;
      }
    }
    recordPager(results, fields, () => api.queryIndex(table.project, table.name, {filter: text, limit: PAGE}));
  };
  replace(body,
    h('form', {class: 'card', onsubmit: run},
      h('h2', {}, 'Index: the latest record per key'),
      h('label', {for: 'filter'}, 'Filter (JSON; operators _eq _gt _gte _lt _lte _prefix)'), filter,
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Query'))),
    results);
  run();
}

function logTab(table, fields, body) {
  const from = h('input', {id: 'from', type: 'number', min: 0, inputmode: 'numeric', placeholder: '0'});
  const results = h('div', {});
  const run = (event) => {
    if (event) event.preventDefault();
    recordPager(results, fields, () => api.queryLog(table.project, table.name, {from: from.value, limit: PAGE}));
  };
  replace(body,
    h('form', {class: 'card', onsubmit: run},
      h('h2', {}, 'Log: every record in write order'),
      h('label', {for: 'from'}, 'From (ms since the epoch)'), from,
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Replay'))),
    results);
  run();
}

function liveTab(table, fields, body, ctx) {
  const state = h('span', {class: 'state', id: 'live-state'}, 'stopped');
  const count = h('span', {id: 'live-count'}, '0');
  const results = h('div', {}, h('p', {class: 'muted'}, 'Records written from now on appear here.'));
  const errors = h('div', {});
  const received = [];
  let feed = null;
  const render = () => {
    count.textContent = String(received.length);
    replace(results, grid(recordColumns(received, fields), received.slice().reverse().slice(0, 200),
      {caption: 'Newest first', empty: 'Waiting for records…'}));
  };
  const start = async () => {
    replace(errors);
    // A change cursor from an index read starts at the present.
    const page = await guarded(errors, () => api.queryIndex(table.project, table.name, {limit: 1}));
    if (!page) return;
    if (!page.change_cursor) {
      replace(errors, errorBox(new ApiError(0, 'no_change_feed', 'this table keeps no log, so it has no live feed')));
      return;
    }
    feed = subscribe(page.change_cursor, {
      onRecords: (records) => {
        received.push(...records);
        render();
      },
      onState: (text) => { state.textContent = text; },
      onError: (error) => replace(errors, errorBox(error)),
    });
    render();
  };
  const stop = () => {
    if (feed) feed.close();
    feed = null;
  };
  ctx.onLeave(stop);
  replace(body,
    h('section', {class: 'card'},
      h('h2', {}, 'Live: new records as they are written'),
      h('p', {}, 'Connection: ', state, ' · received: ', count),
      h('div', {class: 'actions'},
        h('button', {type: 'button', onclick: () => { stop(); start(); }}, 'Watch'),
        h('button', {type: 'button', class: 'secondary', onclick: stop}, 'Stop'))),
    errors, results);
  start();
}

// An example record from the schema, for the write form.
function example(type) {
  if (Array.isArray(type)) return type.includes('null') ? null : example(type[0]);
  if (typeof type === 'object' && type) {
    if (type.logicalType === 'timestamp-millis') return Date.now();
    if (type.logicalType === 'uuid') return '00000000-0000-0000-0000-000000000000';
    if (type.type === 'record') return Object.fromEntries((type.fields || []).map((f) => [f.name, example(f.type)]));
    if (type.type === 'array') return [];
    if (type.type === 'map') return {};
    if (type.type === 'enum') return (type.symbols || [''])[0];
    return example(type.type);
  }
  return {boolean: false, int: 0, long: 0, float: 0, double: 0, string: '', bytes: ''}[type] ?? null;
}

function writeTab(table, body) {
  const fields = (table.schema && table.schema.fields) || [];
  const template = Object.fromEntries(fields.map((field) => [field.name, 'default' in field ? field.default : example(field.type)]));
  const editor = h('textarea', {id: 'record-json', rows: 12, spellcheck: 'false', class: 'mono',
    value: JSON.stringify([template], null, 2)});
  const wait = h('input', {id: 'wait-index', type: 'checkbox', checked: true});
  const result = h('div', {role: 'status'});
  const submit = async (event) => {
    event.preventDefault();
    let records;
    try {
      records = JSON.parse(editor.value);
    } catch (error) {
      replace(result, errorBox(new ApiError(0, 'invalid_json', `the records are not JSON: ${error.message}`)));
      return;
    }
    if (!Array.isArray(records)) records = [records];
    busy(result, 'Writing…');
    await guarded(result, async () => {
      const answer = await api.write(table.project, table.name, records, wait.checked ? 'index' : undefined);
      replace(result, h('p', {class: 'ok'},
        `Written: ${answer.records} record(s), write id ${answer.write_id}${wait.checked ? ', visible in the index' : ' (accepted)'}.`));
    });
  };
  replace(body,
    h('form', {class: 'card', onsubmit: submit},
      h('h2', {}, 'Write records'),
      h('label', {for: 'record-json'}, 'Records (a JSON object or an array of them)'), editor,
      h('p', {}, wait, ' ', h('label', {for: 'wait-index', class: 'inline'}, 'Wait until the index has them')),
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Write'))),
    result);
}

const TABS = [['index', 'Index'], ['log', 'Log'], ['live', 'Live'], ['write', 'Write']];

export function tableView({project, table: tableName, tab = 'index'}, ctx) {
  const body = h('div', {});
  const tabs = h('nav', {class: 'tabs', 'aria-label': 'Table views'}, TABS.map(([id, text]) =>
    h('a', {href: tableHref(project, tableName, id), 'aria-current': id === tab ? 'page' : null}, text)));
  const schema = h('div', {});
  const root = h('section', {},
    h('p', {class: 'crumbs'}, link('#/', 'Projects'), ' / ', link(`#/p/${encodeURIComponent(project)}`, project), ' / ', tableName),
    heading(`${project}.${tableName}`), schema, tabs, body);
  busy(schema);
  guarded(schema, async () => {
    const table = await api.describeTable(project, tableName);
    replace(schema, schemaSection(table));
    const fields = ((table.schema && table.schema.fields) || []).map((field) => field.name);
    if (tab === 'log') logTab(table, fields, body);
    else if (tab === 'live') liveTab(table, fields, body, ctx);
    else if (tab === 'write') writeTab(table, body);
    else indexTab(table, fields, body);
  });
  return root;
}

// --- SQL -------------------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function sqlView(_params, ctx) {
  const editor = h('textarea', {id: 'sql', rows: 6, spellcheck: 'false', class: 'mono',
    value: sessionStorage.getItem('aquifer.sql') || 'SELECT * FROM project.table LIMIT 100'});
  const estimate = h('div', {});
  const results = h('div', {});
  let run = 0;
  ctx.onLeave(() => { run += 1; });
  const text = () => {
    sessionStorage.setItem('aquifer.sql', editor.value);
    return editor.value;
  };
  const dryRun = async () => {
    busy(estimate, 'Estimating…');
    await guarded(estimate, async () => {
      const analysis = await api.sql(text(), true);
      replace(estimate, h('p', {class: 'estimate'},
        `Dry run: would scan about ${formatBytes(analysis.bytes_scanned_estimate)} `,
        `(${analysis.bytes_scanned_estimate} bytes) of ${analysis.tables.join(', ') || 'no table'}.`));
    });
  };
  const showRows = async (jobId, job, cursor, page) => {
    const rows = await api.jobRows(jobId, cursor, PAGE);
    const columns = (rows.columns || []).map((column) => column.name);
    const next = h('button', {type: 'button', disabled: !rows.next_cursor,
      onclick: () => guarded(results, () => showRows(jobId, job, rows.next_cursor, page + 1))}, 'Next page');
    replace(results,
      h('p', {class: 'muted job-summary'}, `Job ${jobId}: ${job.rows} row(s), ${formatBytes(job.bytes_scanned)} scanned. Page ${page}.`),
      grid(columns, rows.data || [], {caption: 'Result', empty: 'The query returned no rows.'}),
      h('div', {class: 'actions'}, next));
  };
  const execute = async (event) => {
    event.preventDefault();
    const mine = ++run;
    replace(estimate);
    busy(results, 'Submitting…');
    await guarded(results, async () => {
      const {job_id: jobId} = await api.sql(text(), false);
      let job;
      for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
        job = await api.job(jobId);
        if (mine !== run) return;
        if (job.status === 'done' || job.status === 'failed') break;
        busy(results, `Job ${jobId}: ${job.status}…`);
        await sleep(delay);
      }
      if (job.status === 'failed') {
        replace(results, errorBox(new ApiError(0, 'job_failed', job.error || 'the job failed')));
        return;
      }
      await showRows(jobId, job, undefined, 1);
    });
  };
  return h('section', {},
    heading('SQL'),
    h('form', {class: 'card', onsubmit: execute},
      h('label', {for: 'sql'}, 'Query (one SELECT over project.table names)'), editor,
      h('div', {class: 'actions'},
        h('button', {type: 'submit'}, 'Run'),
        h('button', {type: 'button', class: 'secondary', onclick: dryRun}, 'Estimate (dry run)'))),
    estimate, results);
}

// --- Usage -----------------------------------------------------------------------------------

const METRICS = [
  ['write_bytes', 'Bytes written', formatBytes], ['read_bytes', 'Bytes read', formatBytes],
  ['scan_bytes', 'Bytes scanned (SQL)', formatBytes], ['write_records', 'Records written', String],
  ['read_records', 'Records read', String],
];

export function usageView() {
  const select = h('select', {id: 'metric'}, METRICS.map(([id, text]) => h('option', {value: id}, text)));
  const hours = h('select', {id: 'hours'}, [24, 48, 168].map((n) => h('option', {value: n}, `last ${n} hours`)));
  const body = h('div', {});
  let usage = null;
  const render = () => {
    const [field, label, format] = METRICS.find(([id]) => id === select.value);
    if (!usage.projects.length) {
      replace(body, h('p', {class: 'muted'}, 'No project to show.'));
      return;
    }
    replace(body, usage.projects.map((project) => h('section', {class: 'card usage'},
      h('h2', {}, project.project),
      hourlyChart(project.hours || [], {field, label, format}),
      grid(['period', 'write records', 'write bytes', 'read records', 'read bytes', 'scan bytes', 'quotas'], [
        ['this hour', project.hour.write_records, formatBytes(project.hour.write_bytes), project.hour.read_records,
          formatBytes(project.hour.read_bytes), formatBytes(project.hour.scan_bytes), ''],
        ['this month', project.month.write_records, formatBytes(project.month.write_bytes), project.month.read_records,
          formatBytes(project.month.read_bytes), formatBytes(project.month.scan_bytes),
          Object.entries(project.quotas || {}).map(([name, value]) => `${name} ≤ ${formatBytes(value)}`).join(', ') || 'none'],
      ]))));
  };
  const load = () => {
    busy(body);
    guarded(body, async () => {
      usage = await api.usage(Number(hours.value));
      render();
    });
  };
  select.addEventListener('change', () => usage && render());
  hours.addEventListener('change', load);
  load();
  return h('section', {},
    heading('Usage'),
    h('div', {class: 'card controls'},
      h('label', {for: 'metric', class: 'inline'}, 'Show '), select, ' ',
      h('label', {for: 'hours', class: 'inline'}, 'for the '), hours),
    body);
}
