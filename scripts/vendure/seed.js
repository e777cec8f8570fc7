#!/usr/bin/env node
// Seed a running Vendure (idempotent) through the Admin GraphQL API:
//   country US + zone "Default" (set as the channel's tax & shipping zone),
//   tax category "Standard" + 0% tax rate, shipping method "standard" (flat 5.00),
//   payment method "dummy" (dummy-payment-handler, authorize only),
//   stock location "WH2" besides Vendure's "Default Stock Location",
//   N products, one variant each, SKU-0001..SKU-N, stock per location,
//   customer customer1@example.com.
// Usage: node seed.js [--products N] [--qty Q] [--qty-wh2 Q]   (run from $VENDURE_DIR or scripts/vendure)
// Env: VENDURE_URL or VENDURE_PORT (default 3011), VENDURE_SUPERADMIN(_PASSWORD)
'use strict';
const { Client, adminLogin } = require('./lib');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const N = arg('products', 5);
const QTY = arg('qty', 100);
const QTY_WH2 = arg('qty-wh2', 20);
const en = 'en';

async function main() {
  const a = await adminLogin();
  const q = (s, v) => a.request(s, v);

  // --- country + zone + channel defaults
  let country = (await q(`{ countries(options:{filter:{code:{eq:"US"}}}){ items { id code } } }`)).countries.items[0];
  if (!country) {
    country = (await q(`mutation($i:CreateCountryInput!){ createCountry(input:$i){ id code } }`,
      { i: { code: 'US', enabled: true, translations: [{ languageCode: en, name: 'United States' }] } })).createCountry;
  }
  let zone = (await q(`{ zones(options:{filter:{name:{eq:"Default"}}}){ items { id name } } }`)).zones.items[0];
  if (!zone) {
    zone = (await q(`mutation($i:CreateZoneInput!){ createZone(input:$i){ id name } }`,
      { i: { name: 'Default', memberIds: [country.id] } })).createZone;
  }
  const channel = (await q(`{ activeChannel { id code token defaultTaxZone { id } defaultShippingZone { id } } }`)).activeChannel;
  if (!channel.defaultTaxZone || !channel.defaultShippingZone) {
    const r = await q(`mutation($i:UpdateChannelInput!){ updateChannel(input:$i){
        __typename ... on Channel { id } ... on ErrorResult { errorCode message } } }`,
      { i: { id: channel.id, defaultTaxZoneId: zone.id, defaultShippingZoneId: zone.id } });
    Client.ok(r.updateChannel, 'updateChannel');
  }

  // --- tax
  let taxCat = (await q(`{ taxCategories(options:{filter:{name:{eq:"Standard"}}}){ items { id } } }`)).taxCategories.items[0];
  if (!taxCat) {
    taxCat = (await q(`mutation($i:CreateTaxCategoryInput!){ createTaxCategory(input:$i){ id } }`,
      { i: { name: 'Standard', isDefault: true } })).createTaxCategory;
  }
  const rates = (await q(`{ taxRates(options:{filter:{name:{eq:"Standard 0%"}}}){ items { id } } }`)).taxRates.items;
  if (!rates.length) {
    await q(`mutation($i:CreateTaxRateInput!){ createTaxRate(input:$i){ id } }`,
      { i: { name: 'Standard 0%', enabled: true, value: 0, categoryId: taxCat.id, zoneId: zone.id } });
  }

  // --- shipping + payment methods
  let ship = (await q(`{ shippingMethods(options:{filter:{code:{eq:"standard"}}}){ items { id } } }`)).shippingMethods.items[0];
  if (!ship) {
    ship = (await q(`mutation($i:CreateShippingMethodInput!){ createShippingMethod(input:$i){ id } }`, {
      i: {
        code: 'standard', fulfillmentHandler: 'manual-fulfillment',
        checker: { code: 'default-shipping-eligibility-checker', arguments: [{ name: 'orderMinimum', value: '0' }] },
        calculator: { code: 'default-shipping-calculator', arguments: [
          { name: 'rate', value: '500' }, { name: 'includesTax', value: 'auto' }, { name: 'taxRate', value: '0' }] },
        translations: [{ languageCode: en, name: 'Standard shipping', description: '' }],
      },
    })).createShippingMethod;
  }
  let pay = (await q(`{ paymentMethods(options:{filter:{code:{eq:"dummy"}}}){ items { id } } }`)).paymentMethods.items[0];
  if (!pay) {
    pay = (await q(`mutation($i:CreatePaymentMethodInput!){ createPaymentMethod(input:$i){ id } }`, {
      i: {
        code: 'dummy', enabled: true,
        handler: { code: 'dummy-payment-handler', arguments: [{ name: 'automaticSettle', value: 'false' }] },
        translations: [{ languageCode: en, name: 'Dummy payment', description: '' }],
      },
    })).createPaymentMethod;
  }

  // --- stock locations
  const locs = (await q(`{ stockLocations { items { id name } } }`)).stockLocations.items;
  const defaultLoc = locs.find(l => l.name === 'Default Stock Location') || locs[0];
  let wh2 = locs.find(l => l.name === 'WH2');
  if (!wh2) {
    wh2 = (await q(`mutation($i:CreateStockLocationInput!){ createStockLocation(input:$i){ id name } }`,
      { i: { name: 'WH2', description: 'Second warehouse' } })).createStockLocation;
  }

  // --- products (one variant each); stock is only set when the variant is created
  const products = [];
  for (let i = 1; i <= N; i++) {
    const sku = `SKU-${String(i).padStart(4, '0')}`;
    let v = (await q(`query($s:String!){ productVariants(options:{filter:{sku:{eq:$s}}}){ items { id sku product { id } } } }`,
      { s: sku })).productVariants.items[0];
    if (!v) {
      const p = (await q(`mutation($i:CreateProductInput!){ createProduct(input:$i){ id } }`, {
        i: { enabled: true, translations: [{ languageCode: en, name: `Product ${sku}`, slug: sku.toLowerCase(), description: '' }] },
      })).createProduct;
      const stockLevels = [{ stockLocationId: defaultLoc.id, stockOnHand: QTY }];
      if (QTY_WH2 > 0) stockLevels.push({ stockLocationId: wh2.id, stockOnHand: QTY_WH2 });
      v = (await q(`mutation($i:[CreateProductVariantInput!]!){ createProductVariants(input:$i){ id sku product { id } } }`, {
        i: [{
          productId: p.id, sku, price: 1000 + 100 * i, taxCategoryId: taxCat.id, trackInventory: 'TRUE',
          translations: [{ languageCode: en, name: `Product ${sku}` }], stockLevels,
        }],
      })).createProductVariants[0];
    }
    products.push(v);
  }

  // --- customer
  let cust = (await q(`{ customers(options:{filter:{emailAddress:{eq:"customer1@example.com"}}}){ items { id } } }`)).customers.items[0];
  if (!cust) {
    const r = (await q(`mutation($i:CreateCustomerInput!){ createCustomer(input:$i, password:"customer1"){
        __typename ... on Customer { id } ... on ErrorResult { errorCode message } } }`,
      { i: { firstName: 'Customer', lastName: 'One', emailAddress: 'customer1@example.com' } })).createCustomer;
    cust = Client.ok(r, 'createCustomer');
  }

  const stock = (await q(`query($ids:[String!]){ productVariants(options:{filter:{sku:{in:$ids}}, take:1000}){ items {
      id sku stockOnHand stockAllocated stockLevels { stockLocation { name } stockOnHand stockAllocated } } } }`,
    { ids: products.map(p => p.sku) })).productVariants.items;

  console.log(JSON.stringify({
    channelToken: channel.token, zoneId: zone.id, taxCategoryId: taxCat.id,
    shippingMethodId: ship.id, paymentMethodCode: 'dummy', customerId: cust.id,
    stockLocations: { default: defaultLoc.id, WH2: wh2.id },
    variants: stock.map(v => ({
      id: v.id, productId: products.find(p => p.sku === v.sku).product.id, sku: v.sku,
      stockOnHand: v.stockOnHand, stockAllocated: v.stockAllocated,
      levels: Object.fromEntries(v.stockLevels.map(l => [l.stockLocation.name, [l.stockOnHand, l.stockAllocated]])),
    })),
  }, null, 1));
}

main().catch(e => { console.error(e.message || e); process.exit(1); });
