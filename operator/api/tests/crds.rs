//! The committed CRDs are generated files: they must equal what the types generate, and
//! carry what `kubectl` users rely on (printer columns, short names, subresources).

use sluice_api::crd;

#[test]
fn committed_crds_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    for (name, c) in crd::all() {
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            have == crd::to_yaml(&c),
            "crds/{name} is stale: run `cargo run --bin sluice -- crds --out crds`"
        );
    }
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        count,
        crd::all().len(),
        "crds/ holds a file no type generates"
    );
}

#[test]
fn crds_carry_columns_names_and_subresources() {
    let crds: std::collections::HashMap<_, _> = crd::all()
        .into_iter()
        .map(|(_, c)| (c.spec.names.kind.clone(), c))
        .collect();
    let f = &crds["Function"];
    assert_eq!(
        f.spec.names.short_names.as_deref(),
        Some(&["fn".to_string()][..])
    );
    let v = &f.spec.versions[0];
    let cols: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for want in ["Ready", "Replicas", "Pending", "Age"] {
        assert!(
            cols.contains(&want),
            "Function lacks column {want}: {cols:?}"
        );
    }
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub
        .scale
        .as_ref()
        .expect("Function has a scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");

    let t = &crds["Trigger"];
    assert_eq!(
        t.spec.names.short_names.as_deref(),
        Some(&["trg".to_string()][..])
    );
    let cols: Vec<_> = t.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for want in ["Source", "Function", "Age"] {
        assert!(
            cols.contains(&want),
            "Trigger lacks column {want}: {cols:?}"
        );
    }
    assert!(
        t.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}

#[test]
fn schemas_express_exactly_one_source() {
    let f = crd::schema_of("Function").unwrap();
    assert_eq!(
        f.pointer("/properties/spec/properties/module/oneOf")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let t = crd::schema_of("Trigger").unwrap();
    assert_eq!(
        t.pointer("/properties/spec/properties/source/oneOf")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        t.pointer(
            "/properties/spec/properties/delivery/properties/retry/properties/maxAttempts/maximum"
        )
        .and_then(|v| v.as_f64()),
        Some(185.0)
    );
}
