// Refunds visible to Concord's `updatedAt` polling: Vendure 3.7's `refundOrder` saves a Refund
// (and its RefundLines) but never the Order row, so the order's `updatedAt` - the cursor Concord
// reads orders, payments and refunds by - would not move and a refund made in Vendure would never
// be read. This RefundProcess (`paymentOptions.refundProcess`, see
// @vendure/core/dist/config/refund/refund-process.d.ts) stamps the order's `updatedAt` when a
// refund is created (`RefundEvent`, published after the commit) and on every refund state change
// (`onTransitionEnd`: Pending -> Settled / Failed). It changes nothing else.
'use strict';
const { Logger, TransactionalConnection, EventBus, RefundEvent, Order } = require('@vendure/core');

const LOG = 'ConcordRefunds';
let connection;

async function touch(ctx, orderId) {
  try {
    await connection.getRepository(ctx, Order).update({ id: orderId }, { updatedAt: new Date() });
  } catch (e) {
    Logger.error(`could not stamp order ${orderId} after a refund: ${e.message}`, LOG);
  }
}

const concordRefundTouch = {
  init(injector) {
    connection = injector.get(TransactionalConnection);
    injector
      .get(EventBus)
      .ofType(RefundEvent)
      .subscribe(ev => touch(ev.ctx, ev.order.id));
  },
  async onTransitionEnd(fromState, toState, data) {
    await touch(data.ctx, data.order.id);
  },
};

module.exports = { concordRefundTouch };
