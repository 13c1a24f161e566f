//! `schema/rclaude.schema.json` must match the schema generated from the Rust types.
//! Regenerate it with `RCLAUDE_UPDATE_SCHEMA=1 cargo test --test config_schema`.

use std::path::Path;

#[test]
fn committed_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rclaude::config::schema::SCHEMA_PATH);
    let generated = rclaude::config::schema::json_schema_pretty();
    if std::env::var_os("RCLAUDE_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the config types in src/config/model.rs.\n\
         Regenerate it with:\n\n    RCLAUDE_UPDATE_SCHEMA=1 cargo test --test config_schema\n\n\
         and commit the result.",
        path.display()
    );
}

#[test]
fn committed_schema_is_valid_json_with_the_config_tables() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rclaude::config::schema::SCHEMA_PATH);
    let text = std::fs::read_to_string(&path).expect("schema/rclaude.schema.json exists");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["title"], "rclaude configuration (.rclaude.toml)");
    assert!(v["properties"]["tasks"].is_object());
}
