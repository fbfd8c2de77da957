//! The command line as users see it: every command's help, the version, and the error of every
//! bad flag value, as snapshots (exit status, stdout, stderr); the completion scripts shells load
//! and the manual page `man` renders.

use std::process::Command;

use crate::{narwhal, snapshot};

/// Every command and subcommand, as typed.
const COMMANDS: &[&str] = &[
    "",
    "nar",
    "nar dump",
    "nar unpack",
    "nar ls",
    "nar cat",
    "hash",
    "hash path",
    "hash file",
    "hash convert",
    "key",
    "key generate",
    "key public",
    "narinfo",
    "narinfo sign",
    "narinfo verify",
    "fetch",
    "slug",
    "push",
    "missing",
    "pin",
    "export",
    "import",
    "pins",
    "size",
    "image",
    "serve",
    "fod",
    "fod gradle",
    "fod maven",
    "fod check",
    "gc",
    "verify",
    "completions",
    "man",
];

#[test]
fn help_of_every_command() {
    for command in COMMANDS {
        let mut c = narwhal();
        c.args(command.split_whitespace()).arg("--help").env("COLUMNS", "100");
        let name = if command.is_empty() { "help".to_owned() } else { format!("help {command}") };
        insta::assert_snapshot!(name.replace(' ', "_"), snapshot(&mut c, &[]));
    }
}

#[test]
fn every_positional_argument_is_described() {
    // Help lines of arguments are `  <NAME>  description`: none may stand alone.
    for command in COMMANDS {
        let out = narwhal().args(command.split_whitespace()).arg("--help").env("COLUMNS", "200").output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let args = help.split("Arguments:\n").nth(1).map(|a| a.split("\n\n").next().unwrap_or_default());
        let lines: Vec<&str> = args.unwrap_or_default().lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with('<') || line.starts_with('[') {
                // The description follows on the same line, or (long help) on the next.
                let next = lines.get(i + 1).copied().unwrap_or_default();
                let described = line.contains("  ") || !(next.is_empty() || next.starts_with(['<', '[', '-']));
                assert!(described, "`narwhal {command}`: {line:?} has no description");
            }
        }
        // A group (nar, hash, key, narinfo, fod) has examples in each of its commands.
        let group = ["nar", "hash", "key", "narinfo", "fod"].contains(command);
        assert!(group || help.contains("Example"), "`narwhal {command} --help` has no example:\n{help}");
    }
}

#[test]
fn version_names_the_release_and_the_commit() {
    let mut c = narwhal();
    c.arg("--version");
    let text = snapshot(&mut c, &[]);
    let commit = text.split(" (").nth(1).and_then(|r| r.split(')').next()).unwrap().to_owned();
    assert!(
        commit == "unknown commit" || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    insta::assert_snapshot!(text.replace(&commit, "[COMMIT]"));
}

#[test]
fn bad_flag_values_are_refused_by_name() {
    let cases: &[(&str, &[&str])] = &[
        ("push_zstd_level_100", &["push", "/nix/store/x", "--to", "/tmp/c", "--level", "100"]),
        ("push_zstd_level_0", &["push", "/nix/store/x", "--to", "/tmp/c", "--level", "0"]),
        ("push_xz_level_10", &["push", "/nix/store/x", "--to", "/tmp/c", "--compression", "xz", "--level", "10"]),
        ("push_level_with_none", &["push", "/nix/store/x", "--to", "/tmp/c", "--compression", "none", "--level", "3"]),
        (
            "push_level_with_url_none",
            &["push", "/nix/store/x", "--to", "file:///tmp/c?compression=none", "--level", "3"],
        ),
        ("push_compression_lz4", &["push", "/nix/store/x", "--to", "/tmp/c", "--compression", "lz4"]),
        ("push_jobs_0", &["push", "/nix/store/x", "--to", "/tmp/c", "--jobs", "0"]),
        ("fetch_jobs_1000", &["fetch", "/nix/store/x", "--to", "/tmp/d", "--jobs", "1000"]),
        ("fetch_wait_minus", &["fetch", "/nix/store/x", "--to", "/tmp/d", "--wait", "-1"]),
        ("pin_bad_name", &["pin", "../web", "/nix/store/x", "--to", "/tmp/c"]),
        ("pin_bad_rev", &["pin", "web", "/nix/store/x", "--to", "/tmp/c", "--rev", "a/b"]),
        ("pin_keep_0", &["pin", "web", "/nix/store/x", "--to", "/tmp/c", "--keep", "0"]),
        ("image_max_layers_0", &["image", "/nix/store/x", "--to", "oci:/tmp/i", "--max-layers", "0"]),
        ("image_arch_x86", &["image", "/nix/store/x", "--to", "oci:/tmp/i", "--arch", "x86"]),
        ("image_format_v1", &["image", "/nix/store/x", "--to", "oci:/tmp/i", "--format", "v1"]),
        ("hash_type_sha3", &["hash", "file", "/dev/null", "--type", "sha3"]),
        ("serve_listen_port", &["serve", "--listen", "localhost:99999"]),
        ("completions_tcsh", &["completions", "tcsh"]),
    ];
    for (name, args) in cases {
        let mut c = narwhal();
        c.args(*args);
        let text = snapshot(&mut c, &[]);
        assert!(text.starts_with("exit status: 2\n"), "{args:?}: {text}");
        insta::assert_snapshot!(format!("bad_{name}"), text);
    }
}

#[test]
fn unknown_cache_url_parameters_are_errors_naming_the_known_ones() {
    let mut c = narwhal();
    c.args(["pins", "--from", "file:///tmp/c?compresion=xz"]);
    insta::assert_snapshot!(snapshot(&mut c, &[]));
}

#[test]
fn bash_loads_the_completion_script() {
    let bin = env!("CARGO_BIN_EXE_narwhal");
    for shell in ["bash", "zsh", "fish"] {
        let out = narwhal().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    let script = format!("source <('{bin}' completions bash) && complete -p narwhal");
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "complete -o bashdefault -o default -o nosort -F _narwhal narwhal"
    );
}

#[test]
fn man_renders_the_manual_page() {
    let tmp = narwhal_testkit::tempdir();
    let page = tmp.path().join("narwhal.1");
    let out = narwhal().arg("man").output().unwrap();
    assert!(out.status.success());
    std::fs::write(&page, &out.stdout).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    // Without a terminal, man overstrikes bold letters (`N\x08N`): keep the letters only.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&rendered.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    for part in ["NAME", "Deploy Nix closures", "SYNOPSIS", "SUBCOMMANDS", "narwhal-fetch(1)", "VERSION"] {
        assert!(text.contains(part), "no {part:?} in the rendered page:\n{text}");
    }
}
