// Ratchet's dashboard: a page per section, rendered from the REST API (/api/v1) of the server
// that serves it. No framework and no build step: elements are made with `h`, which sets text,
// never HTML, so nothing the API returns is interpreted as markup.
'use strict';

const KEY = 'ratchet.key';
/** How often a page refreshes while the job feed is down (and for what the feed does not carry: nodes, workers, schedules). */
const REFRESH_MS = 5000;
const FALLBACK_MS = 30000;
/** The least time between two redraws the job feed asks for. */
const REDRAW_MS = 1000;
const PAGE = 50;

/** An element: `h('a', {href: '#/'}, 'text', child)`. Attributes starting with `on` are listeners. */
function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Calls the API with the session's key; a JSON body in, JSON out, or an ApiError. */
async function api(path, options = {}) {
  const response = await call(path, options);
  const text = await response.text();
  if (options.accept && response.ok) return text;
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || String(response.status), error.message || text || response.statusText, error.details);
  }
  return body;
}

/** The raw response of an API call with the session's key. */
function call(path, options = {}) {
  const headers = { accept: options.accept || 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
}

// ---- who is signed in ----

const ROLES = ['viewer', 'runner', 'admin'];
/** The caller (`/api/v1/me`) for the key in use, asked once per key. */
let caller = null;

async function whoAmI() {
  const key = sessionStorage.getItem(KEY) || '';
  if (!caller || caller.key !== key) caller = { key, ...(await api('/api/v1/me')) };
  return caller;
}

/** Whether the signed-in caller holds `role` (the server checks every call regardless). */
const may = (role) => caller !== null && ROLES.indexOf(caller.role) >= ROLES.indexOf(role);

function showCaller() {
  const box = document.getElementById('caller');
  if (!caller) { box.replaceChildren(); return; }
  const signOut = h('button', { class: 'secondary', onclick: () => {
    sessionStorage.removeItem(KEY);
    caller = null;
    render();
  } }, 'Sign out');
  box.replaceChildren(h('span', { class: 'muted' }, `${caller.id} (${caller.role || 'no role'})`),
    ...(sessionStorage.getItem(KEY) ? [signOut] : []));
}

const when = (text) => (text ? new Date(text).toLocaleString() : '');
const badge = (status) => h('span', { class: `badge s-${String(status).toLowerCase()}` }, status);
const json = (value) => h('pre', {}, JSON.stringify(value, null, 2));
const link = (href, text) => h('a', { href }, text);
/**
 * An id short enough for a table: its last 8 characters. Ids are UUID v7, whose first
 * characters are the time they were made (the same for every job of a minute); the last are random.
 */
const short = (id) => (id ? `…${String(id).slice(-8)}` : '');

function table(headings, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'scroll' },
    h('table', {},
      h('thead', {}, h('tr', {}, headings.map((heading) => h('th', { scope: 'col' }, heading)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) =>
        cell instanceof Node && cell.tagName === 'TD' ? cell : h('td', {}, cell)))))));
}

function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs.filter(([, value]) => value !== undefined && value !== null && value !== '')
    .flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

function errorBox(error) {
  const violations = error.details && error.details.violations;
  return h('div', { class: 'error', role: 'alert' },
    h('strong', {}, error.code ? `${error.code}: ` : ''), error.message,
    violations ? h('ul', {}, violations.map((v) => h('li', {}, `${v.pointer || '/'}: ${v.message}`))) : null);
}

/** The state in the hash: `#/jobs?status=failed` -> ['jobs'], {status: 'failed'}. */
function route() {
  const [path, query] = window.location.hash.replace(/^#/, '').split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
}

function goTo(parts, query) {
  const text = query && [...query].length ? `?${query}` : '';
  window.location.hash = `#/${parts.map(encodeURIComponent).join('/')}${text}`;
}

/** A time as a `datetime-local` field holds it (local time), and back to RFC 3339. */
const toLocalInput = (text) => {
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return '';
  return new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const fromLocalInput = (value) => (value ? new Date(value).toISOString() : '');

/** The choices of a list's time filter (`since`, a duration ago). */
const SINCE = [['15m', 'last 15 minutes'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']];

/**
 * Filters as a form: changing one updates the hash (and so the page). Each input is
 * [name, label, choices]: choices (values, or [value, label] pairs) make a select, 'time' a
 * date and time field, none a text field.
 */
function filters(parts, query, inputs) {
  const form = h('form', { class: 'filters', onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const element of form.elements) {
      if (!element.name || !element.value) continue;
      next.set(element.name, element.type === 'datetime-local' ? fromLocalInput(element.value) : element.value);
    }
    goTo(parts, next);
  } }, inputs.map(([name, label, options]) => {
    const id = `filter-${name}`;
    let control;
    if (options === 'time') {
      control = h('input', { id, name, type: 'datetime-local', value: query.get(name) ? toLocalInput(query.get(name)) : '', onchange: () => form.requestSubmit() });
    } else if (options) {
      const pairs = options.map((o) => (Array.isArray(o) ? o : [o, o]));
      const current = query.get(name);
      // A value the choices do not name (typed into the address) stays chosen.
      if (current && !pairs.some(([value]) => value === current)) pairs.push([current, current]);
      control = h('select', { id, name, onchange: () => form.requestSubmit() }, [['', name === 'since' ? 'any time' : 'any'], ...pairs].map(([value, text]) =>
        h('option', { value, selected: (current || '') === value }, text)));
    } else control = h('input', { id, name, value: query.get(name) || '', placeholder: 'any', size: 14 });
    return h('label', { for: id }, label, control);
  }),
  h('button', { type: 'submit' }, 'Filter'));
  return form;
}

function pager(parts, query, list) {
  const offset = Number(query.get('offset') || 0);
  const move = (to) => { const next = new URLSearchParams(query); next.set('offset', String(to)); goTo(parts, next); };
  return h('div', { class: 'pager' },
    h('button', { class: 'secondary', disabled: offset === 0, onclick: () => move(Math.max(0, offset - PAGE)) }, 'Newer'),
    `${list.items.length ? offset + 1 : 0}-${offset + list.items.length} of ${list.total}`,
    h('button', { class: 'secondary', disabled: list.next_offset === null || list.next_offset === undefined, onclick: () => move(list.next_offset) }, 'Older'));
}

function listQuery(query, names) {
  const out = new URLSearchParams({ limit: String(PAGE), offset: query.get('offset') || '0' });
  for (const name of names) if (query.get(name)) out.set(name, query.get(name));
  return out;
}

/**
 * A button that POSTs and re-renders, showing a refusal inline; none when the caller's role
 * (`needs`) does not allow the call.
 */
function action(label, path, needs, body, show) {
  if (!may(needs)) return null;
  const button = h('button', { onclick: async () => {
    button.disabled = true;
    try {
      const answer = await api(path, { method: 'POST', body: body || {} });
      if (show) {
        button.after(show(answer));
        button.disabled = false;
      } else await render();
    } catch (error) {
      button.after(errorBox(error));
      button.disabled = false;
    }
  } }, label);
  return button;
}


// ---- a form from a JSON Schema ----

/** JSON text with object keys sorted at every level, to compare two values. */
function canonical(value) {
  const sorted = (v) => (Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object'
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v);
  return JSON.stringify(sorted(value));
}

/** The type a property's schema names, `null` aside. */
function typeOf(schema) {
  return Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
}

/**
 * Fields for the top-level properties of an object schema: text, number, check box or choice
 * by type, JSON for nested values. `null` when the schema is not an object with properties.
 */
function schemaForm(schema) {
  if (!schema || typeOf(schema) !== 'object' || !schema.properties) return null;
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties).map(([name, property]) => {
    const id = `field-${name}`;
    const type = typeOf(property);
    const initial = property.default !== undefined ? property.default : (property.examples || [])[0];
    let control; let read; let write;
    if (Array.isArray(property.enum)) {
      control = h('select', { id, name }, ['', ...property.enum].map((option, i) =>
        h('option', { value: String(i), selected: i > 0 && option === initial }, i ? JSON.stringify(option).replace(/^"|"$/g, '') : '(none)')));
      read = () => (control.value === '' || control.value === '0' ? undefined : property.enum[Number(control.value) - 1]);
      write = (v) => { const i = property.enum.findIndex((option) => JSON.stringify(option) === JSON.stringify(v)); control.value = String(i + 1); };
    } else if (type === 'boolean') {
      control = h('input', { id, name, type: 'checkbox', checked: initial === true });
      read = () => control.checked;
      write = (v) => { control.checked = v === true; };
    } else if (type === 'integer' || type === 'number') {
      control = h('input', { id, name, type: 'number', step: type === 'integer' ? '1' : 'any', value: initial, min: property.minimum, max: property.maximum });
      read = () => (control.value === '' ? undefined : Number(control.value));
      write = (v) => { control.value = typeof v === 'number' ? String(v) : ''; };
    } else if (type === 'string') {
      control = h('input', { id, name, type: 'text', value: initial, placeholder: property.format || '' });
      read = () => (control.value === '' && !required.has(name) ? undefined : control.value);
      write = (v) => { control.value = v === undefined || v === null ? '' : String(v); };
    } else {
      control = h('textarea', { id, name, class: 'small', spellcheck: 'false' }, initial === undefined ? '' : JSON.stringify(initial, null, 2));
      write = (v) => { control.value = v === undefined ? '' : JSON.stringify(v, null, 2); };
      read = () => {
        if (control.value.trim() === '') return undefined;
        try { return JSON.parse(control.value); } catch (error) { throw new ApiError(0, 'invalid_json', `${name} is not JSON: ${error.message}`); }
      };
    }
    const message = h('span', { class: 'field-error', id: `${id}-error`, role: 'alert' });
    control.setAttribute('aria-describedby', `${id}-error`);
    const label = h('label', { for: id }, h('span', {}, name, required.has(name) ? ' *' : '', type ? h('span', { class: 'muted' }, ` ${type}`) : ''),
      control, property.description ? h('span', { class: 'hint' }, property.description) : null, message);
    return { name, label, read, write, message, control };
  });
  return {
    element: h('div', { class: 'schema-form' }, fields.map((field) => field.label)),
    /** The input the fields hold. */
    value() {
      const value = {};
      for (const field of fields) { const v = field.read(); if (v !== undefined) value[field.name] = v; }
      return value;
    },
    /** Puts `value`'s top-level properties in the fields (the others are emptied). */
    set(value) {
      for (const field of fields) field.write(value && typeof value === 'object' ? value[field.name] : undefined);
    },
    /** Shows each violation at its field; returns those that belong to none. */
    show(violations) {
      for (const field of fields) { field.message.textContent = ''; field.control.removeAttribute('aria-invalid'); }
      return (violations || []).filter((violation) => {
        const pointer = violation.pointer || violation.instance_path || '';
        const missing = /"([^"]+)" is a required property/.exec(violation.message || '');
        const name = missing ? missing[1] : decodeURIComponent(pointer.split('/')[1] || '').replace(/~1/g, '/').replace(/~0/g, '~');
        const field = fields.find((f) => f.name === name);
        if (!field) return true;
        field.message.textContent = violation.message;
        field.control.setAttribute('aria-invalid', 'true');
        return false;
      });
    },
  };
}

// ---- subscriptions: GraphQL over a WebSocket ----

/**
 * Subscribes to the GraphQL `query` over a WebSocket (the graphql-transport-ws protocol), the
 * key in its `connection_init` (a browser cannot give a WebSocket headers). A WebSocket, unlike
 * a streamed response, holds none of the six connections a browser keeps per HTTP/1.1 server,
 * so any number of dashboard tabs can stay open. `onData(data)` gets each result, `onOpen()`
 * says the server took the subscription's key, `onEnd()` that the subscription ended (refused,
 * completed or dropped). Returns what stops it (without calling `onEnd`).
 */
function subscribe(query, variables, { onData, onOpen, onEnd }) {
  let socket;
  try {
    socket = new WebSocket(`${window.location.protocol === 'https:' ? 'wss:' : 'ws:'}//${window.location.host}/graphql`, 'graphql-transport-ws');
  } catch (_) {
    setTimeout(onEnd, 0);
    return () => {};
  }
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    socket.close();
    onEnd();
  };
  const send = (message) => socket.send(JSON.stringify(message));
  socket.addEventListener('open', () => {
    const key = sessionStorage.getItem(KEY);
    send({ type: 'connection_init', payload: key ? { authorization: `Bearer ${key}` } : {} });
  });
  socket.addEventListener('message', (message) => {
    let m = null;
    try { m = JSON.parse(message.data); } catch (_) { return; }
    if (m.type === 'connection_ack') {
      send({ id: '1', type: 'subscribe', payload: { query, variables } });
      if (onOpen) onOpen();
    } else if (m.type === 'ping') send({ type: 'pong' });
    else if (m.type === 'next' && m.payload && m.payload.data) onData(m.payload.data);
    else if (m.type === 'next' || m.type === 'error' || m.type === 'complete') end();
  });
  socket.addEventListener('close', end);
  return () => { ended = true; socket.close(); };
}

// ---- live log lines ----

/** The job whose log lines are being followed, and the lines so far; survives re-renders. */
let follower = null;

function stopFollowing() {
  if (follower) follower.stop();
  follower = null;
}

const logLine = (line) => h('li', {}, badge(line.level), ' ', h('span', { class: 'mono' }, line.message));

/**
 * Follows the log lines of job `id`'s attempts (the `jobLogs` subscription): the running
 * attempt's as it writes them, on whichever node runs it, and earlier ones from the record.
 * Lines are kept in order within each attempt.
 */
function follow(id) {
  if (follower && follower.job === id) return follower;
  stopFollowing();
  const mine = { job: id, lines: [], stop: () => {} };
  follower = mine;
  mine.stop = subscribe('subscription ($id: String!) { jobLogs(id: $id) { executionId index level message } }', { id }, {
    onData: ({ jobLogs: line }) => {
      const at = mine.lines.findIndex((l) => l.executionId === line.executionId && l.index > line.index);
      const list = follower === mine ? document.getElementById('live-log') : null;
      if (at < 0) {
        mine.lines.push(line);
        if (list) list.append(logLine(line));
      } else {
        mine.lines.splice(at, 0, line);
        if (list) list.insertBefore(logLine(line), list.children[at] || null);
      }
    },
    onEnd: () => { /* the job ended, or the server went away: its executions keep every line */ },
  });
  return mine;
}

// ---- jobs as they change ----

/** The job feed (the `jobChanges` subscription) this tab follows, for the key it was opened with. */
let feed = null;

/** Whether a change concerns the page on screen. */
function concerns(change) {
  if (change.missed > 0) return true;
  const { parts } = route();
  switch (parts[0] || '') {
    case '': return true;
    case 'jobs': return !parts[1] || parts[1] === change.jobId;
    // An execution is recorded when its attempt ends.
    case 'executions': return !parts[1] && !['queued', 'running'].includes(change.status);
    default: return false;
  }
}

/** Redraws the page (as a refresh would) at most once per REDRAW_MS. */
let redraw = null;
function redrawSoon() {
  if (redraw) return;
  redraw = setTimeout(() => {
    redraw = null;
    // A render under way may have read the page before the change: draw it again after.
    if (rendering) redrawSoon(); else live('feed');
  }, REDRAW_MS);
}

/** Follows job changes with the session's key (again after a drop, every 5 s); pages redraw on the changes they show. */
function watchJobs() {
  const key = sessionStorage.getItem(KEY) || '';
  if (feed && feed.key === key) return;
  if (feed) feed.stop();
  const mine = { key, connected: false, stop: () => {} };
  feed = mine;
  mine.stop = subscribe('subscription { jobChanges { jobId status missed } }', {}, {
    onData: ({ jobChanges: change }) => { if (concerns(change)) redrawSoon(); },
    onOpen: () => {
      // Changes are pushed from now on; any made before are on the page drawn next.
      mine.connected = true;
      showStatus();
      redrawSoon();
    },
    onEnd: () => {
      if (feed !== mine) return;
      feed = null;
      showStatus();
      setTimeout(() => { if (!feed && caller) watchJobs(); }, REFRESH_MS);
    },
  });
}

/** The header's status: whether changes are pushed, and when the page was drawn. */
let drawnAt = null;
function showStatus() {
  const pushed = feed && feed.connected;
  document.getElementById('status').textContent = `${pushed ? 'live' : 'polling'}${drawnAt ? ` · updated ${drawnAt.toLocaleTimeString()}` : ''}`;
  document.getElementById('status').dataset.feed = pushed ? 'live' : 'polling';
}

// ---- pages ----

/** Runs and failures per bucket over the last hour, as bars. */
function chart(trends) {
  // The API lists only buckets that saw runs: lay them on the hour's twelve.
  const seen = new Map((trends.buckets || []).map((b) => [Math.floor(Date.parse(b.start) / 1000 / trends.bucket_secs), b]));
  const first = Math.floor(Date.parse(trends.since) / 1000 / trends.bucket_secs) + 1;
  const buckets = Array.from({ length: 12 }, (_, i) => seen.get(first + i)
    || { start: new Date((first + i) * trends.bucket_secs * 1000).toISOString(), runs: 0, failures: 0 });
  const most = Math.max(1, ...buckets.map((b) => b.runs));
  const width = 600; const height = 120; const step = width / Math.max(1, buckets.length);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const runs = buckets.reduce((sum, b) => sum + b.runs, 0);
  const failures = buckets.reduce((sum, b) => sum + b.failures, 0);
  svg.setAttribute('aria-label', `${runs} runs and ${failures} failures in the last hour`);
  buckets.forEach((bucket, i) => {
    for (const [value, kind] of [[bucket.runs, 'runs'], [bucket.failures, 'fails']]) {
      const bar = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      const tall = (value / most) * (height - 4);
      bar.setAttribute('x', String(i * step + 1));
      bar.setAttribute('y', String(height - tall));
      bar.setAttribute('width', String(Math.max(1, step - 2)));
      bar.setAttribute('height', String(tall));
      bar.setAttribute('class', kind);
      const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
      title.textContent = `${when(bucket.start)}: ${bucket.runs} runs, ${bucket.failures} failed`;
      bar.append(title);
      svg.append(bar);
    }
  });
  const rate = runs ? ((100 * failures) / runs).toFixed(1) : '0.0';
  return h('div', { class: 'chart' }, svg,
    h('div', { class: 'legend' }, `${runs} runs, ${failures} failed (${rate}%) in the last hour, per 5 minutes`));
}

async function overview() {
  const [queue, trends, nodes, workers, failures] = await Promise.all([
    api('/api/v1/queue'),
    api('/api/v1/logs/trends?since=1h&bucket=5m'),
    api('/api/v1/nodes'),
    api('/api/v1/workers'),
    api('/api/v1/executions?status=failure&limit=10'),
  ]);
  const states = ['queued', 'running', 'retrying', 'completed', 'failed', 'cancelled'];
  return [
    h('h1', {}, 'Overview'),
    h('h2', {}, 'Queue'),
    h('div', { class: 'cards' }, states.map((state) => h('a', { class: 'card', href: `#/jobs?status=${state}` },
      h('div', { class: 'n' }, String(queue.counts[state] || 0)), h('div', { class: 'label' }, state)))),
    queue.pauses.length ? h('p', { class: 'error' }, `Paused: ${queue.pauses.map((p) => p.task || 'the whole queue').join(', ')}`) : null,
    h('h2', {}, 'Runs'),
    chart(trends),
    h('div', { class: 'grid2' },
      h('section', {}, h('h2', {}, 'Nodes'), table(['node', 'host', 'status', 'version', 'heartbeat'],
        nodes.map((n) => [h('td', { class: 'mono' }, short(n.id)), n.hostname, badge(n.status), n.version, when(n.heartbeat_at)]))),
      h('section', {}, h('h2', {}, 'Workers'), table(['worker', 'node', 'state', 'runs', 'last error'],
        workers.map((w) => [w.id, short(w.node), badge(w.state), w.runs, h('td', { class: 'wrap' }, w.last_error || '')])))),
    h('h2', {}, 'Recent failures'),
    table(['execution', 'task', 'error', 'finished'], failures.items.map((e) => [
      link(`#/executions/${e.id}`, short(e.id)), link(`#/tasks/${e.task}`, e.task),
      h('td', { class: 'wrap' }, e.error ? `${e.error.kind}: ${e.error.message}` : ''), when(e.finished_at)]), 'No failed runs.'),
  ];
}

async function jobs(parts, query) {
  const list = await api(`/api/v1/jobs?${listQuery(query, ['status', 'task', 'since', 'until'])}`);
  return [
    h('h1', {}, 'Jobs'),
    filters(parts, query, [['status', 'State', ['queued', 'running', 'retrying', 'completed', 'failed', 'cancelled']], ['task', 'Task'],
      ['since', 'Created', SINCE], ['until', 'Created before', 'time']]),
    table(['job', 'task', 'state', 'attempt', 'priority', 'run at', 'updated'], list.items.map((j) => [
      link(`#/jobs/${j.id}`, short(j.id)), j.task, badge(j.status), `${j.attempt}/${j.max_attempts}`, j.priority,
      when(j.run_at), when(j.updated_at)]), 'No jobs match.'),
    pager(parts, query, list),
  ];
}

async function job(id) {
  const j = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
  if (j.status !== 'running' && follower && follower.job === j.id) stopFollowing();
  const open = ['queued', 'running', 'retrying'].includes(j.status);
  return [
    h('h1', {}, 'Job ', h('span', { class: 'mono' }, j.id)),
    h('div', { class: 'actions' },
      open ? action('Cancel', `/api/v1/jobs/${j.id}/cancel`, 'runner') : null,
      ['failed', 'cancelled'].includes(j.status) ? action('Retry', `/api/v1/jobs/${j.id}/retry`, 'runner', {}, (created) => {
        // A retry is a new job with the same task and input.
        goTo(['jobs', created.id]);
        return h('span', { role: 'status' }, `Queued again as job ${short(created.id)}`);
      }) : null,
      link(`#/executions?job_id=${j.id}`, 'Its executions')),
    fields([['task', link(`#/tasks/${j.task}`, j.task)], ['state', badge(j.status)], ['attempt', `${j.attempt} of ${j.max_attempts}`],
      ['priority', j.priority], ['run at', when(j.run_at)], ['created', when(j.created_at)], ['updated', when(j.updated_at)],
      ['held by', j.lease_owner], ['idempotency key', j.idempotency_key], ['concurrency key', j.concurrency_key],
      ['trace', j.trace_id], ['last error', j.last_error]]),
    j.status === 'running' ? [h('h2', {}, 'Live log'),
      h('ol', { id: 'live-log', class: 'log', 'aria-live': 'polite' }, follow(j.id).lines.map(logLine)),
      h('p', { class: 'muted' }, 'The lines of its attempts, the running one\'s as it writes them; each execution keeps them all.')] : null,
    h('h2', {}, 'Attempts'),
    table(['attempt', 'outcome', 'finished', 'error'], (j.attempts || []).map((a) => [a.attempt, badge(a.outcome), when(a.finished_at),
      h('td', { class: 'wrap' }, a.error || '')]), 'No attempt has finished yet.'),
    h('div', { class: 'grid2' }, h('section', {}, h('h2', {}, 'Input'), json(j.input)),
      h('section', {}, h('h2', {}, 'Output'), j.output === undefined || j.output === null ? h('p', { class: 'muted' }, 'None yet.') : json(j.output))),
  ];
}

async function executions(parts, query) {
  const list = await api(`/api/v1/executions?${listQuery(query, ['status', 'task', 'job_id', 'since', 'until'])}`);
  return [
    h('h1', {}, 'Executions'),
    filters(parts, query, [['status', 'Outcome', ['success', 'failure']], ['task', 'Task'], ['job_id', 'Job'],
      ['since', 'Started', SINCE], ['until', 'Started before', 'time']]),
    table(['execution', 'task', 'outcome', 'attempt', 'duration', 'started', 'node'], list.items.map((e) => [
      link(`#/executions/${e.id}`, short(e.id)), e.task, badge(e.status), e.attempt, `${Math.round(e.duration_ms)} ms`,
      when(e.started_at), short(e.node)]), 'No executions match.'),
    pager(parts, query, list),
  ];
}

function har(http) {
  const entries = (http && http.log && http.log.entries) || [];
  if (!entries.length) return h('p', { class: 'muted' }, 'The run made no HTTP calls.');
  return entries.map((entry) => {
    const request = entry.request || {}; const response = entry.response || {};
    const headers = (list) => table(['header', 'value'], (list || []).map((x) => [x.name, h('td', { class: 'wrap' }, x.value)]), 'No headers.');
    return h('details', {},
      h('summary', {}, h('span', { class: 'mono' }, `${request.method} ${request.url}`), ' ', badge(response.status), ` ${Math.round(entry.time || 0)} ms`),
      h('div', { class: 'grid2' },
        h('section', {}, h('h2', {}, 'Request'), headers(request.headers), request.postData ? h('pre', {}, request.postData.text || '') : null),
        h('section', {}, h('h2', {}, 'Response'), headers(response.headers), h('pre', {}, (response.content && response.content.text) || ''))));
  });
}

/** The failure report (what `ratchet explain` prints), fetched as Markdown when opened. */
function report(id) {
  const body = h('pre', { class: 'wrap' }, 'Loading...');
  const box = h('details', { id: 'failure-report', ontoggle: async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = 'yes';
    try { body.textContent = await api(`/api/v1/executions/${encodeURIComponent(id)}/report`, { accept: 'text/markdown' }); } catch (error) {
      body.replaceWith(errorBox(error));
    }
  } }, h('summary', {}, 'Failure report: the code around the failing line, the attempts, the cluster, prompts for an assistant'), body);
  return box;
}

async function execution(id) {
  const e = await api(`/api/v1/executions/${encodeURIComponent(id)}`);
  const error = e.error;
  return [
    h('h1', {}, 'Execution ', h('span', { class: 'mono' }, e.id)),
    h('div', { class: 'actions' }, action('Replay offline', `/api/v1/executions/${e.id}/replay`, 'runner', {}, (replay) => h('div', { class: 'replay', role: 'status' },
      badge(replay.matches ? 'success' : 'failure'),
      ` ${replay.matches ? 'The replay matches the recording' : `The replay differs: ${replay.difference || 'see its output'}`}`,
      ` (${replay.requests_replayed} HTTP calls answered from the recording, ${Math.round(replay.duration_ms)} ms)`))),
    fields([['task', link(`#/tasks/${e.task}`, e.task)], ['outcome', badge(e.status)], ['job', e.job_id ? link(`#/jobs/${e.job_id}`, e.job_id) : ''],
      ['attempt', e.attempt], ['started', when(e.started_at)], ['finished', when(e.finished_at)], ['duration', `${Math.round(e.duration_ms)} ms`],
      ['node', e.node], ['worker', e.worker], ['trace', e.trace_id]]),
    error ? [h('h2', {}, 'Error'), h('div', { class: 'error' }, h('strong', {}, `${error.kind}${error.name ? ` (${error.name})` : ''}: `), error.message),
      (error.classification || []).map((c) => h('details', { open: true, 'data-auto': true }, h('summary', {}, `${c.pattern} (${c.category}, ${Math.round(c.confidence * 100)}%, from ${c.plugin})`),
        h('ul', {}, (c.suggestions || []).map((s) => h('li', {}, s))))),
      error.stack ? h('details', {}, h('summary', {}, 'Stack'), h('pre', {}, error.stack)) : null,
      report(e.id)] : null,
    h('div', { class: 'grid2' }, h('section', {}, h('h2', {}, 'Input'), json(e.input)),
      h('section', {}, h('h2', {}, 'Output'), e.output === undefined || e.output === null ? h('p', { class: 'muted' }, 'None.') : json(e.output))),
    h('h2', {}, 'Logs'),
    table(['level', 'message'], (e.logs || []).map((l) => [badge(l.level), h('td', { class: 'wrap mono' }, l.message)]), 'The run logged nothing.'),
    h('h2', {}, 'HTTP calls'),
    har(e.http),
  ];
}

async function tasks(parts, query) {
  const list = await api(`/api/v1/tasks?${listQuery(query, ['q'])}`);
  return [
    h('h1', {}, 'Tasks'),
    filters(parts, query, [['q', 'Search']]),
    table(['task', 'version', 'description', 'tags', 'source'], list.items.map((t) => [
      link(`#/tasks/${t.name}`, t.name), t.version, h('td', { class: 'wrap' }, t.load_error ? h('span', { class: 'error' }, t.load_error) : t.description || ''),
      (t.tags || []).join(', '), t.source]), 'No tasks are loaded.'),
    pager(parts, query, list),
  ];
}

async function task(name) {
  const path = `/api/v1/tasks/${encodeURIComponent(name)}`;
  const [t, versions] = await Promise.all([api(path), api(`${path}/versions`)]);
  const form = may('runner') ? runForm(t) : null;
  return [
    h('h1', {}, t.name, ' ', h('span', { class: 'muted' }, t.version)),
    fields([['description', t.description], ['tags', (t.tags || []).join(', ')], ['source', t.source], ['digest', t.digest], ['load error', t.load_error]]),
    may('runner') ? [h('h2', {}, 'Run it'), form] : null,
    h('h2', {}, 'Tests'),
    table(['case', 'input', 'expects', ''], (t.tests || []).map((c) => [
      h('td', { class: 'wrap' }, c.name, c.description ? h('div', { class: 'muted' }, c.description) : null),
      h('td', { class: 'wrap mono' }, JSON.stringify(c.input)),
      h('td', { class: 'wrap mono' }, c.expects === 'output' ? JSON.stringify(c.expected_output) : c.expects),
      form ? h('button', { class: 'secondary', onclick: () => form.useInput(c.input) }, 'Use this input') : '']),
    'The task has no test cases (tests/*.json); `ratchet test` runs them.'),
    h('div', { class: 'grid2' }, h('section', {}, h('h2', {}, 'Input schema'), json(t.input_schema)),
      h('section', {}, h('h2', {}, 'Output schema'), json(t.output_schema))),
    h('h2', {}, 'Versions'),
    table(['version', 'digest', 'first seen', ''], versions.items.map((v) => [v.version, h('td', { class: 'mono' }, short(v.digest)),
      when(v.first_seen_at), v.digest === versions.serving ? badge('serving') : '']),
    'No node has recorded a version of this task yet.'),
    h('p', {}, link(`#/executions?task=${encodeURIComponent(t.name)}`, 'Its executions'), ' · ', link(`#/jobs?task=${encodeURIComponent(t.name)}`, 'its jobs')),
  ];
}

/** A form generated from the task's input schema (or a JSON text box) that runs it and shows the output or the violations. */
function runForm(t) {
  const generated = schemaForm(t.input_schema);
  const text = h('textarea', { id: 'run-input', name: 'input', spellcheck: 'false' }, '{}');
  const asJson = h('input', { id: 'run-as-json', type: 'checkbox', checked: !generated });
  const textBox = h('div', { hidden: Boolean(generated) }, h('label', { for: 'run-input' }, 'Input (JSON)'), text);
  asJson.addEventListener('change', () => {
    if (asJson.checked && generated) {
      try { text.value = JSON.stringify(generated.value(), null, 2); } catch (_) { /* keep the text */ }
    }
    textBox.hidden = !asJson.checked;
    if (generated) generated.element.hidden = asJson.checked;
  });
  const result = h('div', { id: 'run-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'run-form', onsubmit: async (event) => {
    event.preventDefault();
    result.replaceChildren(h('p', { class: 'muted' }, 'Running...'));
    let value;
    try {
      if (asJson.checked) {
        try { value = JSON.parse(text.value); } catch (error) { throw new ApiError(0, 'invalid_json', `The input is not JSON: ${error.message}`); }
      } else value = generated.value();
    } catch (error) { result.replaceChildren(errorBox(error)); return; }
    if (generated) generated.show([]);
    try {
      const done = await api(`/api/v1/tasks/${encodeURIComponent(t.name)}/run`, { method: 'POST', body: { input: value } });
      result.replaceChildren(h('p', {}, badge(done.status), ' ', done.id ? link(`#/executions/${done.id}`, 'the execution') : ''),
        done.error ? errorBox({ code: done.error.kind, message: done.error.message }) : h('div', { id: 'run-output' }, json(done.output)));
    } catch (error) {
      const violations = (error.details && error.details.violations) || [];
      const rest = generated && !asJson.checked ? generated.show(violations) : violations;
      result.replaceChildren(errorBox({ ...error, message: error.message, details: rest.length ? { violations: rest } : undefined }));
    }
  } },
  generated ? [generated.element, h('label', { class: 'inline', for: 'run-as-json' }, asJson, 'Edit the input as JSON')] : null,
  textBox,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Run')), result);
  /** Fills the form with `value` (a test case's input), ready to run. */
  form.useInput = (value) => {
    text.value = JSON.stringify(value, null, 2);
    if (generated) {
      generated.set(value);
      // An input the fields cannot hold as it is (a string where the schema wants a number,
      // say, as a case that expects a violation has) is run as JSON, unchanged.
      let held = null;
      try { held = generated.value(); } catch (_) { held = null; }
      const fits = canonical(held) === canonical(value);
      if (asJson.checked === fits) { asJson.checked = !fits; asJson.dispatchEvent(new Event('change')); }
      text.value = JSON.stringify(value, null, 2);
    }
    result.replaceChildren();
    form.scrollIntoView();
  };
  return form;
}

/** The form that adds a schedule, with the next fire times of the cron expression as it is typed. */
function scheduleForm(taskNames) {
  const task = h('select', { id: 'schedule-task', name: 'task', required: true }, taskNames.map((name) => h('option', { value: name }, name)));
  const name = h('input', { id: 'schedule-name', name: 'name', placeholder: 'the task\'s name' });
  const cron = h('input', { id: 'schedule-cron', name: 'cron', required: true, placeholder: '*/5 * * * *', class: 'mono' });
  const zone = h('input', { id: 'schedule-timezone', name: 'timezone', value: 'UTC' });
  const input = h('textarea', { id: 'schedule-input', name: 'input', class: 'small', spellcheck: 'false' }, '{}');
  const preview = h('div', { id: 'cron-preview', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Type a cron expression to see when it fires.'));
  const result = h('div', { 'aria-live': 'polite' });
  let pending = null;
  const showPreview = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (!cron.value.trim()) return;
      const query = new URLSearchParams({ cron: cron.value, timezone: zone.value || 'UTC', count: '5' });
      try {
        const next = await api(`/api/v1/cron/next?${query}`);
        preview.replaceChildren(h('p', { class: 'muted' }, 'Fires next at:'), h('ol', {}, next.fire_times.map((t) => h('li', {}, `${when(t)} (${t})`))));
      } catch (error) { preview.replaceChildren(errorBox(error)); }
    }, 250);
  };
  cron.addEventListener('input', showPreview);
  zone.addEventListener('input', showPreview);
  const form = h('form', { id: 'schedule-form', class: 'filters', onsubmit: async (event) => {
    event.preventDefault();
    let value;
    try { value = JSON.parse(input.value || '{}'); } catch (error) { result.replaceChildren(errorBox({ code: 'invalid_json', message: `The input is not JSON: ${error.message}` })); return; }
    try {
      await api('/api/v1/schedules', { method: 'POST', body: { task: task.value, name: name.value || undefined, cron: cron.value, timezone: zone.value || 'UTC', input: value } });
      await render();
    } catch (error) { result.replaceChildren(errorBox(error)); }
  } },
  h('label', { for: 'schedule-task' }, 'Task', task), h('label', { for: 'schedule-name' }, 'Name', name),
  h('label', { for: 'schedule-cron' }, 'Cron', cron), h('label', { for: 'schedule-timezone' }, 'Time zone', zone),
  h('label', { for: 'schedule-input', class: 'grow' }, 'Input (JSON)', input),
  h('button', { type: 'submit' }, 'Add the schedule'));
  return h('details', { id: 'add-schedule' }, h('summary', {}, 'Add a schedule'), form, preview, result);
}

async function schedules(parts, query) {
  const [list, taskList] = await Promise.all([api(`/api/v1/schedules?${listQuery(query, ['task'])}`),
    may('admin') ? api('/api/v1/tasks?limit=500') : null]);
  return [
    h('h1', {}, 'Schedules'),
    taskList ? scheduleForm(taskList.items.map((t) => t.name)) : null,
    filters(parts, query, [['task', 'Task']]),
    table(['schedule', 'task', 'cron', 'time zone', 'state', 'next fire', 'last fire', ''], list.items.map((s) => [
      s.name, link(`#/tasks/${s.task}`, s.task), h('td', { class: 'mono' }, s.cron), s.timezone, badge(s.enabled ? 'enabled' : 'paused'),
      when(s.next_fire_at), when(s.last_fire_at),
      s.enabled ? action('Pause', `/api/v1/schedules/${s.id}/pause`, 'admin') : action('Resume', `/api/v1/schedules/${s.id}/resume`, 'admin')]), 'No schedules.'),
    pager(parts, query, list),
  ];
}

async function plugins() {
  const list = await api('/api/v1/plugins');
  return [
    h('h1', {}, 'Plugins'),
    table(['name', 'kind', 'plugin', 'version', 'interface', 'granted', 'source'], list.map((p) => [
      p.name, p.kind, p.plugin, p.version, p.interface, (p.granted || []).join(', '), h('td', { class: 'mono' }, p.source)])),
  ];
}

function keyForm(error) {
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', required: true });
  // A key the server turned away is forgotten, and the reason shown.
  const refused = sessionStorage.getItem(KEY) !== null;
  sessionStorage.removeItem(KEY);
  return [
    h('h1', {}, 'Sign in'),
    h('p', {}, 'This server asks for an API key. It is kept for this browser tab only.'),
    refused || error.status === 403 ? errorBox(error) : null,
    h('form', { onsubmit: (event) => { event.preventDefault(); sessionStorage.setItem(KEY, input.value); render(); } },
      h('label', { for: 'api-key' }, 'API key'), input, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Use this key'))),
  ];
}

const PAGES = {
  '': overview,
  jobs: (parts, query) => (parts[1] ? job(parts[1]) : jobs(parts, query)),
  executions: (parts, query) => (parts[1] ? execution(parts[1]) : executions(parts, query)),
  tasks: (parts, query) => (parts[1] ? task(parts[1]) : tasks(parts, query)),
  schedules,
  plugins,
};

/** What identifies the focused element inside `main` across a redraw of the same page. */
function focusMark(main) {
  const element = document.activeElement;
  if (!element || element === main || !main.contains(element)) return null;
  return { tag: element.tagName, id: element.id, href: element.getAttribute('href'), text: element.textContent };
}

/** Puts the keyboard focus back on the element `mark` names, so a redraw never loses a keyboard user's place. */
function refocus(main, mark) {
  const same = [...main.querySelectorAll(mark.tag)].find((e) => (mark.id ? e.id === mark.id
    : e.getAttribute('href') === mark.href && e.textContent === mark.text));
  if (same) same.focus({ preventScroll: true });
}

let rendering = false;
/** Why another render was asked for while one ran (a click during a refresh, say); false when none was. */
let renderAgain = false;

/** Why the page was last drawn: 'navigation', 'action', 'feed' (a job change) or 'timer'. */
let drawnBy = 'navigation';

async function render(cause = 'action') {
  if (rendering) { renderAgain = cause; return; }
  drawnBy = cause;
  rendering = true;
  renderAgain = false;
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  const { parts, query } = route();
  const section = parts[0] || '';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const page = PAGES[section];
  try {
    await whoAmI();
    const content = page ? await page(parts, query) : [h('h1', {}, 'Not found'), h('p', {}, link('#/', 'Back to the overview'))];
    const focused = focusMark(main);
    main.replaceChildren(...[content].flat(2).filter(Boolean));
    if (focused) refocus(main, focused);
    drawnAt = new Date();
    watchJobs();
  } catch (error) {
    if (error.status === 401) caller = null;
    main.replaceChildren(...(error.status === 401 || (error.status === 403 && !caller) ? keyForm(error) : [h('h1', {}, 'Cannot load this page'), errorBox(error)]).filter(Boolean));
  } finally {
    showCaller();
    showStatus();
    rendering = false;
    if (renderAgain) render(renderAgain);
    else {
      main.removeAttribute('aria-busy');
      // Which page is drawn: what a test (or a script) waits for after navigating.
      main.dataset.shown = window.location.hash || '#/';
      main.dataset.drawnBy = drawnBy;
    }
  }
}

/**
 * Redraws the page unless it is hidden or someone is typing or reading a section they opened;
 * on a job change the page shows, and on a timer (every REFRESH_MS without the job feed,
 * FALLBACK_MS with it).
 */
function live(cause) {
  // A refresh never queues behind a render: one queued now would redraw the page after the
  // reader started typing in it.
  if (rendering) return;
  const busy = document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  const opened = document.querySelector('main details[open]:not([data-auto])');
  const signingIn = document.getElementById('api-key');
  // A task page holds the run form and its result, and an execution's record never changes:
  // neither is redrawn under its reader.
  const { parts } = route();
  const still = ['tasks', 'executions'].includes(parts[0]) && parts[1];
  if (document.visibilityState === 'visible' && !busy && !opened && !signingIn && !still) render(cause);
}

window.addEventListener('hashchange', () => {
  const { parts } = route();
  if (follower && !(parts[0] === 'jobs' && parts[1] === follower.job)) stopFollowing();
  render('navigation');
  document.getElementById('main').focus();
});
let lastTick = Date.now();
window.addEventListener('DOMContentLoaded', () => {
  render('navigation');
  setInterval(() => {
    const every = feed && feed.connected ? FALLBACK_MS : REFRESH_MS;
    if (Date.now() - lastTick < every) return;
    lastTick = Date.now();
    live('timer');
  }, REFRESH_MS);
});
