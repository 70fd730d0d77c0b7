// JSON API client: same-origin credentials, CSRF header on writes, typed errors.
// Every failure, including no network, becomes an ApiError with both languages.

export class ApiError extends Error {
  constructor({ status = 0, code = 'error', message = '', message_zh = '', details = null }) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.message_zh = message_zh || message;
    this.details = details && typeof details === 'object' ? details : {};
  }
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function networkError() {
  return new ApiError({
    code: 'network',
    message: 'Could not reach the server. Check your connection and try again.',
    message_zh: '网络连接失败，请检查网络后重试。',
  });
}

function timeoutError() {
  return new ApiError({
    code: 'timeout',
    message: 'The server took too long to answer. Please try again.',
    message_zh: '服务器响应超时，请稍后重试。',
  });
}

function httpError(status) {
  return new ApiError({
    status,
    code: `http_${status}`,
    message: `The server answered with an error (${status}). Please try again later.`,
    message_zh: `服务器返回错误（${status}），请稍后重试。`,
  });
}

export class Api {
  constructor(base) {
    this.base = base;
    this.csrf = '';
    this.headers = {}; // sent on every call (e.g. the investor page's X-Device-Id)
    this.onUnauthorized = null; // called with the ApiError of any 401
  }

  setHeader(name, value) {
    if (value) this.headers[name] = value;
    else delete this.headers[name];
  }

  setCsrf(token) {
    this.csrf = token || '';
  }

  async request(method, path, { json, body, contentType, timeoutMs = 30000 } = {}) {
    const headers = { ...this.headers, Accept: 'application/json' };
    let payload;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(json);
    } else if (body !== undefined) {
      headers['Content-Type'] = contentType || body.type || 'application/octet-stream';
      payload = body;
    }
    if (UNSAFE.has(method) && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: payload,
        credentials: 'same-origin',
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch {
      throw controller.signal.aborted ? timeoutError() : networkError();
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    if ((response.headers.get('Content-Type') || '').includes('application/json')) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const err = data && data.error ? new ApiError({ status: response.status, ...data.error })
        : httpError(response.status);
      if (response.status === 401 && this.onUnauthorized) this.onUnauthorized(err);
      throw err;
    }
    if (data === null) throw httpError(response.status);
    return data;
  }

  get(path, options) {
    return this.request('GET', path, options);
  }

  post(path, json = {}, options = {}) {
    return this.request('POST', path, { ...options, json });
  }

  put(path, json, options = {}) {
    return this.request('PUT', path, { ...options, json });
  }

  putBlob(path, blob, options = {}) {
    return this.request('PUT', path, { ...options, body: blob, contentType: blob.type });
  }

  del(path, options) {
    return this.request('DELETE', path, options);
  }
}
