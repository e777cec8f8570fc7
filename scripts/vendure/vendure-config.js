// Vendure 3.7 config for Concord's integration tests: SQLite (better-sqlite3), Admin API
// /admin-api and Shop API /shop-api on 127.0.0.1, no admin UI, no assets, dummy payment handler,
// bearer sessions, and the order process that reserves through Concord (concord-reservations.js).
// Env (start.sh sets them): VENDURE_PORT, VENDURE_DIR (where vendure.sqlite lives),
// VENDURE_SUPERADMIN(_PASSWORD), CONCORD_URL / CONCORD_CHANNEL (see concord-reservations.js).
'use strict';
const path = require('path');
const {
  defaultOrderProcess,
  defaultRefundProcess,
  dummyPaymentHandler,
  DefaultLogger,
  LogLevel,
} = require('@vendure/core');
const { concordReservationProcess } = require('./concord-reservations');
const { concordRefundTouch } = require('./concord-refunds');

const dataDir = process.env.VENDURE_DIR || __dirname;

/** @type {import('@vendure/core').VendureConfig} */
const config = {
  apiOptions: {
    hostname: '127.0.0.1',
    port: Number(process.env.VENDURE_PORT || 3011),
    adminApiPath: 'admin-api',
    shopApiPath: 'shop-api',
    adminApiPlayground: false,
    shopApiPlayground: false,
  },
  authOptions: {
    tokenMethod: ['bearer', 'cookie'],
    superadminCredentials: {
      identifier: process.env.VENDURE_SUPERADMIN || 'superadmin',
      password: process.env.VENDURE_SUPERADMIN_PASSWORD || 'superadmin',
    },
    cookieOptions: { secret: process.env.VENDURE_COOKIE_SECRET || 'concord-test-cookie-secret' },
    requireVerification: false,
  },
  dbConnectionOptions: {
    type: 'better-sqlite3',
    database: path.join(dataDir, 'vendure.sqlite'),
    synchronize: true,
    logging: false,
  },
  orderOptions: { process: [defaultOrderProcess, concordReservationProcess] },
  paymentOptions: {
    paymentMethodHandlers: [dummyPaymentHandler],
    // Stamps the order's updatedAt on refunds, so Concord's polling reads them (concord-refunds.js).
    refundProcess: [defaultRefundProcess, concordRefundTouch],
  },
  logger: new DefaultLogger({ level: process.env.VENDURE_LOG_DEBUG ? LogLevel.Debug : LogLevel.Info }),
  plugins: [],
};

module.exports = { config };
