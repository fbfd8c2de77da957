//! `narwhal fod` against real Gradle (Debian's 4.4.1), real Maven and real Nix.
//!
//! "The internet" is Debian's `/usr/share/maven-repo` served on loopback (with a
//! `maven-metadata.xml` for commons-lang3, as Maven Central has, since the project asks for it by a
//! version range). The project has three dependencies: commons-lang3 by the range `[3.0,4.0)`,
//! commons-io, and junit, which brings hamcrest with it. A build with network fills a fresh cache,
//! narwhal lays it out, the server stops, and a build with a fresh cache must succeed offline on
//! the layout alone; Nix must accept the printed hash for a fixed-output derivation copying it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use narwhal_testkit::http::HttpServer;
use narwhal_testkit::{nix, output, run, run_text, tempdir};

use super::{fails_with, narwhal, ok};

/// Debian's Maven repository (maven-repo-helper and the libraries' -java packages fill it).
const DEBIAN_REPO: &str = "/usr/share/maven-repo";
/// Every build tool run is bounded: Gradle on two busy cores takes about 15 s.
const TOOL_TIMEOUT_SECS: &str = "300";

/// The versions commons-lang3's listing offers; the range `[3.0,4.0)` picks 3.12.0.
const LANG3_METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>org.apache.commons</groupId>
  <artifactId>commons-lang3</artifactId>
  <versioning>
    <latest>3.12.0</latest>
    <release>3.12.0</release>
    <versions>
      <version>3.12.0</version>
    </versions>
    <lastUpdated>20210301000000</lastUpdated>
  </versioning>
</metadata>
"#;

/// A directory serving Debian's repository through symlinks, plus commons-lang3's listing.
fn internet() -> narwhal_testkit::TempDir {
    let dir = tempdir();
    let lang3 = ["org", "apache", "commons", "commons-lang3"];
    let (mut real, mut served) = (PathBuf::from(DEBIAN_REPO), dir.path().to_path_buf());
    // Each level along the way is a real directory; everything beside it is a link to Debian's.
    for (i, part) in std::iter::once("").chain(lang3).enumerate() {
        if i > 0 {
            real.push(part);
            served.push(part);
            fs::create_dir(&served).unwrap();
        }
        let next = lang3.get(i).copied();
        for e in fs::read_dir(&real).unwrap() {
            let name = e.unwrap().file_name();
            if Some(name.to_str().unwrap()) != next {
                symlink(real.join(&name), served.join(&name)).unwrap();
            }
        }
    }
    fs::write(served.join("maven-metadata.xml"), LANG3_METADATA).unwrap();
    dir
}

/// A command bounded by [`TOOL_TIMEOUT_SECS`].
fn bounded(program: &str) -> Command {
    let mut c = Command::new("timeout");
    c.arg(TOOL_TIMEOUT_SECS).arg(program).stdin(std::process::Stdio::null());
    c
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The recursive NAR hash as printed on narwhal's first line of output.
fn printed_hash(stdout: &[u8]) -> (String, String) {
    let s = String::from_utf8(stdout.to_vec()).unwrap();
    let hash = s.lines().next().unwrap().to_owned();
    assert!(hash.starts_with("sha256-"), "{s}");
    let attributes = s.lines().skip(2).collect::<Vec<_>>().join("\n");
    (hash, attributes)
}

fn nix_hash_path(path: &Path) -> String {
    run_text(nix("nix").args(["hash", "path"]).arg(path))
}

/// Builds a fixed-output derivation whose builder copies `tree` to `$out`, declaring the
/// attributes narwhal printed, as pasted. The name is new each time, so Nix really builds.
fn build_fod(attributes: &str, tree: &Path) -> Output {
    let dir = tempdir();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let expr = format!(
        "derivation {{\n  name = \"narwhal-fod-test-{}-{nanos}\";\n  system = builtins.currentSystem;\n  \
         builder = \"/bin/sh\";\n  args = [ \"-c\" \"cp -r {} $out\" ];\n  PATH = \"/usr/bin:/bin\";\n  {}\n}}\n",
        std::process::id(),
        tree.display(),
        attributes.replace('\n', "\n  ")
    );
    let file = dir.path().join("deps.nix");
    fs::write(&file, expr).unwrap();
    output(nix("nix-build").arg(&file).args(["--no-out-link", "--quiet"]))
}

// ---------------------------------------------------------------------------------------------
// Gradle

/// The "usual" init script: it clears the repositories once projects are loaded, so the
/// `repositories {}` block of a build script, which runs later, adds its remote back.
const NAIVE_INIT_SCRIPT: &str = r"gradle.projectsLoaded {
    rootProject.allprojects {
        buildscript { repositories { clear(); maven { url System.getenv('NARWHAL_FOD_REPO') } } }
        repositories { clear(); maven { url System.getenv('NARWHAL_FOD_REPO') } }
    }
}
";

/// The repositories the build ends up with, one line each: plugin management, then every
/// project's buildscript and project repositories.
const REPOSITORY_LIST: &str = r#"task printRepos {
    doLast {
        rootProject.allprojects { p ->
            p.buildscript.repositories.each { println "REPO ${p.path} buildscript ${it.name} ${it.hasProperty('url') ? it.url : '-'}" }
            p.repositories.each { println "REPO ${p.path} project ${it.name} ${it.hasProperty('url') ? it.url : '-'}" }
        }
    }
}
"#;

/// A two-project build whose every script names `remote` as its repository.
fn gradle_project(remote: &str, commons_io: &str) -> narwhal_testkit::TempDir {
    let dir = tempdir();
    let root = dir.path();
    fs::create_dir_all(root.join("app/src/main/java/demo")).unwrap();
    fs::write(
        root.join("settings.gradle"),
        format!(
            "pluginManagement {{ repositories {{ maven {{ url '{remote}' }} }} }}\ninclude 'app'\n\
             gradle.settingsEvaluated {{ s -> s.pluginManagement.repositories.each {{ \
             println \"REPO settings pluginManagement ${{it.name}} ${{it.hasProperty('url') ? it.url : '-'}}\" }} }}\n"
        ),
    )
    .unwrap();
    fs::write(
        root.join("build.gradle"),
        format!("buildscript {{ repositories {{ maven {{ url '{remote}' }} }} }}\n{REPOSITORY_LIST}"),
    )
    .unwrap();
    fs::write(
        root.join("app/build.gradle"),
        format!(
            "apply plugin: 'java'\nrepositories {{ maven {{ url '{remote}' }} }}\ndependencies {{\n  \
             compile 'org.apache.commons:commons-lang3:[3.0,4.0)'\n  compile 'commons-io:commons-io:{commons_io}'\n  \
             compile 'junit:junit:4.13.2'\n}}\n\
             task resolve {{ doLast {{ configurations.compileClasspath.files.each {{ println \"FILE ${{it.name}}\" }} }} }}\n"
        ),
    )
    .unwrap();
    fs::write(
        root.join("app/src/main/java/demo/Main.java"),
        "package demo;\npublic class Main { public static void main(String[] a) { System.out.println(\
         org.apache.commons.lang3.StringUtils.capitalize(org.apache.commons.io.FilenameUtils.getName(\"/x/narwhal\"))); } }\n",
    )
    .unwrap();
    dir
}

/// `gradle build printRepos :app:resolve` in a fresh copy of the project with the Gradle user home `home`.
fn gradle(project: &Path, home: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = bounded("gradle");
    c.current_dir(project).args(["--no-daemon", "--console=plain", "-g"]).arg(home).args(extra);
    c.args(["build", "printRepos", ":app:resolve"]).env_remove("NARWHAL_FOD_REPO");
    for (k, v) in env {
        c.env(k, v);
    }
    output(&mut c)
}

/// Whether a Gradle run succeeded with every repository of every scope being `repo` alone.
fn only_repository(out: &Output, repo: &Path) -> Result<(), String> {
    let log = text(out);
    if !out.status.success() {
        return Err(format!("the build failed:\n{log}"));
    }
    let url = format!("file:{}/", repo.display());
    let repos: Vec<&str> = log.lines().filter(|l| l.starts_with("REPO ")).collect();
    for scope in [
        "REPO settings pluginManagement ",
        "REPO : buildscript ",
        "REPO : project ",
        "REPO :app buildscript ",
        "REPO :app project ",
    ] {
        let listed: Vec<&&str> = repos.iter().filter(|l| l.starts_with(scope)).collect();
        if listed.is_empty() || listed.iter().any(|l| !l.ends_with(&format!(" {url}"))) {
            return Err(format!("{scope}lists {listed:?}, not only {url}"));
        }
    }
    let files: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("FILE ")).collect();
    let want = ["commons-lang3-3.12.0.jar", "commons-io-2.11.0.jar", "junit-4.13.2.jar", "hamcrest-debian.jar"];
    if files != want {
        return Err(format!("the classpath is {files:?}, not {want:?}"));
    }
    Ok(())
}

#[test]
fn gradle_capture_builds_offline_pinned_and_hashes_as_nix_does() {
    let work = tempdir();
    let w = work.path();
    let site = internet();
    let server = HttpServer::start(site.path(), &[]);
    let remote = format!("{}/", server.url());

    // Two captures from scratch, each with a fresh Gradle user home.
    for home in ["home-a", "home-b"] {
        let project = gradle_project(&remote, "2.11.0");
        let out = gradle(project.path(), &w.join(home), &[], &[]);
        assert!(out.status.success(), "online build failed:\n{}", text(&out));
    }
    let served = server.requests();
    assert!(
        served.contains(&"GET /org/apache/commons/commons-lang3/maven-metadata.xml 200".to_owned()),
        "the range was resolved from the served listing: {served:?}"
    );
    assert!(served.iter().any(|r| r.starts_with("GET /org/hamcrest/hamcrest/")), "junit's dependency: {served:?}");

    let repo = w.join("deps");
    let script = w.join("narwhal.gradle");
    let printed =
        ok(narwhal().args(["fod", "gradle"]).arg(w.join("home-a")).arg(&repo).arg("--init-script").arg(&script));
    let (hash, attributes) = printed_hash(&printed);
    assert_eq!(hash, nix_hash_path(&repo), "the printed hash is what `nix hash path` computes");
    assert_eq!(
        attributes,
        format!("outputHashAlgo = \"sha256\";\noutputHashMode = \"recursive\";\noutputHash = \"{hash}\";")
    );
    for file in [
        "org/apache/commons/commons-lang3/maven-metadata.xml",
        "org/apache/commons/commons-lang3/3.12.0/commons-lang3-3.12.0.jar",
        "org/apache/commons/commons-lang3/3.12.0/commons-lang3-3.12.0.pom",
        "org/apache/commons/commons-parent/debian/commons-parent-debian.pom",
        "commons-io/commons-io/2.11.0/commons-io-2.11.0.jar",
        "junit/junit/4.13.2/junit-4.13.2.pom",
        "org/hamcrest/hamcrest/debian/hamcrest-debian.jar",
    ] {
        assert!(repo.join(file).is_file(), "{file} is laid out");
    }
    assert_eq!(
        fs::read_to_string(repo.join("org/apache/commons/commons-lang3/maven-metadata.xml")).unwrap(),
        LANG3_METADATA
    );
    let all = run_text(Command::new("find").arg(&repo).args(["-type", "f"]));
    assert!(!all.contains(".lock") && !all.contains(".bin"), "no Gradle index or lock: {all}");

    let second = ok(narwhal().args(["fod", "gradle"]).arg(w.join("home-b")).arg(w.join("deps-b")));
    assert_eq!(printed_hash(&second).0, hash, "two captures from scratch hash the same");

    // No more internet.
    drop(server);
    let project = gradle_project(&remote, "2.11.0");
    let pinned = gradle(
        project.path(),
        &w.join("home-offline"),
        &["--offline", "--init-script", script.to_str().unwrap()],
        &[("NARWHAL_FOD_REPO", &repo)],
    );
    only_repository(&pinned, &repo).unwrap();

    // The usual init script lets the build scripts' repositories back in: the check catches it.
    let naive = w.join("naive.gradle");
    fs::write(&naive, NAIVE_INIT_SCRIPT).unwrap();
    let out = gradle(
        project.path(),
        &w.join("home-naive"),
        &["--offline", "--init-script", naive.to_str().unwrap()],
        &[("NARWHAL_FOD_REPO", &repo)],
    );
    let err = only_repository(&out, &repo).expect_err("the naive init script leaves the remote in");
    assert!(err.contains(&remote), "{err}");

    // Without the variable the build stops at once, saying what to set.
    let out =
        gradle(project.path(), &w.join("home-unset"), &["--offline", "--init-script", script.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("narwhal: NARWHAL_FOD_REPO is not set"), "{}", text(&out));

    // Nix builds the fixed-output derivation with the printed attributes on the first try.
    let built = build_fod(&attributes, &repo);
    assert!(built.status.success(), "nix-build failed:\n{}", text(&built));
    let path = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
    assert_eq!(nix_hash_path(&path), hash);
}

// ---------------------------------------------------------------------------------------------
// Maven

/// A project with the same three dependencies.
fn maven_project(commons_io: &str) -> narwhal_testkit::TempDir {
    let dir = tempdir();
    let dep = |g: &str, a: &str, v: &str| {
        format!("<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>")
    };
    fs::write(
        dir.path().join("pom.xml"),
        format!(
            "<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion>\
             <groupId>demo</groupId><artifactId>demo</artifactId><version>1</version><dependencies>{}{}{}</dependencies></project>\n",
            dep("org.apache.commons", "commons-lang3", "[3.0,4.0)"),
            dep("commons-io", "commons-io", commons_io),
            dep("junit", "junit", "4.13.2"),
        ),
    )
    .unwrap();
    dir
}

/// The classpath Maven resolves for the project with the local repository `repo`, with `settings`.
fn mvn(project: &Path, repo: &Path, settings: &str, offline: bool) -> (Output, String) {
    let settings_file = project.join("settings.xml");
    fs::write(&settings_file, settings).unwrap();
    let classpath = project.join("classpath.txt");
    let _ = fs::remove_file(&classpath);
    let mut c = bounded("mvn");
    c.current_dir(project).arg("-B").arg("-s").arg(&settings_file);
    if offline {
        c.arg("-o");
    }
    c.arg(format!("-Dmaven.repo.local={}", repo.display()))
        .arg("org.apache.maven.plugins:maven-dependency-plugin:3.5.0:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", classpath.display()));
    let out = output(&mut c);
    (out, fs::read_to_string(&classpath).unwrap_or_default())
}

fn mirror_settings(url: &str) -> String {
    format!("<settings><mirrors><mirror><id>internet</id><mirrorOf>*</mirrorOf><url>{url}/</url></mirror></mirrors></settings>")
}

/// What an offline build has: no mirror, Maven's default repository (central) only.
const OFFLINE_SETTINGS: &str = "<settings/>";

#[test]
fn maven_capture_builds_offline_and_a_changed_dependency_changes_the_hash() {
    let work = tempdir();
    let w = work.path();
    let site = internet();
    let server = HttpServer::start(site.path(), &[]);
    let project = maven_project("2.11.0");
    let (out, _) = mvn(project.path(), &w.join("m2"), &mirror_settings(&server.url()), false);
    assert!(out.status.success(), "online build failed:\n{}", text(&out));
    assert!(w.join("m2/org/apache/commons/commons-lang3/3.12.0/_remote.repositories").is_file());

    let repo = w.join("deps");
    let (hash, attributes) = printed_hash(&ok(narwhal().args(["fod", "maven"]).arg(w.join("m2")).arg(&repo)));
    assert_eq!(hash, nix_hash_path(&repo));
    let all = run_text(Command::new("find").arg(&repo).args(["-type", "f"]));
    for volatile in
        ["_remote.repositories", ".lastUpdated", "resolver-status.properties", "maven-metadata-internet.xml"]
    {
        assert!(!all.contains(volatile), "{volatile} is left out: {all}");
    }
    assert_eq!(
        fs::read_to_string(repo.join("org/apache/commons/commons-lang3/maven-metadata-local.xml")).unwrap(),
        LANG3_METADATA,
        "the cached listing is the local one"
    );
    drop(server);

    // A plain copy of the cache does not build offline: Maven recorded where each file came from.
    let copy = w.join("m2-copy");
    run(Command::new("cp").arg("-a").arg(w.join("m2")).arg(&copy));
    let (out, _) = mvn(project.path(), &copy, OFFLINE_SETTINGS, true);
    assert!(!out.status.success(), "a plain copy should not build offline:\n{}", text(&out));

    // The layout does, from itself alone, and the build leaves it as it was.
    let (out, classpath) = mvn(project.path(), &repo, OFFLINE_SETTINGS, true);
    assert!(out.status.success(), "offline build failed:\n{}", text(&out));
    assert!(!text(&out).contains("Downloading"), "{}", text(&out));
    let entries: Vec<&str> = classpath.split(':').collect();
    let want = [
        "org/apache/commons/commons-lang3/3.12.0/commons-lang3-3.12.0.jar",
        "commons-io/commons-io/2.11.0/commons-io-2.11.0.jar",
        "junit/junit/4.13.2/junit-4.13.2.jar",
        "org/hamcrest/hamcrest/debian/hamcrest-debian.jar",
    ]
    .map(|f| repo.join(f).display().to_string());
    assert_eq!(entries, want);
    assert_eq!(nix_hash_path(&repo), hash, "the offline build wrote nothing into the repository");

    let built = build_fod(&attributes, &repo);
    assert!(built.status.success(), "nix-build failed:\n{}", text(&built));

    // One dependency changes: capture again, a new hash; the old one is refused by Nix, which names the new one.
    let server = HttpServer::start(site.path(), &[]);
    let changed = maven_project("debian");
    let (out, classpath) = mvn(changed.path(), &w.join("m2-changed"), &mirror_settings(&server.url()), false);
    assert!(out.status.success(), "online build failed:\n{}", text(&out));
    assert!(classpath.contains("commons-io/commons-io/debian/"), "{classpath}");
    let repo_changed = w.join("deps-changed");
    let (new_hash, _) =
        printed_hash(&ok(narwhal().args(["fod", "maven"]).arg(w.join("m2-changed")).arg(&repo_changed)));
    assert_ne!(new_hash, hash);
    let stale = build_fod(&attributes, &repo_changed);
    assert!(!stale.status.success(), "Nix accepted a stale hash");
    let log = text(&stale);
    assert!(log.contains("hash mismatch") && log.contains(&new_hash), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Checks and refusals

#[test]
fn fod_check_finds_store_references_fifos_and_timestamps() {
    let dir = tempdir();
    let d = dir.path();
    fs::create_dir(d.join("lib")).unwrap();
    fs::write(d.join("lib/clean.pom"), "<project/>\n").unwrap();
    assert_eq!(ok(narwhal().args(["fod", "check"]).arg(d)), b"", "a clean tree has nothing to say");

    let mut jdk = b"PK\x03\x04 binary ".to_vec();
    jdk.extend_from_slice(b"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-openjdk-17/bin/java\0");
    fs::write(d.join("lib/launcher.jar"), &jdk).unwrap();
    run(Command::new("mkfifo").arg(d.join("lib/pipe")));
    fs::write(
        d.join("lib/resolver-status.properties"),
        "#NOTE: This is a Maven Resolver internal implementation file\n#Wed Dec 02 14:33:42 UTC 2026\nx.lastUpdated=1\n",
    )
    .unwrap();
    let cmd = &mut narwhal();
    let stderr = fails_with(cmd.args(["fod", "check"]).arg(d), 3);
    assert!(stderr.contains("2 of the 4 findings"), "{stderr}");
    let stdout = String::from_utf8(narwhal_testkit::output(cmd).stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "fails: lib/launcher.jar: references /nix/store/0123456789abcdfghijklmnpqrsvwxyz-openjdk-17, which a fixed-output derivation may not",
            "fails: lib/pipe: is a named pipe, which a store path cannot hold",
            "drifts: lib/resolver-status.properties: matches resolver-status.properties: Maven's times of its last update checks",
            "drifts: lib/resolver-status.properties: embeds the capture time (the date comment java.util.Properties writes: \"#Wed Dec 02 14:33:42 UTC 2026\")",
        ]
    );
}

/// A Gradle cache of one file, under the SHA-1 folder `sha1`.
fn tiny_gradle_home(sha1: &str) -> narwhal_testkit::TempDir {
    let home = tempdir();
    let dir = home.path().join(format!("caches/modules-2/files-2.1/org.example/lib/1.0/{sha1}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("lib-1.0.module"), "{}\n").unwrap();
    fs::create_dir_all(home.path().join("caches/modules-2/metadata-2.36")).unwrap();
    fs::write(home.path().join("caches/modules-2/modules-2.lock"), "").unwrap();
    home
}

#[test]
fn fod_gradle_refuses_a_corrupt_cache_and_leaves_nothing() {
    let work = tempdir();
    let sha1_of_module = "5f36b2ea290645ee34d943220a14b54ee5ea5be5"; // printf '{}\n' | sha1sum
    let good = tiny_gradle_home(sha1_of_module);
    let out = work.path().join("deps");
    let printed = ok(narwhal().args(["fod", "gradle"]).arg(good.path()).arg(&out));
    assert_eq!(printed_hash(&printed).0, nix_hash_path(&out));
    assert_eq!(fs::read_to_string(out.join("org/example/lib/1.0/lib-1.0.module")).unwrap(), "{}\n");
    let stderr = fails_with(narwhal().args(["fod", "gradle"]).arg(good.path()).arg(&out), 1);
    assert!(stderr.contains("already exists") && stderr.contains("hint:"), "{stderr}");

    let bad = tiny_gradle_home("abc123");
    let out = work.path().join("bad");
    let stderr = fails_with(narwhal().args(["fod", "gradle"]).arg(bad.path()).arg(&out), 1);
    assert!(stderr.contains("lib-1.0.module has SHA-1 5f36b2ea") && stderr.contains("abc123"), "{stderr}");
    assert!(stderr.contains("hint: the cached file is corrupt"), "{stderr}");
    assert_eq!(super::entries(work.path()), ["deps"], "nothing under OUT, no temporary tree");

    let stderr = fails_with(narwhal().args(["fod", "gradle"]).arg(work.path()).arg(work.path().join("x")), 1);
    assert!(
        stderr.contains("is not a Gradle user home") && stderr.contains("hint: pass the GRADLE_USER_HOME"),
        "{stderr}"
    );
}
