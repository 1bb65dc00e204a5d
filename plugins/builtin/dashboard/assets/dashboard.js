// Ratchet's dashboard: a page per section, rendered from the REST API (/api/v1) of the server
// that serves it. No framework and no build step: elements are made with `h`, which sets text,
// never HTML, so nothing the API returns is interpreted as markup.
'use strict';

const KEY = 'ratchet.key';
const REFRESH_MS = 5000;
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
  const headers = { accept: 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || String(response.status), error.message || text || response.statusText, error.details);
  }
  return body;
}

const when = (text) => (text ? new Date(text).toLocaleString() : '');
const badge = (status) => h('span', { class: `badge s-${String(status).toLowerCase()}` }, status);
const json = (value) => h('pre', {}, JSON.stringify(value, null, 2));
const link = (href, text) => h('a', { href }, text);
const short = (id) => (id ? String(id).slice(0, 8) : '');

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

/** Filters as a form: changing one updates the hash (and so the page). */
function filters(parts, query, inputs) {
  const form = h('form', { class: 'filters', onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const element of form.elements) if (element.name && element.value) next.set(element.name, element.value);
    goTo(parts, next);
  } }, inputs.map(([name, label, options]) => h('label', {}, label, options
    ? h('select', { name, onchange: () => form.requestSubmit() }, ['', ...options].map((option) =>
      h('option', { value: option, selected: query.get(name) === option }, option || 'any')))
    : h('input', { name, value: query.get(name) || '', placeholder: 'any', size: 14 }))),
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

/** A button that POSTs and re-renders, showing the refusal (a viewer's 403, say) inline. */
function action(label, path, body) {
  const button = h('button', { onclick: async () => {
    button.disabled = true;
    try { await api(path, { method: 'POST', body: body || {} }); await render(); } catch (error) {
      button.after(errorBox(error));
      button.disabled = false;
    }
  } }, label);
  return button;
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
  const list = await api(`/api/v1/jobs?${listQuery(query, ['status', 'task'])}`);
  return [
    h('h1', {}, 'Jobs'),
    filters(parts, query, [['status', 'State', ['queued', 'running', 'retrying', 'completed', 'failed', 'cancelled']], ['task', 'Task']]),
    table(['job', 'task', 'state', 'attempt', 'priority', 'run at', 'updated'], list.items.map((j) => [
      link(`#/jobs/${j.id}`, short(j.id)), j.task, badge(j.status), `${j.attempt}/${j.max_attempts}`, j.priority,
      when(j.run_at), when(j.updated_at)]), 'No jobs match.'),
    pager(parts, query, list),
  ];
}

async function job(id) {
  const j = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
  const open = ['queued', 'running', 'retrying'].includes(j.status);
  return [
    h('h1', {}, 'Job ', h('span', { class: 'mono' }, j.id)),
    h('div', { class: 'actions' },
      open ? action('Cancel', `/api/v1/jobs/${j.id}/cancel`) : null,
      ['failed', 'cancelled'].includes(j.status) ? action('Retry', `/api/v1/jobs/${j.id}/retry`) : null,
      link(`#/executions?job_id=${j.id}`, 'Its executions')),
    fields([['task', link(`#/tasks/${j.task}`, j.task)], ['state', badge(j.status)], ['attempt', `${j.attempt} of ${j.max_attempts}`],
      ['priority', j.priority], ['run at', when(j.run_at)], ['created', when(j.created_at)], ['updated', when(j.updated_at)],
      ['held by', j.lease_owner], ['idempotency key', j.idempotency_key], ['concurrency key', j.concurrency_key],
      ['trace', j.trace_id], ['last error', j.last_error]]),
    h('h2', {}, 'Attempts'),
    table(['attempt', 'outcome', 'finished', 'error'], (j.attempts || []).map((a) => [a.attempt, badge(a.outcome), when(a.finished_at),
      h('td', { class: 'wrap' }, a.error || '')]), 'No attempt has finished yet.'),
    h('div', { class: 'grid2' }, h('section', {}, h('h2', {}, 'Input'), json(j.input)),
      h('section', {}, h('h2', {}, 'Output'), j.output === undefined || j.output === null ? h('p', { class: 'muted' }, 'None yet.') : json(j.output))),
  ];
}

async function executions(parts, query) {
  const list = await api(`/api/v1/executions?${listQuery(query, ['status', 'task', 'job_id'])}`);
  return [
    h('h1', {}, 'Executions'),
    filters(parts, query, [['status', 'Outcome', ['success', 'failure']], ['task', 'Task'], ['job_id', 'Job']]),
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

async function execution(id) {
  const e = await api(`/api/v1/executions/${encodeURIComponent(id)}`);
  const error = e.error;
  return [
    h('h1', {}, 'Execution ', h('span', { class: 'mono' }, e.id)),
    h('div', { class: 'actions' }, action('Replay offline', `/api/v1/executions/${e.id}/replay`)),
    fields([['task', link(`#/tasks/${e.task}`, e.task)], ['outcome', badge(e.status)], ['job', e.job_id ? link(`#/jobs/${e.job_id}`, e.job_id) : ''],
      ['attempt', e.attempt], ['started', when(e.started_at)], ['finished', when(e.finished_at)], ['duration', `${Math.round(e.duration_ms)} ms`],
      ['node', e.node], ['worker', e.worker], ['trace', e.trace_id]]),
    error ? [h('h2', {}, 'Error'), h('div', { class: 'error' }, h('strong', {}, `${error.kind}${error.name ? ` (${error.name})` : ''}: `), error.message),
      (error.classification || []).map((c) => h('details', { open: true, 'data-auto': true }, h('summary', {}, `${c.pattern} (${c.category}, ${Math.round(c.confidence * 100)}%, from ${c.plugin})`),
        h('ul', {}, (c.suggestions || []).map((s) => h('li', {}, s))))),
      error.stack ? h('details', {}, h('summary', {}, 'Stack'), h('pre', {}, error.stack)) : null] : null,
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
  const t = await api(`/api/v1/tasks/${encodeURIComponent(name)}`);
  const input = h('textarea', { id: 'run-input', name: 'input', spellcheck: 'false' }, '{}');
  const result = h('div', { 'aria-live': 'polite' });
  const run = h('form', { onsubmit: async (event) => {
    event.preventDefault();
    result.replaceChildren(h('p', { class: 'muted' }, 'Running...'));
    let value;
    try { value = JSON.parse(input.value); } catch (error) {
      result.replaceChildren(errorBox({ code: 'invalid_json', message: `The input is not JSON: ${error.message}` }));
      return;
    }
    try {
      const done = await api(`/api/v1/tasks/${encodeURIComponent(t.name)}/run`, { method: 'POST', body: { input: value } });
      result.replaceChildren(h('p', {}, badge(done.status), ' ', done.id ? link(`#/executions/${done.id}`, 'the execution') : ''),
        done.error ? errorBox({ code: done.error.kind, message: done.error.message, details: done.error }) : json(done.output));
    } catch (error) { result.replaceChildren(errorBox(error)); }
  } }, h('label', { for: 'run-input' }, 'Input (JSON, checked against the input schema)'), input,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Run')), result);
  return [
    h('h1', {}, t.name, ' ', h('span', { class: 'muted' }, t.version)),
    fields([['description', t.description], ['tags', (t.tags || []).join(', ')], ['source', t.source], ['digest', t.digest], ['load error', t.load_error]]),
    h('h2', {}, 'Run it'), run,
    h('div', { class: 'grid2' }, h('section', {}, h('h2', {}, 'Input schema'), json(t.input_schema)),
      h('section', {}, h('h2', {}, 'Output schema'), json(t.output_schema))),
    h('p', {}, link(`#/executions?task=${encodeURIComponent(t.name)}`, 'Its executions'), ' · ', link(`#/jobs?task=${encodeURIComponent(t.name)}`, 'its jobs')),
  ];
}

async function schedules(parts, query) {
  const list = await api(`/api/v1/schedules?${listQuery(query, ['task'])}`);
  return [
    h('h1', {}, 'Schedules'),
    filters(parts, query, [['task', 'Task']]),
    table(['schedule', 'task', 'cron', 'time zone', 'state', 'next fire', 'last fire', ''], list.items.map((s) => [
      s.name, link(`#/tasks/${s.task}`, s.task), h('td', { class: 'mono' }, s.cron), s.timezone, badge(s.enabled ? 'enabled' : 'paused'),
      when(s.next_fire_at), when(s.last_fire_at),
      s.enabled ? action('Pause', `/api/v1/schedules/${s.id}/pause`) : action('Resume', `/api/v1/schedules/${s.id}/resume`)]), 'No schedules.'),
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
  return [
    h('h1', {}, 'Sign in'),
    error.status === 403 ? errorBox(error) : h('p', {}, 'This server asks for an API key. It is kept for this browser tab only.'),
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

let rendering = false;

async function render() {
  if (rendering) return;
  rendering = true;
  const main = document.getElementById('main');
  const { parts, query } = route();
  const section = parts[0] || '';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const page = PAGES[section];
  try {
    const content = page ? await page(parts, query) : [h('h1', {}, 'Not found'), h('p', {}, link('#/', 'Back to the overview'))];
    main.replaceChildren(...[content].flat(2).filter(Boolean));
    document.getElementById('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    main.replaceChildren(...(error.status === 401 || error.status === 403 ? keyForm(error) : [h('h1', {}, 'Cannot load this page'), errorBox(error)]));
  } finally {
    rendering = false;
  }
}

/** Pages refresh while visible, unless someone is typing or reading a section they opened. */
function live() {
  const busy = document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  const opened = document.querySelector('main details[open]:not([data-auto])');
  const signingIn = document.getElementById('api-key');
  if (document.visibilityState === 'visible' && !busy && !opened && !signingIn) render();
}

window.addEventListener('hashchange', () => { render(); document.getElementById('main').focus(); });
window.addEventListener('DOMContentLoaded', () => { render(); setInterval(live, REFRESH_MS); });
