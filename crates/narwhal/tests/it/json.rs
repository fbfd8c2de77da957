//! `--json` output: each command's document parses, has the shape the README documents (keys and
//! the types of their values, snapshotted), and says what happened.

use std::fmt::Write as _;
use std::path::Path;

use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{closure, file_url, tempdir};
use serde_json::Value;

use crate::fetch::{fetch_cmd, Cache};
use crate::narwhal;

/// The keys and value types of `v`, one a line (`key: type`), arrays by their first element.
fn shape(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let _ = writeln!(out, "{pad}{k}: {}", kind(v));
                match v {
                    Value::Object(_) => shape(v, indent + 2, out),
                    Value::Array(items) => {
                        if let Some(first) = items.first().filter(|f| f.is_object()) {
                            shape(first, indent + 2, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}", kind(v));
        }
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_u64() => "integer".into(),
        Value::Number(_) => "float".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => format!("array of {}", a.first().map_or_else(|| "nothing".to_owned(), kind)),
        Value::Object(_) => "object".into(),
    }
}

/// Runs `cmd`, which must succeed and print exactly one line of JSON; returns it, its shape snapshotted.
fn json(name: &str, cmd: &mut std::process::Command) -> Value {
    let out = narwhal_testkit::output(cmd);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{name}: {text}");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    assert_eq!(value["version"], 1, "{name}: {text}");
    let mut s = String::new();
    shape(&value, 0, &mut s);
    insta::assert_snapshot!(format!("json_{name}"), s);
    value
}

fn store_path(v: &Value) -> &str {
    let s = v.as_str().unwrap();
    assert!(s.starts_with("/nix/store/") && Path::new(s).exists(), "{s}");
    s
}

#[test]
fn every_json_document_has_its_documented_shape() {
    let tmp = tempdir();
    let cache = Cache::new(&["app"], "zstd");
    let n = closure(&cache.root).len();
    let url = file_url(&cache.dir, "");

    let to = tmp.path().join("to");
    let fetched = json("fetch", fetch_cmd(&url, &cache.public_key, &cache.root, &to).arg("--json"));
    assert_eq!((fetched["paths"].as_u64(), fetched["downloaded"].as_u64()), (Some(n as u64), Some(n as u64)));
    let base = cache.root.file_name().unwrap();
    assert_eq!(fetched["roots"][0], to.join(base).to_str().unwrap());

    let sizes = json("size", narwhal().arg("size").arg(&to).arg("--json"));
    let listed = sizes["paths"].as_array().unwrap();
    assert_eq!(listed.len(), n, "the manifest directory is not a store path: {sizes}");
    let sum: u64 = listed.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    assert!(sum <= sizes["total_bytes"].as_u64().unwrap());

    let app = deploy_fixture("app");
    let dest = tmp.path().join("cache");
    let pushed = json("push", narwhal().arg("push").arg(&app).args(["--to", &file_url(&dest, ""), "--json"]));
    assert_eq!(
        (pushed["paths"].as_u64(), pushed["uploaded"].as_u64()),
        (Some(closure(&app).len() as u64), Some(closure(&app).len() as u64))
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = json("missing", narwhal().arg("missing").arg(&app).args(["--in", &file_url(&empty, ""), "--json"]));
    let missing_paths = missing["missing"].as_array().unwrap();
    assert_eq!(missing_paths.len(), closure(&app).len());
    store_path(&missing_paths[0]);

    crate::ok(narwhal().args(["pin", "web"]).arg(&app).args(["--to", &file_url(&dest, ""), "--rev", "r1"]));
    let pins = json("pins", narwhal().args(["pins", "--from", &file_url(&dest, ""), "--json"]));
    let pins = pins["pins"].as_array().unwrap();
    assert_eq!(pins.len(), 2, "{pins:?}");
    assert_eq!(store_path(&pins[0]["path"]), app.to_str().unwrap());
    assert!(pins.iter().any(|p| p["revision"] == "r1"), "{pins:?}");

    let layout = tmp.path().join("image");
    let image = json(
        "image",
        narwhal().arg("image").arg(&app).args(["--to", &format!("oci:{}:v1", layout.display()), "--json"]),
    );
    assert!(image["manifest"].as_str().unwrap().starts_with("sha256:"));
    let in_layers: usize =
        image["layers"].as_array().unwrap().iter().map(|l| l["paths"].as_array().unwrap().len()).sum();
    assert_eq!(in_layers, closure(&app).len());
}
