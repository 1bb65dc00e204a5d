// http-status-patterns: recognises failed runs whose error names an HTTP status the task got
// back (429, 404, 502/503/504) and says what to do about each. Written in JavaScript against
// Ratchet's WIT; it needs no capability and reads no configuration.

const PATTERNS = [
  {
    pattern: 'rate-limited',
    category: 'network',
    match: /\b429\b|too many requests|rate[- ]?limit/i,
    confidence: 0.9,
    suggestions: [
      'The service is limiting this client: space the requests out, or lower the queue concurrency for this task',
      "Retry the job later with backoff; honour the service's Retry-After header when it sends one",
    ],
  },
  {
    pattern: 'upstream-unavailable',
    category: 'network',
    match: /\b50[234]\b|bad gateway|service unavailable|gateway time-?out/i,
    confidence: 0.8,
    suggestions: [
      'The service or a proxy in front of it is down or overloaded: retry the job with backoff',
      "Check the service's status page before changing the task",
    ],
  },
  {
    pattern: 'not-found',
    category: 'network',
    match: /\b404\b|not found/i,
    confidence: 0.6,
    suggestions: ['Check the URL the task builds: the path or the id in it does not exist'],
  },
];

export const errorPattern = {
  describe() {
    return {
      name: 'http-status-patterns',
      version: '0.1.0',
      description: 'recognises failures caused by HTTP 429, 404 and 502-504 answers',
      capabilities: [],
    };
  },

  classify(failure) {
    const text = `${failure.name ?? ''}: ${failure.message}`;
    return PATTERNS.filter((p) => p.match.test(text)).map(({ pattern, category, confidence, suggestions }) => ({
      pattern,
      category,
      confidence,
      suggestions,
    }));
  },
};
