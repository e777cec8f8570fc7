#!/usr/bin/env node
// Seed the project's Medusa for Concord's integration tests, over the Admin REST API
// (idempotent): store currency usd (default), sales channel "Concord Webshop", region "US"
// (usd, country us, payment provider pp_system_default), tax region us, stock locations "WH"
// and "WH2" (the codes of the test Tryton's warehouses; fulfillment provider manual_manual,
// a fulfillment set with a US service zone and a flat "Standard" shipping option, linked to
// the sales channel), a publishable API key for the Store API. No products: the hub creates
// them from the ERP (examples/tryton-medusa.toml).
// Prints a JSON summary (ids and the publishable key) on stdout.
//   node scripts/medusa/seed.js
// Env: MEDUSA_URL (default http://127.0.0.1:$MEDUSA_PORT), MEDUSA_ADMIN_EMAIL / _PASSWORD.
'use strict';
const { adminLogin, qs } = require('./lib');

const SC_NAME = 'Concord Webshop';
const LOCATIONS = ['WH', 'WH2'];

async function main() {
  const a = await adminLogin();
  const created = [];

  let { stores: [store] } = await a.get('/admin/stores');
  if (!store.supported_currencies.some((c) => c.currency_code === 'usd' && c.is_default)) {
    ({ store } = await a.post(`/admin/stores/${store.id}`, {
      supported_currencies: [{ currency_code: 'usd', is_default: true }, { currency_code: 'eur' }],
    }));
    created.push('store currencies');
  }

  let sc = (await a.get(`/admin/sales-channels${qs({ name: SC_NAME })}`)).sales_channels[0];
  if (!sc) {
    ({ sales_channel: sc } = await a.post('/admin/sales-channels', { name: SC_NAME, description: 'Concord integration tests' }));
    created.push('sales channel');
  }

  let region = (await a.get('/admin/regions?limit=100')).regions.find((r) => r.name === 'US');
  if (!region) {
    ({ region } = await a.post('/admin/regions', {
      name: 'US', currency_code: 'usd', countries: ['us'], payment_providers: ['pp_system_default'],
      automatic_taxes: true,
    }));
    created.push('region');
  }
  const taxRegions = (await a.get(`/admin/tax-regions${qs({ country_code: 'us' })}`)).tax_regions;
  if (!taxRegions.some((t) => !t.province_code)) {
    await a.post('/admin/tax-regions', { country_code: 'us', provider_id: 'tp_system' });
    created.push('tax region');
  }

  const profile = (await a.get(`/admin/shipping-profiles${qs({ type: 'default' })}`)).shipping_profiles[0];

  const locFields = qs({ fields: '*fulfillment_sets,*fulfillment_sets.service_zones,*sales_channels,*fulfillment_providers' });
  const locations = {};
  for (const name of LOCATIONS) {
    let loc = (await a.get(`/admin/stock-locations${qs({ name })}`)).stock_locations[0];
    if (!loc) {
      ({ stock_location: loc } = await a.post('/admin/stock-locations', {
        name, address: { address_1: '1 Depot Road', city: 'Springfield', country_code: 'US', postal_code: '12345' },
      }));
      created.push(`stock location ${name}`);
    }
    loc = (await a.get(`/admin/stock-locations/${loc.id}${locFields}`)).stock_location;
    if (!(loc.fulfillment_providers || []).some((p) => p.id === 'manual_manual')) {
      await a.post(`/admin/stock-locations/${loc.id}/fulfillment-providers`, { add: ['manual_manual'] });
    }
    if (!(loc.sales_channels || []).some((s) => s.id === sc.id)) {
      await a.post(`/admin/stock-locations/${loc.id}/sales-channels`, { add: [sc.id] });
    }
    if (!(loc.fulfillment_sets || []).length) {
      await a.post(`/admin/stock-locations/${loc.id}/fulfillment-sets`, { name: `${name} shipping`, type: 'shipping' });
    }
    loc = (await a.get(`/admin/stock-locations/${loc.id}${locFields}`)).stock_location;
    const fset = loc.fulfillment_sets[0];
    let zone = fset.service_zones[0];
    if (!zone) {
      const r = await a.post(`/admin/fulfillment-sets/${fset.id}/service-zones`, {
        name: `${name} US`, geo_zones: [{ type: 'country', country_code: 'us' }],
      });
      zone = r.fulfillment_set.service_zones[0];
    }
    const opts = (await a.get(`/admin/shipping-options${qs({ service_zone_id: zone.id })}`)).shipping_options;
    let opt = opts.find((o) => o.name === 'Standard');
    if (!opt) {
      ({ shipping_option: opt } = await a.post('/admin/shipping-options', {
        name: 'Standard', service_zone_id: zone.id, shipping_profile_id: profile.id,
        provider_id: 'manual_manual', price_type: 'flat',
        type: { label: 'Standard', description: 'Ship in 2-3 days', code: 'standard' },
        prices: [{ currency_code: 'usd', amount: 5 }, { region_id: region.id, amount: 5 }],
        rules: [
          { attribute: 'enabled_in_store', value: 'true', operator: 'eq' },
          { attribute: 'is_return', value: 'false', operator: 'eq' },
        ],
      }));
      created.push(`shipping option ${name}`);
    }
    locations[name] = { id: loc.id, shipping_option_id: opt.id };
  }
  if (store.default_location_id !== locations.WH.id || store.default_region_id !== region.id
      || store.default_sales_channel_id !== sc.id) {
    await a.post(`/admin/stores/${store.id}`, {
      default_location_id: locations.WH.id, default_region_id: region.id, default_sales_channel_id: sc.id,
    });
  }

  let key = (await a.get(`/admin/api-keys${qs({ type: 'publishable', limit: 100 })}`)).api_keys.find((k) => k.title === SC_NAME);
  if (!key) {
    ({ api_key: key } = await a.post('/admin/api-keys', { title: SC_NAME, type: 'publishable' }));
    created.push('publishable key');
  }
  const keySc = (await a.get(`/admin/api-keys/${key.id}${qs({ fields: '*sales_channels' })}`)).api_key.sales_channels || [];
  if (!keySc.some((s) => s.id === sc.id)) {
    await a.post(`/admin/api-keys/${key.id}/sales-channels`, { add: [sc.id] });
  }

  console.log(JSON.stringify({
    created, store_id: store.id, sales_channel_id: sc.id, region_id: region.id,
    shipping_profile_id: profile.id, publishable_key: key.token, locations,
  }, null, 2));
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
