// Starts Vendure (server + in-memory job queue in one process). Run by start.sh.
'use strict';
const { bootstrap, JobQueueService } = require('@vendure/core');
const { config } = require('./vendure-config');

bootstrap(config)
  .then(app => app.get(JobQueueService).start())
  .then(() => console.log(`[vendure] ready on http://127.0.0.1:${config.apiOptions.port}`))
  .catch(err => {
    console.error(err);
    process.exit(1);
  });
