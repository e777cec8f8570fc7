//! Unit tests of jq mappings: what programs compute, and that no program escapes its budget.

use super::*;
use serde_json::json;
use std::time::Duration;

fn vars(dest: &str) -> MapVars {
    MapVars {
        dest: dest.into(),
        source: "erp".into(),
        kind: "stock".into(),
    }
}

/// Run a future to completion on a fresh runtime (the evaluation itself runs on a jq thread).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn run(program: &str, input: Value) -> Result<Value, MappingError> {
    block_on(Mapping::compile(program)?.apply(&input, &vars("web1")))
}

#[test]
fn mapping_is_send_sync_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Mapping>();
}

#[test]
fn renames_fields() {
    let out = run(
        "{sku: .code, title: .name}",
        json!({"code": "A-1", "name": "Apple", "x": 1}),
    );
    assert_eq!(out, Ok(json!({"sku": "A-1", "title": "Apple"})));
}

#[test]
fn computes_available() {
    let out = run(
        "{sku, available: (.on_hand - .committed)}",
        json!({"sku": "A", "on_hand": 10, "committed": 3, "location": "WH1"}),
    );
    assert_eq!(out, Ok(json!({"sku": "A", "available": 7})));
    // Integers stay integers (not 7.0).
    assert!(out.unwrap()["available"].is_i64());
}

#[test]
fn sees_globals() {
    let m = Mapping::compile(r#"{to: $dest, from: $source, kind: $kind}"#).unwrap();
    let out = block_on(m.apply(&json!(null), &vars("web2"))).unwrap();
    assert_eq!(out, json!({"to": "web2", "from": "erp", "kind": "stock"}));
    let m = Mapping::compile(r#"if $dest == "web1" then .a else .b end"#).unwrap();
    assert_eq!(
        block_on(m.apply(&json!({"a": 1, "b": 2}), &vars("web1"))),
        Ok(json!(1))
    );
    assert_eq!(
        block_on(m.apply(&json!({"a": 1, "b": 2}), &vars("web2"))),
        Ok(json!(2))
    );
}

#[test]
fn std_library_is_available() {
    let out = run(
        r#"{skus: [.lines[] | .sku] | map(ascii_downcase) | sort, n: (.lines | length), j: tojson}"#,
        json!({"lines": [{"sku": "B"}, {"sku": "A"}]}),
    );
    let out = out.unwrap();
    assert_eq!(out["skus"], json!(["a", "b"]));
    assert_eq!(out["n"], json!(2));
}

#[test]
fn integers_round_trip_exactly() {
    for n in [
        0i64,
        -1,
        (1 << 53) + 1,
        i64::MAX,
        i64::MIN,
        9_007_199_254_740_993,
    ] {
        assert_eq!(run(".", json!(n)), Ok(json!(n)), "{n}");
        assert_eq!(run(".x", json!({"x": n})), Ok(json!(n)), "{n}");
    }
    assert_eq!(run(".", json!(u64::MAX)), Ok(json!(u64::MAX)));
    assert_eq!(
        run(". + 1", json!((1i64 << 53) + 1)),
        Ok(json!((1i64 << 53) + 2))
    );
    assert_eq!(run(".", json!(19.99)), Ok(json!(19.99)));
    assert_eq!(run("1.50", json!(null)), Ok(json!(1.5)));
    assert_eq!(run("100000000000000000000", json!(null)), Ok(json!(1e20)));
}

#[test]
fn objects_round_trip_with_key_order() {
    let input = json!({"z": 1, "a": {"y": [1, "x", null, true], "b": false}, "m": 2.5});
    assert_eq!(run(".", input.clone()), Ok(input));
}

#[test]
fn zero_outputs_is_an_error() {
    let err = run("empty", json!(1)).unwrap_err();
    assert_eq!(err, MappingError::NoOutput);
    assert!(err.to_string().contains("produced no output"));
    assert_eq!(run("select(. > 5)", json!(1)), Err(MappingError::NoOutput));
}

#[test]
fn several_outputs_is_an_error() {
    let err = run(".[]", json!([1, 2, 3])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "jq program produced 3 outputs, expected one"
    );
    let err = run("range(1000000)", json!(null)).unwrap_err();
    assert!(err.to_string().contains("at least 100 outputs"), "{err}");
}

#[test]
fn compile_errors_say_what_and_where() {
    let err = Mapping::compile("{sku, available: (.on_hand - }").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MappingError::Compile(_)));
    assert!(msg.contains("expected"), "{msg}");
    assert!(msg.contains("line 1, column"), "{msg}");

    let err = Mapping::compile(".a |\n  frobnicate(.b)")
        .unwrap_err()
        .to_string();
    assert!(err.contains("undefined filter `frobnicate/1`"), "{err}");
    assert!(err.contains("line 2, column 3"), "{err}");

    let err = Mapping::compile("$nope").unwrap_err().to_string();
    assert!(err.contains("undefined variable"), "{err}");

    let err = Mapping::compile("\"abc").unwrap_err().to_string();
    assert!(err.contains("closing quote"), "{err}");
}

#[test]
fn env_is_not_available() {
    let err = Mapping::compile("env.HOME").unwrap_err().to_string();
    assert!(err.contains("undefined filter `env/0`"), "{err}");
}

#[test]
fn runtime_errors_carry_the_message() {
    let err = run(r#"error("no sku")"#, json!({})).unwrap_err();
    assert_eq!(err, MappingError::Runtime("no sku".into()));
    let err = run(".a - .b", json!({"a": "x", "b": 1})).unwrap_err();
    assert!(matches!(err, MappingError::Runtime(_)), "{err}");
    // An error after a first output is still an error.
    assert!(
        matches!(run(r#"1, error("late")"#, json!(null)), Err(MappingError::Runtime(m)) if m == "late")
    );
}

#[test]
fn halt_is_an_error_not_an_exit() {
    let err = run("halt", json!(null)).unwrap_err();
    assert!(err.to_string().contains("halt(0)"), "{err}");
    let err = run(r#""bye" | halt_error(3)"#, json!(null)).unwrap_err();
    assert!(err.to_string().contains("halt(3)"), "{err}");
}

#[test]
fn filters_must_be_boolean() {
    let f = Mapping::compile(".on_hand >= 0").unwrap();
    assert_eq!(
        block_on(f.test(&json!({"on_hand": 3}), &vars(""))),
        Ok(true)
    );
    assert_eq!(
        block_on(f.test(&json!({"on_hand": -1}), &vars(""))),
        Ok(false)
    );
    let f = Mapping::compile(".on_hand").unwrap();
    let err = block_on(f.test(&json!({"on_hand": 3}), &vars(""))).unwrap_err();
    assert_eq!(err, MappingError::NotBoolean("number 3".into()));
    assert!(err.to_string().contains("must produce a boolean"));
}

#[test]
fn non_string_keys_are_rejected() {
    let err = run("{(1): 2}", json!(null));
    assert!(matches!(
        err,
        Err(MappingError::NotJson(_)) | Err(MappingError::Runtime(_))
    ));
}

#[test]
fn clones_share_and_work_across_threads() {
    let m = Mapping::compile("{sku, available: (.on_hand - .committed)}").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                block_on(m.apply(
                    &json!({"sku": "A", "on_hand": 10 + i, "committed": 1}),
                    &vars("w"),
                ))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap().unwrap();
        assert_eq!(out["available"], json!(9 + i as i64));
    }
    assert_eq!(m.source(), "{sku, available: (.on_hand - .committed)}");
}

// ---- the budget ------------------------------------------------------------------------------

/// Small enough for runaways to stop quickly on a slow, shared machine.
fn small() -> Budget {
    Budget {
        steps: 200_000,
        timeout: Duration::from_secs(30),
        max_bytes: 1 << 20,
    }
}

/// Compile `program` as `flows[0].map_out.web1` under `budget` and apply it to `input`. A
/// program that does not come back within a minute fails the test (instead of hanging it).
fn run_with(budget: Budget, program: &str, input: Value) -> Result<Value, MappingError> {
    let m = Mapping::compile_as("flows[0].map_out.web1", program, budget, Lane::Outbound)?;
    block_on(async {
        tokio::time::timeout(Duration::from_secs(60), m.apply(&input, &vars("web1")))
            .await
            .unwrap_or_else(|_| panic!("`{program}` was not stopped"))
    })
}

fn limit_of(r: &Result<Value, MappingError>) -> Option<&Limit> {
    match r {
        Err(MappingError::Budget { limit, .. }) => Some(limit),
        _ => None,
    }
}

#[test]
fn runaway_programs_are_stopped_by_the_budget() {
    // Loops, unbounded generators, every shape of unbounded recursion jq allows (through
    // pipes, constructors, paths, updates, folds, labels, natives calling back), and programs
    // that would allocate without end.
    let programs = [
        "last(range(1e15))",
        "[range(1e9)]",
        "[range(0; 1; 0)]",
        "reduce range(1e12) as $x (0; . + 1)",
        "def f: f; f",
        "def f: 1 + f; f",
        "def f: f + 1; f",
        "def f: [f]; f",
        "def f: {a: f}; f",
        "def f: f | f; f",
        "def f: (f as $x | $x); f",
        "def f: if f then 1 else 2 end; f",
        "def f: reduce f as $x (0; 1); f",
        "def f: first(f); f",
        "def f: limit(1; f); f",
        "def f: label $out | f; f",
        "def f: (. | f); path(f)",
        "def f: ., f; [path(f)]",
        "def f: .a |= (. // {} | f); {} | f",
        "def f($x): f($x + 1); f(0)",
        "def f: try f catch f; f",
        "[repeat(1)]",
        "[0 | recurse(. + 1)]",
        "until(false; .)",
        "last(limit(1e15; repeat(1)))",
        "[limit(1e9; repeat(\"x\"))] | length",
        "[.[] as $x | .[] as $y | .[] as $z | 1] | length",
    ];
    let input = json!([
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
        26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
        49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70
    ]);
    for program in programs {
        let out = run_with(small(), program, input.clone());
        assert!(
            matches!(limit_of(&out), Some(Limit::Steps(_) | Limit::Stack(_))),
            "`{program}` gave {out:?}"
        );
        let msg = out.unwrap_err().to_string();
        assert!(msg.contains("`flows[0].map_out.web1`"), "{msg}");
    }
}

#[test]
fn deep_recursion_stops_on_the_stack_limit_instead_of_aborting() {
    // Steps and time out of the way: only the stack can stop these.
    let budget = Budget {
        steps: u64::MAX,
        timeout: Duration::from_secs(600),
        ..small()
    };
    for program in [
        "def f: 1 + f; f",
        "def f: [f]; f",
        "def f: try f catch f; f",
        "def f: (f | .) + 1; f",
    ] {
        let out = run_with(budget, program, json!(null));
        assert_eq!(
            limit_of(&out),
            Some(&Limit::Stack(pool::EVAL_STACK)),
            "`{program}` gave {out:?}"
        );
        assert!(out.unwrap_err().to_string().contains("MiB of stack"));
    }
    // The thread that stopped them still works.
    assert_eq!(
        run_with(budget, "[range(3)]", json!(null)),
        Ok(json!([0, 1, 2]))
    );
}

#[test]
fn the_clock_stops_what_the_steps_would_not() {
    let budget = Budget {
        steps: u64::MAX,
        timeout: Duration::from_millis(200),
        ..small()
    };
    let out = run_with(budget, "last(range(1e15))", json!(null));
    assert_eq!(
        limit_of(&out),
        Some(&Limit::Time(Duration::from_millis(200)))
    );
    let msg = out.unwrap_err().to_string();
    assert!(msg.contains("200ms (engine.jq_timeout)"), "{msg}");
}

#[test]
fn try_cannot_catch_the_budget() {
    for program in [
        "try last(range(1e15)) catch \"caught\"",
        "(def f: 1 + f; f)?",
        "try (def f: f; f) catch .",
        "[.[] | try (def f: [f]; f) catch 0]",
        "label $out | try last(range(1e15)) catch break $out",
    ] {
        let out = run_with(small(), program, json!([1]));
        assert!(limit_of(&out).is_some(), "`{program}` gave {out:?}");
    }
}

#[test]
fn a_data_dependent_mapping_is_bounded_by_its_input() {
    // Quadratic in the number of lines: fine for an order, over budget for a huge record.
    let program = "[.lines[] as $l | .lines[] | select(.sku == $l.sku)] | length";
    let lines = |n: usize| -> Value {
        json!({"lines": (0..n).map(|i| json!({"sku": format!("S{i}")})).collect::<Vec<_>>()})
    };
    assert_eq!(run_with(small(), program, lines(50)), Ok(json!(50)));
    let out = run_with(small(), program, lines(20_000));
    assert_eq!(limit_of(&out), Some(&Limit::Steps(200_000)), "{out:?}");
}

#[test]
fn an_input_over_the_size_bound_is_refused_before_evaluation() {
    let budget = Budget {
        max_bytes: 1000,
        ..small()
    };
    // `error` would fail the evaluation: the refusal comes first.
    let out = run_with(budget, "error(\"ran\")", json!({"name": "x".repeat(2000)}));
    assert_eq!(limit_of(&out), Some(&Limit::InputBytes(1000)), "{out:?}");
    let msg = out.unwrap_err().to_string();
    assert!(
        msg.contains("not run") && msg.contains("1000 bytes"),
        "{msg}"
    );
    // Many small values count as much as one large one.
    let out = run_with(budget, ".", json!(vec![0; 600]));
    assert_eq!(limit_of(&out), Some(&Limit::InputBytes(1000)));
    // Just under the bound is evaluated.
    assert!(run_with(budget, "length", json!({"name": "x".repeat(900)})).is_ok());

    let mut deep = json!(1);
    for _ in 0..MAX_DEPTH + 1 {
        deep = json!([deep]);
    }
    let out = run_with(small(), "error(\"ran\")", deep);
    assert_eq!(
        limit_of(&out),
        Some(&Limit::InputDepth(MAX_DEPTH)),
        "{out:?}"
    );
}

#[test]
fn an_output_over_the_bounds_is_refused() {
    let budget = Budget {
        max_bytes: 1000,
        ..small()
    };
    let out = run_with(budget, "[range(1000)]", json!(null));
    assert_eq!(limit_of(&out), Some(&Limit::OutputBytes(1000)), "{out:?}");
    // Deeper than the store could read back.
    let out = run_with(small(), "reduce range(200) as $i (0; [.])", json!(null));
    assert_eq!(
        limit_of(&out),
        Some(&Limit::OutputDepth(MAX_DEPTH)),
        "{out:?}"
    );
    let out = run_with(
        small(),
        "reduce range(127) as $i (0; [.]) | length",
        json!(null),
    );
    assert_eq!(out, Ok(json!(1)));
}

#[test]
fn fromjson_refuses_text_nested_deeper_than_the_store_reads() {
    // A webhook field holding a million `[` would overflow jaq's recursive parser.
    let out = run_with(small(), "(\"[\" * 1000000) | fromjson", json!(null));
    let Err(MappingError::Runtime(msg)) = out else {
        panic!("{out:?}")
    };
    assert!(msg.contains("nested deeper than 128 levels"), "{msg}");
    assert_eq!(
        run_with(
            small(),
            "try ((\"[\" * 1000000) | fromjson) catch \"refused\"",
            json!(null)
        ),
        Ok(json!("refused"))
    );
    // Everything else parses as jaq does.
    assert_eq!(
        run_with(
            small(),
            ".text | fromjson",
            json!({"text": "{\"a\": [1, \"]\", {\"b\": null}]}"})
        ),
        Ok(json!({"a": [1, "]", {"b": null}]}))
    );
    assert_eq!(
        run_with(small(), "[\"1 [2]\" | fromjson]", json!(null)),
        Ok(json!([1, [2]]))
    );
    assert!(matches!(
        run_with(small(), "\"[1,\" | fromjson", json!(null)),
        Err(MappingError::Runtime(m)) if m.contains("cannot parse")
    ));
    assert!(matches!(
        run_with(small(), "1 | fromjson", json!(null)),
        Err(MappingError::Runtime(_))
    ));
}

#[test]
fn range_behaves_as_jq_s() {
    for (program, expected) in [
        ("[range(5)]", json!([0, 1, 2, 3, 4])),
        ("[range(2; 5)]", json!([2, 3, 4])),
        ("[range(0; 10; 3)]", json!([0, 3, 6, 9])),
        ("[range(5; 0; -2)]", json!([5, 3, 1])),
        ("[range(0; 1; 0.5)]", json!([0, 0.5])),
        ("[limit(3; range(0; 1; 0))]", json!([0, 0, 0])),
        ("[range(-1)]", json!([])),
        ("[range(1; 3) as $x | range($x)]", json!([0, 0, 1])),
    ] {
        assert_eq!(
            run_with(small(), program, json!(null)),
            Ok(expected),
            "{program}"
        );
    }
    let out = run_with(small(), "[range(0; 3; \"a\")]", json!(null));
    assert!(matches!(out, Err(MappingError::Runtime(_))), "{out:?}");
}

#[test]
fn input_and_inputs_are_not_available() {
    for program in ["input", "[inputs]", "first(inputs)"] {
        let err = Mapping::compile(program).unwrap_err().to_string();
        assert!(err.contains("undefined filter"), "{program}: {err}");
    }
}

#[test]
fn evaluation_runs_off_the_calling_thread() {
    // On a single-threaded runtime, a ticker keeps ticking while a runaway program is being
    // evaluated: the evaluation does not hold the runtime's only thread.
    let budget = Budget {
        steps: u64::MAX,
        timeout: Duration::from_secs(2),
        ..small()
    };
    let m = Mapping::compile_as("p", "last(range(1e15))", budget, Lane::Inbound).unwrap();
    let ticks = block_on(async {
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        let out = m.apply(&json!(null), &MapVars::default()).await;
        assert_eq!(limit_of(&out), Some(&Limit::Time(Duration::from_secs(2))));
        ticker.abort();
        ticks.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert!(ticks >= 10, "the runtime was blocked: {ticks} ticks in 2 s");
}

#[test]
fn many_runaways_at_once_leave_the_threads_working() {
    let m = Mapping::compile_as("p", "def f: 1 + f; f", small(), Lane::Outbound).unwrap();
    let ok = Mapping::compile_as("q", ". + 1", small(), Lane::Outbound).unwrap();
    block_on(async {
        let (input, vars) = (json!(0), MapVars::default());
        let runs = (0..16).map(|_| m.apply(&input, &vars));
        for out in futures::future::join_all(runs).await {
            assert!(limit_of(&out).is_some(), "{out:?}");
        }
        assert_eq!(ok.apply(&json!(1), &MapVars::default()).await, Ok(json!(2)));
    });
}

#[test]
fn a_caller_that_stops_waiting_stops_the_evaluation() {
    // Runaways only a minute-long clock would stop, each abandoned by its caller soon after it
    // was handed over: the jq threads are free again long before that minute.
    let budget = Budget {
        steps: u64::MAX,
        timeout: Duration::from_secs(60),
        ..small()
    };
    let m = Mapping::compile_as("p", "last(range(1e15))", budget, Lane::Inbound).unwrap();
    let ok = Mapping::compile_as("q", ". + 1", small(), Lane::Inbound).unwrap();
    block_on(async {
        let (input, vars) = (json!(0), MapVars::default());
        for _ in 0..8 {
            let abandoned =
                tokio::time::timeout(Duration::from_millis(100), m.apply(&input, &vars)).await;
            assert!(abandoned.is_err(), "{abandoned:?}");
        }
        let after = tokio::time::timeout(Duration::from_secs(30), ok.apply(&json!(1), &vars)).await;
        assert_eq!(after, Ok(Ok(json!(2))), "the jq threads are still busy");
    });
}

#[test]
fn filter_then_map_runs_the_mapping_only_on_what_the_filter_keeps() {
    let f =
        Mapping::compile_as("flows[0].filter", ".on_hand > 0", small(), Lane::Outbound).unwrap();
    let m = Mapping::compile_as(
        "flows[0].map_out.web",
        "if .sku == \"BAD\" then error(\"no\") else {sku} end",
        small(),
        Lane::Outbound,
    )
    .unwrap();
    let run = |filter: Option<&Mapping>, mapping: Option<&Mapping>, input: Value| {
        block_on(filter_then_map(filter, mapping, &input, &vars("web")))
    };
    let a = json!({"sku": "A", "on_hand": 1});
    assert_eq!(
        run(Some(&f), Some(&m), a.clone()),
        Ok(Filtered::Kept(json!({"sku": "A"})))
    );
    assert_eq!(run(None, None, a.clone()), Ok(Filtered::Kept(a.clone())));
    assert_eq!(run(Some(&f), None, a.clone()), Ok(Filtered::Kept(a)));
    // Dropped records are never mapped (BAD's mapping would fail).
    let bad = json!({"sku": "BAD", "on_hand": 0});
    assert_eq!(run(Some(&f), Some(&m), bad), Ok(Filtered::Dropped));
    let bad = json!({"sku": "BAD", "on_hand": 1});
    assert_eq!(
        run(Some(&f), Some(&m), bad.clone()),
        Err((Stage::Mapping, MappingError::Runtime("no".into())))
    );
    assert_eq!(
        run(None, Some(&m), bad),
        Err((Stage::Mapping, MappingError::Runtime("no".into())))
    );
    let out = run(Some(&f), Some(&m), json!("not an object"));
    assert!(
        matches!(out, Err((Stage::Filter, MappingError::Runtime(_)))),
        "{out:?}"
    );
    let looping = Mapping::compile_as(
        "flows[0].filter",
        "last(range(1e15)) > 0",
        small(),
        Lane::Outbound,
    )
    .unwrap();
    let out = run(Some(&looping), Some(&m), json!({"sku": "A"}));
    assert!(
        matches!(&out, Err((Stage::Filter, MappingError::Budget { mapping, limit: Limit::Steps(_) })) if mapping == "flows[0].filter"),
        "{out:?}"
    );
}
