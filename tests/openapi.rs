//! The committed openapi.yaml is exactly what the handlers generate.

#[test]
fn openapi_yaml_matches_the_code() {
    let generated = shears::api::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    if std::env::var_os("SHEARS_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date; regenerate it with `cargo run -- openapi > openapi.yaml` \
         (or SHEARS_UPDATE_OPENAPI=1 cargo test --test openapi)"
    );
    for path in [
        "/v1/models",
        "/v1/models/{id}/files/{name}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/report",
        "/metrics",
    ] {
        assert!(
            generated.contains(&format!("{path}:")),
            "{path} is documented"
        );
    }
}
