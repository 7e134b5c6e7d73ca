// The HTTP and WebSocket API of DESIGN.md, as the console uses it. The secret
// lives in sessionStorage (gone when the tab closes) and travels as
// `Authorization: Bearer <secret>`; the WebSocket, which a browser cannot give
// headers, sends it in the subscribe message.

const SECRET_KEY = 'aquifer.secret';

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
  }
}

export function getSecret() {
  return sessionStorage.getItem(SECRET_KEY) || '';
}

export function setSecret(secret) {
  if (secret) sessionStorage.setItem(SECRET_KEY, secret);
  else sessionStorage.removeItem(SECRET_KEY);
}

// "/v1/projects/{p}/tables/{t}" with each segment encoded.
export function path(...segments) {
  return '/v1/' + segments.map((segment) => encodeURIComponent(segment)).join('/');
}

export async function call(method, url, {query, body, secret = getSecret()} = {}) {
  const target = new URL(url, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.set(name, String(value));
  }
  const headers = {Accept: 'application/json'};
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(target, {method, headers, body: payload, cache: 'no-store'});
  } catch (error) {
    throw new ApiError(0, 'network_error', `the server did not answer: ${error.message}`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = json && json.error;
    throw new ApiError(response.status, (error && error.code) || `http_${response.status}`,
      (error && error.message) || text || response.statusText, error && error.details);
  }
  return json;
}

export const api = {
  usage: (hours = 0) => call('GET', '/v1/usage', {query: {hours: hours || undefined}}),
  listTables: (project) => call('GET', path('projects', project, 'tables')),
  describeTable: (project, table) => call('GET', path('projects', project, 'tables', table)),
  queryIndex: (project, table, {filter, limit}) =>
    call('GET', path('projects', project, 'tables', table, 'records'), {query: {filter, limit}}),
  queryLog: (project, table, {from, limit}) =>
    call('GET', path('projects', project, 'tables', table, 'log'), {query: {from, limit}}),
  cursor: (cursor, limit) => call('GET', '/v1/cursor', {query: {cursor, limit}}),
  write: (project, table, records, wait) =>
    call('POST', path('projects', project, 'tables', table, 'records'), {query: {wait}, body: records}),
  sql: (query, dryRun) => call('POST', '/v1/sql', {body: {query, dry_run: dryRun}}),
  job: (jobId) => call('GET', path('jobs', jobId)),
  jobRows: (jobId, cursor, limit) => call('GET', path('jobs', jobId, 'rows'), {query: {cursor, limit}}),
};

// A live subscription (GET /v1/subscribe). Calls onRecords(records, cursor) per
// batch and onState(text) as the connection changes; reconnects with the last
// cursor after a drop (a server error or restart), never after a client error
// (close code 1008: the error is passed to onError and the feed stops).
export function subscribe(cursor, {filter, onRecords, onState, onError}) {
  let position = cursor;
  let socket = null;
  let stopped = false;
  let retryMs = 500;
  let timer = null;

  const open = () => {
    if (stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/v1/subscribe`);
    onState('connecting');
    let failed = false;
    socket.addEventListener('open', () => {
      const message = {type: 'subscribe', cursor: position, secret: getSecret()};
      if (filter) message.filter = filter;
      socket.send(JSON.stringify(message));
      onState('live');
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === 'records') {
        retryMs = 500;
        position = message.cursor || position;
        onRecords(message.data || [], position);
      } else if (message.type === 'error') {
        const error = message.error || {};
        failed = true;
        onError(new ApiError(0, error.code || 'error', error.message || 'subscription failed'));
      }
    });
    socket.addEventListener('close', (event) => {
      socket = null;
      if (stopped) return;
      if (event.code === 1008 || (failed && event.code !== 1011 && event.code !== 1001)) {
        stopped = true;
        onState('stopped');
        return;
      }
      onState(`reconnecting in ${Math.round(retryMs / 100) / 10} s`);
      timer = setTimeout(open, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    });
  };
  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close(1000);
      onState('stopped');
    },
  };
}
