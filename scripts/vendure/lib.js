// Tiny GraphQL client for the Vendure Admin/Shop APIs (Node >= 20, global fetch).
'use strict';

const BASE = process.env.VENDURE_URL || `http://127.0.0.1:${process.env.VENDURE_PORT || 3011}`;

class Client {
  /** @param {'admin-api'|'shop-api'} api */
  constructor(api) {
    this.url = `${BASE}/${api}`;
    this.token = null; // session token: `vendure-auth-token` response header -> Bearer
  }

  async request(query, variables = {}) {
    const headers = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const res = await fetch(this.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(30000),
    });
    const tok = res.headers.get('vendure-auth-token');
    if (tok) this.token = tok;
    const body = await res.json();
    if (body.errors) {
      throw new Error(`GraphQL error from ${this.url}: ${JSON.stringify(body.errors)}`);
    }
    return body.data;
  }

  /** Fails on a union ErrorResult (objects with errorCode). */
  static ok(result, what) {
    if (result && result.errorCode) {
      throw new Error(`${what}: ${result.errorCode}: ${result.message}`);
    }
    return result;
  }
}

async function adminLogin() {
  const admin = new Client('admin-api');
  const r = await admin.request(
    `mutation($u:String!,$p:String!){ login(username:$u,password:$p){
       __typename ... on CurrentUser { id identifier } ... on ErrorResult { errorCode message } } }`,
    {
      u: process.env.VENDURE_SUPERADMIN || 'superadmin',
      p: process.env.VENDURE_SUPERADMIN_PASSWORD || 'superadmin',
    },
  );
  Client.ok(r.login, 'login');
  return admin;
}

module.exports = { Client, adminLogin, BASE };
