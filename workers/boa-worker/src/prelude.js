// The globals every task sees, installed into a fresh realm before the task's code runs.
// Evaluates to a function of the host bridge; it returns the controller the worker drives
// (timers). Neither the bridge nor the controller is reachable from task code.
(function (host) {
  'use strict';
  const now = Date.now;
  const stringify = JSON.stringify;
  const MAX_DEPTH = 100;

  // Boa's JSON.stringify recurses natively: measure depth first, without recursion.
  const depthWithin = (root, limit) => {
    const seen = new Set();
    const stack = [[root, 0]];
    while (stack.length > 0) {
      const [value, depth] = stack.pop();
      if (value === null || typeof value !== 'object' || seen.has(value)) continue;
      if (depth >= limit) return false;
      seen.add(value);
      for (const key of Object.keys(value)) stack.push([value[key], depth + 1]);
    }
    return true;
  };
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, {
      value,
      writable: true,
      configurable: true,
      enumerable: false,
    });

  // Typed errors a task throws to classify its failure.
  for (const name of [
    'NetworkError', 'HttpError', 'DataError', 'ValidationError', 'AuthenticationError',
    'AuthorizationError', 'RateLimitError', 'ConfigurationError', 'ServiceUnavailableError',
    'NotFoundError', 'TimeoutError',
  ]) {
    const ErrorClass = class extends Error {};
    Object.defineProperty(ErrorClass, 'name', { value: name });
    Object.defineProperty(ErrorClass.prototype, 'name', {
      value: name, writable: true, configurable: true, enumerable: false,
    });
    define(name, ErrorClass);
  }

  // console.* becomes Log frames.
  const show = (value) => {
    if (typeof value === 'string') return value;
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    if (!depthWithin(value, MAX_DEPTH)) return `[object nested deeper than ${MAX_DEPTH} levels]`;
    try {
      const json = stringify(value);
      return json === undefined ? String(value) : json;
    } catch (_) {
      return String(value);
    }
  };
  const logger = (level) => (...args) => host.log(level, args.map(show).join(' '));
  define('console', Object.freeze({
    log: logger('info'),
    info: logger('info'),
    debug: logger('debug'),
    warn: logger('warn'),
    error: logger('error'),
  }));

  // Timers, driven by the worker's event loop through the controller below.
  const timers = new Map();
  let nextTimerId = 1;
  define('setTimeout', function setTimeout(callback, delay, ...args) {
    if (typeof callback !== 'function') {
      throw new TypeError('setTimeout expects a function as its first argument');
    }
    const id = nextTimerId++;
    timers.set(id, { callback, args, due: now() + Math.max(0, Number(delay) || 0) });
    return id;
  });
  define('clearTimeout', function clearTimeout(id) {
    timers.delete(id);
  });

  // fetch: performed by the kernel. Usable synchronously (the original Ratchet's style) and as
  // a promise (`await fetch(url)`, `fetch(url).then(r => r.json())`).
  const makeHeaders = (pairs) => {
    const headers = {};
    for (const [name, value] of pairs) headers[name.toLowerCase()] = value;
    Object.defineProperty(headers, 'get', {
      value: (name) => {
        const value = headers[String(name).toLowerCase()];
        return value === undefined ? null : value;
      },
      enumerable: false,
    });
    return headers;
  };
  const parseBody = (text) => {
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  };
  define('fetch', function fetch(url, init, body) {
    const options = init || {};
    const headerPairs = Object.entries(options.headers || {}).map(([k, v]) => [k, String(v)]);
    let payload = body !== undefined ? body : options.body;
    if (payload !== undefined && payload !== null && typeof payload !== 'string') {
      payload = JSON.stringify(payload);
    }
    const reply = host.fetch(
      String(options.method || 'GET').toUpperCase(),
      String(url),
      headerPairs,
      payload === undefined ? null : payload,
    );
    if (reply.error) {
      const ErrorClass = globalThis[reply.error.name] || Error;
      throw new ErrorClass(reply.error.message);
    }
    const response = {
      ok: reply.status >= 200 && reply.status < 300,
      status: reply.status,
      statusText: reply.statusText,
      url: String(url),
      headers: makeHeaders(reply.headers),
      body: parseBody(reply.body),
    };
    Object.defineProperties(response, {
      text: { value: () => Promise.resolve(reply.body) },
      json: { value: () => new Promise((resolve) => resolve(JSON.parse(reply.body))) },
    });
    const settled = Promise.resolve(Object.freeze({ ...response, text: response.text, json: response.json }));
    Object.defineProperty(response, 'then', {
      value: (onFulfilled, onRejected) => settled.then(onFulfilled, onRejected),
    });
    return response;
  });

  return {
    // The task's result as JSON text (undefined for undefined), with JSON semantics.
    serialize(value) {
      if (!depthWithin(value, MAX_DEPTH)) {
        throw new DataError(`the task's output nests deeper than ${MAX_DEPTH} levels`);
      }
      return stringify(value);
    },
    // Runs the earliest due timer and returns 0, or returns the milliseconds until the next
    // one, or -1 when no timer is left.
    tick() {
      let earliest = null;
      for (const [id, timer] of timers) {
        if (earliest === null || timer.due < earliest[1].due) earliest = [id, timer];
      }
      if (earliest === null) return -1;
      const [id, timer] = earliest;
      const wait = timer.due - now();
      if (wait > 0) return wait;
      timers.delete(id);
      timer.callback(...timer.args);
      return 0;
    },
  };
})
