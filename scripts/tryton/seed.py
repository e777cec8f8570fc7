#!/usr/bin/env python3
"""Seed the project's Tryton for Concord's integration tests (idempotent).

Creates what is missing: currency USD, company "Concord Test Co" (user admin bound to it), a
minimal chart of accounts and fiscal year (confirming a sale needs them), payment term
"Direct", an invoice payment method "Channel payments" (Cash journal; channel payments are
recorded with it), an accounting product category, a second warehouse "WH2" (Tryton ships "WH"),
products SKU-0001..SKU-N (product code = SKU) with stock (a confirmed inventory in WH, a done
supplier move in WH2) and a customer "Customer 1" <customer1@example.com> with an address.

Run with the venv's python (scripts/tryton/setup.sh made it):
  $TRYTON_DIR/venv/bin/python scripts/tryton/seed.py            # in-process (fast; default)
  $TRYTON_DIR/venv/bin/python scripts/tryton/seed.py --rpc      # over the running server
Options: --products N (5) --qty Q (100) --qty-wh2 Q (20). Prints a JSON summary on stdout.
"""
import argparse
import datetime
import json
import os
import sys
from decimal import Decimal

from proteus import Model, Wizard, config as pconfig

COMPANY_NAME = "Concord Test Co"
CUSTOMER_EMAIL = "customer1@example.com"


def parse_args():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tdir = os.environ.get('TRYTON_DIR', os.path.join(repo, 'target', 'tryton'))
    db = os.environ.get('TRYTON_DB', 'concord')
    port = os.environ.get('TRYTON_PORT', '8011')
    p = argparse.ArgumentParser(description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--rpc', action='store_true',
        help='go through the running server (slow) instead of in-process')
    p.add_argument('--url', default=f'http://127.0.0.1:{port}/{db}/')
    p.add_argument('--user', default='admin')
    p.add_argument('--password',
        default=os.environ.get('TRYTON_ADMIN_PASSWORD', 'admin'))
    p.add_argument('--database', default=db)
    p.add_argument('--config', default=os.path.join(tdir, 'trytond.conf'))
    p.add_argument('--products', type=int, default=5)
    p.add_argument('--qty', type=float, default=100)
    p.add_argument('--qty-wh2', type=float, default=20)
    return p.parse_args()


def one(records):
    return records[0] if records else None


def ensure_currency(code='USD'):
    Currency = Model.get('currency.currency')
    Rate = Model.get('currency.currency.rate')
    cur = one(Currency.find([('code', '=', code)]))
    if not cur:
        cur = Currency(name='U.S. Dollar', symbol='$', code=code,
            rounding=Decimal('0.01'))
        cur.save()
        Rate(date=datetime.date(2000, 1, 1), rate=Decimal(1), currency=cur).save()
    return cur


def ensure_company(cfg, currency):
    Company = Model.get('company.company')
    Party = Model.get('party.party')
    company = one(Company.find([('party.name', '=', COMPANY_NAME)]))
    if not company:
        wiz = Wizard('company.company.config')
        wiz.execute('company')
        party = Party(name=COMPANY_NAME)
        party.save()
        wiz.form.party = party
        wiz.form.currency = currency
        wiz.execute('add')
        company = one(Company.find([('party.name', '=', COMPANY_NAME)]))
    cfg._context = Model.get('res.user').get_preferences(True, {})
    return company


def accounts_of(company):
    Account = Model.get('account.account')
    return {kind: one(Account.find([
                ('type.%s' % kind, '=', True),
                ('company', '=', company.id),
                ('closed', '!=', True)], limit=1))
        for kind in ['receivable', 'payable', 'revenue', 'expense']}


def ensure_chart(cfg, company):
    Account = Model.get('account.account')
    if Account.find([('company', '=', company.id)], limit=1):
        return accounts_of(company)
    AccountTemplate = Model.get('account.account.template')
    ModelData = Model.get('ir.model.data')
    chart_id = ModelData.get_id('account', 'account_template_root_en', cfg.context)
    wiz = Wizard('account.create_chart')
    wiz.execute('account')
    wiz.form.account_template = AccountTemplate(chart_id)
    wiz.form.company = company
    wiz.execute('create_account')
    accounts = accounts_of(company)
    wiz.form.account_receivable = accounts['receivable']
    wiz.form.account_payable = accounts['payable']
    wiz.execute('create_properties')
    return accounts


def ensure_fiscalyear(company):
    FiscalYear = Model.get('account.fiscalyear')
    today = datetime.date.today()
    if FiscalYear.find([('company', '=', company.id),
                ('start_date', '<=', today), ('end_date', '>=', today)]):
        return
    SequenceStrict = Model.get('ir.sequence.strict')
    SequenceType = Model.get('ir.sequence.type')
    fy = FiscalYear(name=str(today.year), company=company,
        start_date=datetime.date(today.year, 1, 1),
        end_date=datetime.date(today.year, 12, 31))
    move_type, = SequenceType.find([('name', '=', "Account Move")], limit=1)
    seq = SequenceStrict(name=str(today.year), sequence_type=move_type, company=company)
    seq.save()
    fy.move_sequence = seq
    inv_type, = SequenceType.find([('name', '=', "Invoice")], limit=1)
    inv_seq = SequenceStrict(name=f"Invoice {today.year}", sequence_type=inv_type,
        company=company)
    inv_seq.save()
    s, = fy.invoice_sequences
    s.out_invoice_sequence = inv_seq
    s.in_invoice_sequence = inv_seq
    s.out_credit_note_sequence = inv_seq
    s.in_credit_note_sequence = inv_seq
    fy.save()
    fy.click('create_period')


def ensure_payment_term():
    PaymentTerm = Model.get('account.invoice.payment_term')
    term = one(PaymentTerm.find([('name', '=', 'Direct')]))
    if not term:
        term = PaymentTerm(name='Direct')
        term.lines.new(type='remainder')
        term.save()
    return term


def ensure_payment_method(company):
    """The invoice payment method channel payments are recorded with (the connector's Pay
    wizard): the Cash journal, on the chart's first cash account."""
    Method = Model.get('account.invoice.payment.method')
    method = one(Method.find([('name', '=', 'Channel payments')]))
    if method:
        return method
    journal, = Model.get('account.journal').find([('type', '=', 'cash')], limit=1)
    cash, = Model.get('account.account').find([
            ('company', '=', company.id), ('closed', '!=', True),
            ('type.name', '=', 'Cash and Cash Equivalents')],
        order=[('code', 'ASC')], limit=1)
    method = Method(name='Channel payments', company=company, journal=journal,
        credit_account=cash, debit_account=cash)
    method.save()
    return method


def ensure_category(accounts):
    Category = Model.get('product.category')
    cat = one(Category.find([('name', '=', 'Goods'), ('accounting', '=', True)]))
    if not cat:
        cat = Category(name='Goods', accounting=True)
        cat.account_expense = accounts['expense']
        cat.account_revenue = accounts['revenue']
        cat.save()
    return cat


def ensure_customer(name, email, term):
    Party = Model.get('party.party')
    party = one(Party.find([('name', '=', name)]))
    if not party:
        party = Party(name=name)
        addr = party.addresses[0] if party.addresses else party.addresses.new()
        addr.street = '1 Main Street'
        addr.postal_code = '12345'
        addr.city = 'Springfield'
        party.contact_mechanisms.new(type='email', value=email)
        party.customer_payment_term = term
        party.save()
    return party


def ensure_warehouse(code, name):
    Location = Model.get('stock.location')
    wh = one(Location.find([('type', '=', 'warehouse'), ('code', '=', code)]))
    if wh:
        return wh
    locs = {}
    for role in ('Input', 'Output', 'Storage'):
        loc = Location(name=f'{name} {role}', type='storage')
        loc.save()
        locs[role] = loc
    wh = Location(name=name, code=code, type='warehouse',
        input_location=locs['Input'], output_location=locs['Output'],
        storage_location=locs['Storage'])
    wh.save()
    return wh


def ensure_products(n, category):
    Product = Model.get('product.product')
    Template = Model.get('product.template')
    unit, = Model.get('product.uom').find([('name', '=', 'Unit')])
    products = []
    for i in range(1, n + 1):
        sku = f'SKU-{i:04d}'
        product = one(Product.find([('code', '=', sku)]))
        if not product:
            tpl = Template(name=f'Product {sku}', code=sku, default_uom=unit,
                type='goods', salable=True, list_price=Decimal('10.00') + i,
                account_category=category)
            tpl.save()
            product, = tpl.products
            product.cost_price = Decimal('5.00')
            product.save()
        products.append(product)
    return products


def stock_by_inventory(company, products, warehouse, qty):
    Inventory = Model.get('stock.inventory')
    Move = Model.get('stock.move')
    storage = warehouse.storage_location
    todo = [p for p in products if not Move.find([
                ('product', '=', p.id), ('to_location', '=', storage.id)], limit=1)]
    if not todo or qty <= 0:
        return 0
    inv = Inventory(location=storage, company=company)
    for p in todo:
        inv.lines.new(product=p, quantity=qty)
    inv.click('confirm')
    return len(todo)


def stock_by_supplier_move(company, products, warehouse, qty, currency):
    Location = Model.get('stock.location')
    Move = Model.get('stock.move')
    supplier, = Location.find([('type', '=', 'supplier')], limit=1)
    storage = warehouse.storage_location
    done = 0
    for p in products:
        if qty <= 0 or Move.find([('product', '=', p.id),
                    ('to_location', '=', storage.id)], limit=1):
            continue
        m = Move(product=p, quantity=qty, unit=p.default_uom,
            from_location=supplier, to_location=storage, company=company,
            unit_price=Decimal('5.00'), currency=currency)
        m.save()
        m.click('do')
        done += 1
    return done


def run(cfg, args):
    currency = ensure_currency()
    company = ensure_company(cfg, currency)
    accounts = ensure_chart(cfg, company)
    ensure_fiscalyear(company)
    term = ensure_payment_term()
    method = ensure_payment_method(company)
    category = ensure_category(accounts)
    customer = ensure_customer('Customer 1', CUSTOMER_EMAIL, term)
    Location = Model.get('stock.location')
    wh, = Location.find([('type', '=', 'warehouse'), ('code', '=', 'WH')])
    wh2 = ensure_warehouse('WH2', 'Warehouse 2')
    products = ensure_products(args.products, category)
    n1 = stock_by_inventory(company, products, wh, args.qty)
    n2 = stock_by_supplier_move(company, products, wh2, args.qty_wh2, currency)
    json.dump({
        'company_id': company.id,
        'customer_id': customer.id,
        'customer_email': CUSTOMER_EMAIL,
        'payment_term_id': term.id,
        'payment_method_id': method.id,
        'warehouses': {'WH': wh.id, 'WH2': wh2.id},
        'stocked_now': {'WH': n1, 'WH2': n2},
        'products': [p.code for p in products],
        }, sys.stdout, indent=1)
    print()


def main():
    args = parse_args()
    if args.rpc:
        with pconfig.set_xmlrpc_session(args.url, args.user,
                password=args.password) as cfg:
            run(cfg, args)
    else:
        cfg = pconfig.set_trytond(database=args.database, user=args.user,
            config_file=args.config)
        run(cfg, args)


if __name__ == '__main__':
    main()
