// `fetch`, built on the first call in a run. Usable synchronously (the original Ratchet's
// style: `fetch(url, {method, headers}, body).body`) and as a promise (`await fetch(url)`,
// `fetch(url).then(r => r.json())`). `hostFetch` asks the kernel, which performs the request.
(function (hostFetch) {
  'use strict';
  const makeHeaders = (pairs) => {
    const headers = {};
    for (const [name, value] of pairs) headers[name.toLowerCase()] = value;
    Object.defineProperty(headers, 'get', {
      value: (name) => {
        const value = headers[String(name).toLowerCase()];
        return value === undefined ? null : value;
      },
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
  return function fetch(url, init, body) {
    const options = init || {};
    const headerPairs = Object.entries(options.headers || {}).map(([k, v]) => [k, String(v)]);
    let payload = body !== undefined ? body : options.body;
    if (payload !== undefined && payload !== null && typeof payload !== 'string') {
      payload = JSON.stringify(payload);
    }
    const reply = hostFetch(
      String(options.method || 'GET').toUpperCase(),
      String(url),
      headerPairs,
      payload === undefined ? null : payload,
    );
    if (reply.error) {
      const ErrorClass = globalThis[reply.error.name] || Error;
      throw new ErrorClass(reply.error.message);
    }
    const methods = {
      text: { value: () => Promise.resolve(reply.body) },
      json: { value: () => new Promise((resolve) => resolve(JSON.parse(reply.body))) },
    };
    const response = Object.defineProperties({
      ok: reply.status >= 200 && reply.status < 300,
      status: reply.status,
      statusText: reply.statusText,
      url: String(url),
      headers: makeHeaders(reply.headers),
      body: parseBody(reply.body),
    }, methods);
    // A thenable for `await` and `.then`, settling to a copy that is not itself thenable.
    const settled = Promise.resolve(Object.defineProperties({ ...response }, methods));
    return Object.defineProperty(response, 'then', {
      value: (onFulfilled, onRejected) => settled.then(onFulfilled, onRejected),
    });
  };
})
