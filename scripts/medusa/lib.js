// Tiny REST client for the Medusa v2 Admin API (/admin, bearer JWT) and Store API
// (/store, x-publishable-api-key). Node >= 20 (global fetch).
'use strict';

const BASE = process.env.MEDUSA_URL || `http://127.0.0.1:${process.env.MEDUSA_PORT || 9011}`;

class Client {
  constructor(headers = {}) { this.headers = headers; }

  async request(method, path, body) {
    const headers = { accept: 'application/json', ...this.headers };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(BASE + path, {
      method, headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60000),
    });
    const text = await res.text();
    let json; try { json = text ? JSON.parse(text) : {}; } catch { json = { raw: text }; }
    if (!res.ok) {
      const err = new Error(`${method} ${path} -> HTTP ${res.status}: ${text.slice(0, 500)}`);
      err.status = res.status; err.body = json; throw err;
    }
    return json;
  }
  get(p) { return this.request('GET', p); }
  post(p, b = {}) { return this.request('POST', p, b); }
  del(p) { return this.request('DELETE', p); }
}

/** POST /auth/user/emailpass -> {token}; returns a Client sending Authorization: Bearer <token>. */
async function adminLogin() {
  const r = await new Client().post('/auth/user/emailpass', {
    email: process.env.MEDUSA_ADMIN_EMAIL || 'admin@example.com',
    password: process.env.MEDUSA_ADMIN_PASSWORD || 'supersecret',
  });
  return new Client({ authorization: `Bearer ${r.token}` });
}

function storeClient(publishableKey) {
  return new Client({ 'x-publishable-api-key': publishableKey });
}

/** query string from a flat object; arrays as k[]=v, nested one level as k[op]=v */
function qs(o) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) v.forEach((x) => p.append(`${k}[]`, x));
    else if (typeof v === 'object') for (const [op, x] of Object.entries(v)) p.append(`${k}[${op}]`, x);
    else p.append(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

module.exports = { Client, adminLogin, storeClient, qs, BASE };
