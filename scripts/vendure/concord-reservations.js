// Checkout through Concord's stock pool: a Vendure OrderProcess (Vendure 3.7,
// `orderOptions.process`, see @vendure/core/dist/config/order/order-process.d.ts) that
//   * before an order may move AddingItems -> ArrangingPayment, reserves its lines at the hub
//     (`POST $CONCORD_URL/v1/reservations`, key = "<order code>:<hash of its lines>", so a retried
//     transition finds the same reservation) and refuses the transition on 409 (short) or when the
//     hub cannot be reached (fail closed: a unit the hub did not hold is never sold);
//   * once the order is placed (ArrangingPayment -> PaymentAuthorized | PaymentSettled), commits
//     the reservation under the order code (`POST /v1/reservations/<id>/commit {"order": code}`).
// A cart sent back to AddingItems keeps its hold until the TTL (a new line set gets a new key).
// Env: CONCORD_URL (unset: the process does nothing), CONCORD_CHANNEL (the channel's endpoint name
// in Concord's config, default "vendure"), CONCORD_TIMEOUT_MS (default 5000), CONCORD_KEY (the
// hub's storefront key for this channel, a `[[commerce.keys]]` entry; sent as a bearer token when
// set — required once the hub has keys configured).
'use strict';
const crypto = require('crypto');
const { Logger, TransactionalConnection, OrderLine } = require('@vendure/core');

const LOG = 'ConcordReservations';
const held = new Map(); // order code -> reservation id (falls back to the idempotent re-POST)
let connection;

function settings() {
  const url = (process.env.CONCORD_URL || '').replace(/\/+$/, '');
  return {
    url,
    channel: process.env.CONCORD_CHANNEL || 'vendure',
    timeout: Number(process.env.CONCORD_TIMEOUT_MS || 5000),
    key: process.env.CONCORD_KEY || '',
  };
}

async function linesOf(ctx, order) {
  let lines = order.lines || [];
  if (!lines.length || lines.some(l => !l.productVariant || l.productVariant.sku === undefined)) {
    lines = await connection.getRepository(ctx, OrderLine).find({
      where: { order: { id: order.id } },
      relations: ['productVariant'],
    });
  }
  const qty = new Map();
  for (const l of lines) {
    if (!l.productVariant || !l.quantity) continue;
    const sku = l.productVariant.sku;
    qty.set(sku, (qty.get(sku) || 0) + l.quantity);
  }
  return [...qty.entries()].sort().map(([sku, quantity]) => ({ sku, quantity }));
}

function keyOf(order, lines) {
  const h = crypto.createHash('sha256').update(JSON.stringify(lines)).digest('hex').slice(0, 12);
  return `${order.code}:${h}`;
}

async function post(path, body) {
  const s = settings();
  const res = await fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: Object.assign(
      { 'content-type': 'application/json' },
      s.key ? { authorization: `Bearer ${s.key}` } : {},
    ),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(s.timeout),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, json, text };
}

async function reserve(ctx, order) {
  const s = settings();
  const lines = await linesOf(ctx, order);
  if (!lines.length) return undefined;
  let r;
  try {
    r = await post('/v1/reservations', { channel: s.channel, key: keyOf(order, lines), lines });
  } catch (e) {
    Logger.warn(`order ${order.code}: Concord unreachable (${e.message}); refusing checkout`, LOG);
    return 'Stock could not be confirmed right now; please try again.';
  }
  if (r.status === 200 || r.status === 201) {
    if (r.json && r.json.id) held.set(order.code, r.json.id);
    if (r.json && r.json.state && !['held', 'committed'].includes(r.json.state)) {
      return `Stock reservation is ${r.json.state}; please review the cart.`;
    }
    return undefined;
  }
  if (r.status === 409) {
    const short = (r.json && r.json.short) || [];
    const what = short.map(x => `${x.sku}: ${x.available} available, ${x.requested} requested`).join('; ');
    Logger.info(`order ${order.code}: insufficient stock at the hub (${what})`, LOG);
    return `Insufficient stock: ${what || 'not enough units'}`;
  }
  Logger.warn(`order ${order.code}: Concord answered ${r.status}: ${r.text.slice(0, 300)}`, LOG);
  return `Stock could not be confirmed (hub answered ${r.status}).`;
}

async function commit(ctx, order) {
  const s = settings();
  try {
    let id = held.get(order.code);
    if (!id) {
      const lines = await linesOf(ctx, order);
      const r = await post('/v1/reservations', { channel: s.channel, key: keyOf(order, lines), lines });
      id = r.json && r.json.id;
    }
    if (!id) throw new Error('no reservation to commit');
    const r = await post(`/v1/reservations/${encodeURIComponent(id)}/commit`, { order: order.code });
    if (r.status !== 200) throw new Error(`hub answered ${r.status}: ${r.text.slice(0, 300)}`);
    held.delete(order.code);
  } catch (e) {
    // The order is placed already; the hold stays until its TTL and the ERP's figures take over.
    Logger.error(`order ${order.code}: committing its reservation failed: ${e.message}`, LOG);
  }
}

/** @type {import('@vendure/core').OrderProcess<any>} */
const concordReservationProcess = {
  init(injector) {
    connection = injector.get(TransactionalConnection);
  },
  async onTransitionStart(fromState, toState, { ctx, order }) {
    if (!settings().url) return undefined;
    if (fromState === 'AddingItems' && toState === 'ArrangingPayment') {
      return reserve(ctx, order);
    }
    return undefined;
  },
  async onTransitionEnd(fromState, toState, { ctx, order }) {
    if (!settings().url) return;
    if (fromState === 'ArrangingPayment' && (toState === 'PaymentAuthorized' || toState === 'PaymentSettled')) {
      await commit(ctx, order);
    }
  },
};

module.exports = { concordReservationProcess };
