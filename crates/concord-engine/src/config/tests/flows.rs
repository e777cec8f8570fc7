//! Flow rules (patterns, modes, jq programs, names, inbound mappings) and `[ownership]`.

use super::*;

#[test]
fn at_least_one_endpoint_and_one_flow() {
    assert_err(load(""), "endpoints", "at least one endpoint");
    assert_err(load(ENDPOINTS), "flows", "at least one flow");
}

#[test]
fn broadcast_needs_exactly_one_source_and_some_destinations() {
    assert!(with_flow(
        "pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]"
    )
    .is_ok());
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\", \"web1\"]\nto = [\"web2\"]"),
        "flows[0].from",
        "a broadcast flow has exactly one source, got 2",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = []"),
        "flows[0].to",
        "at least one destination",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]"),
        "flows[0].to",
        "missing",
    );
}

#[test]
fn aggregation_needs_some_sources_and_exactly_one_destination() {
    assert!(with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = [\"web1\", \"web2\"]\nto = [\"erp\"]").is_ok());
    assert_err(
        with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = [\"web1\"]\nto = [\"erp\", \"web2\"]"),
        "flows[0].to",
        "exactly one destination, got 2",
    );
    assert_err(
        with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = []\nto = [\"erp\"]"),
        "flows[0].from",
        "at least one source",
    );
}

#[test]
fn bidirectional_uses_between_two_endpoints() {
    let c = with_flow(
        "pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\"]",
    )
    .unwrap();
    let f = &c.flows[0];
    assert_eq!(f.pattern, Pattern::Bidirectional);
    assert_eq!(f.from, ["web1", "web2"]);
    assert_eq!(f.to, ["web1", "web2"]);
    assert_eq!(f.destinations_for("web1").collect::<Vec<_>>(), ["web2"]);
    assert_eq!(c.flows_for(Kind::Stock, "web2").count(), 1);

    assert_err(
        with_flow("pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\", \"erp\"]"),
        "flows[0].between",
        "exactly 2 distinct endpoints, got 3",
    );
    assert_err(
        with_flow(
            "pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web1\"]",
        ),
        "flows[0].between[1]",
        "listed twice",
    );
    assert_err(
        with_flow(
            "pattern = \"bidirectional\"\nmode = \"realtime\"\nfrom = [\"web1\"]\nto = [\"web2\"]",
        ),
        "flows[0].from",
        "`between",
    );
    assert_err(
        with_flow("pattern = \"bidirectional\"\nmode = \"realtime\""),
        "flows[0].between",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\"]"),
        "flows[0].between",
        "only for bidirectional",
    );
}

#[test]
fn correlation_needs_sources_and_destinations() {
    assert!(with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]").is_ok());
    assert!(with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"web1\", \"web2\"]\nto = [\"erp\"]").is_ok());
    assert_err(
        with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = []"),
        "flows[0].to",
        "at least one destination",
    );
}

#[test]
fn migration_pattern_runs_in_migration_mode() {
    let c = with_flow("pattern = \"migration\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    assert_eq!(c.flows[0].mode, Mode::Migration);
    assert!(with_flow("pattern = \"migration\"\nmode = \"migration\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]").is_ok());
    assert_err(
        with_flow(
            "pattern = \"migration\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
        ),
        "flows[0].mode",
        "expected mode \"migration\"",
    );
}

#[test]
fn sources_and_destinations_are_disjoint_and_known() {
    assert_err(
        with_flow("pattern = \"correlation\"\nmode = \"realtime\"\nfrom = [\"erp\", \"web1\"]\nto = [\"web1\"]"),
        "flows[0].to",
        "`web1` is both a source and a destination",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web9\"]"),
        "flows[0].to[1]",
        "unknown endpoint `web9`",
    );
}

#[test]
fn mode_fields_belong_to_their_mode() {
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\ninterval = \"2s\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "only for mode \"delta\", but this flow's mode is \"realtime\"",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\npoll = \"2s\"\ninterval = \"2s\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].poll",
        "only for mode \"realtime\"",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].schedule",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nschedule = \"every day\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].schedule",
        "invalid cron schedule",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"soon\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "expected a duration",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].mode",
        "missing",
    );
    let c = with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nschedule = \"0 */5 * * * *\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    match &c.flows[0].mode {
        Mode::Batch { schedule, expr } => {
            assert_eq!(expr, "0 */5 * * * *");
            assert!(schedule.upcoming(chrono::Utc).next().is_some());
        }
        other => panic!("{other:?}"),
    }
    let c = with_flow("pattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    assert_eq!(
        c.flows[0].mode,
        Mode::Delta {
            interval: Duration::from_secs(1)
        }
    );
}

#[test]
fn jq_programs_compile_at_load() {
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\nfilter = '.on_hand >='"),
        "flows[0].filter",
        "jq compile error: expected term",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\nmap_in = 'nosuchfn'"),
        "flows[0].map_in",
        "undefined filter `nosuchfn/0`",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n[flows.map_out]\nweb1 = '{sku'"),
        "flows[0].map_out.web1",
        "jq compile error",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n[flows.map_out]\nweb9 = '.'"),
        "flows[0].map_out.web9",
        "not a destination of this flow",
    );
}

#[test]
fn flow_names_are_unique_and_well_formed() {
    let flow = "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    assert_err(
        load(&format!("{ENDPOINTS}{flow}{flow}")),
        "flows[1].name",
        "duplicate flow name `f` (already used by flows[0])",
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{}",
            flow.replace("\"f\"", "\"Stock Flow\"")
        )),
        "flows[0].name",
        "invalid flow name",
    );
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace("endpoints.web2", "endpoints.Web2")
        )),
        "endpoints.Web2",
        "invalid endpoint name",
    );
}

#[test]
fn ownership_is_checked() {
    let flow = "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    assert_err(
        load(&format!(
            "{ENDPOINTS}{flow}[ownership.prodcut]\ndefault = \"erp\"\n"
        )),
        "ownership.prodcut",
        "unknown kind `prodcut`",
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{flow}[ownership.product]\ndefault = \"sap\"\n"
        )),
        "ownership.product.default",
        "unknown endpoint `sap`",
    );
    assert_err(
        load(&format!("{ENDPOINTS}{flow}[ownership.product]\ndefault = \"erp\"\nfields = {{ description = \"web9\" }}\n")),
        "ownership.product.fields.description",
        "unknown endpoint `web9`",
    );
    let c = load(&format!(
        "{ENDPOINTS}{flow}[ownership.customer]\nfields = {{ email = \"web1\" }}\n"
    ))
    .unwrap();
    assert_eq!(c.ownership[&Kind::Customer].owner("email"), Some("web1"));
    assert_eq!(c.ownership[&Kind::Customer].owner("name"), None);
}

#[test]
fn inbound_mappings_must_agree_per_source_and_kind() {
    let flow = |name: &str, to: &str, map_in: &str| {
        format!("[[flows]]\nname = \"{name}\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"{to}\"]\nmap_in = '{map_in}'\n")
    };
    let ok = load(&format!(
        "{ENDPOINTS}{}{}",
        flow("a", "web1", "{sku: .code}"),
        flow("b", "web2", "{sku: .code} ")
    ))
    .unwrap();
    assert_eq!(
        ok.map_in_for(Kind::Stock, "erp").map(|m| m.source()),
        Some("{sku: .code}")
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{}{}",
            flow("a", "web1", "{sku: .code}"),
            flow("b", "web2", "{sku: .id}")
        )),
        "flows[1].map_in",
        "inbound mapping must agree: flows[0] (`a`)",
    );
}

#[test]
fn flows_for_items_outlive_the_source_name() {
    let c = with_flow(
        "pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
    )
    .unwrap();
    let found: Vec<&FlowConfig> = {
        let source = String::from("erp");
        c.flows_for(Kind::Stock, &source).collect()
    };
    assert_eq!(found.len(), 1);
    assert!(c.map_in_for(Kind::Stock, "erp").is_none());
    assert_eq!(c.flow("f").map(|f| f.name.as_str()), Some("f"));
}
