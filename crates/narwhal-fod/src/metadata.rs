//! Where a `maven-metadata.xml` belongs in a repository, read from the file itself.
//!
//! Gradle caches these files under `resources-2.1/<n>/<sha1>/maven-metadata.xml`, named by their
//! contents, not their URL, so the coordinates come from the XML: the `groupId`, `artifactId` and
//! `version` elements directly under the root `metadata` element (Maven's repository metadata
//! model). Group metadata (plugin prefixes) has a group only, artifact metadata (the versions that
//! ranges resolve from) a group and an artifact, snapshot metadata all three.
//!
//! The reader knows only what these files use: elements, text, comments, processing instructions
//! and declarations; entities other than the five predefined ones and CDATA are refused, as is a
//! file larger than [`MAX_LEN`].

use std::path::{Path, PathBuf};

/// The largest metadata file read (Maven Central's largest listings are a few hundred KiB).
pub const MAX_LEN: u64 = 16 << 20;

/// The coordinates a metadata file is about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coordinates {
    pub group: String,
    pub artifact: Option<String>,
    pub version: Option<String>,
}

impl Coordinates {
    /// The file's path in a Maven repository.
    pub fn path(&self, file_name: &str) -> PathBuf {
        let mut p: PathBuf = self.group.split('.').collect();
        if let Some(a) = &self.artifact {
            p.push(a);
            if let Some(v) = &self.version {
                p.push(v);
            }
        }
        p.push(file_name);
        p
    }
}

/// Reads the coordinates of the metadata document `xml`.
pub fn coordinates(xml: &[u8]) -> Result<Coordinates, String> {
    let mut found = Coordinates::default();
    let mut group = None;
    let mut depth = 0usize;
    let mut text: Option<(Vec<u8>, Vec<u8>)> = None; // (element name, its text) at depth 2
    let mut rest = xml;
    while !rest.is_empty() {
        let Some(lt) = memchr::memchr(b'<', rest) else {
            push_text(&mut text, rest);
            break;
        };
        let (before, tag) = rest.split_at(lt);
        push_text(&mut text, before);
        if let Some(after) = tag.strip_prefix(b"<!--") {
            rest = skip_past(after, b"-->")?;
        } else if tag.starts_with(b"<![CDATA[") {
            return Err("CDATA sections are not part of repository metadata".into());
        } else if let Some(after) = tag.strip_prefix(b"<?") {
            rest = skip_past(after, b"?>")?;
        } else if let Some(after) = tag.strip_prefix(b"<!") {
            rest = skip_past(after, b">")?;
        } else if let Some(after) = tag.strip_prefix(b"</") {
            let end = memchr::memchr(b'>', after).ok_or("an end tag is not closed")?;
            let name = after.get(..end).unwrap_or_default().trim_ascii();
            if depth == 0 {
                return Err("an end tag closes nothing".into());
            }
            if depth == 2 {
                if let Some((open, value)) = text.take() {
                    if open != name {
                        return Err("an element ends with another's end tag".into());
                    }
                    let value = decode(value.trim_ascii())?;
                    match name {
                        b"groupId" if group.is_none() => group = Some(value),
                        b"artifactId" if found.artifact.is_none() => found.artifact = Some(value),
                        b"version" if found.version.is_none() => found.version = Some(value),
                        _ => {}
                    }
                }
            }
            depth -= 1;
            rest = after.get(end + 1..).unwrap_or_default();
        } else {
            let after = tag.get(1..).unwrap_or_default();
            let end = memchr::memchr(b'>', after).ok_or("a start tag is not closed")?;
            let inner = after.get(..end).unwrap_or_default();
            let self_closing = inner.ends_with(b"/");
            let name_end = inner.iter().position(|b| b.is_ascii_whitespace() || *b == b'/').unwrap_or(inner.len());
            let name = inner.get(..name_end).unwrap_or_default();
            if name.is_empty() {
                return Err("a tag has no name".into());
            }
            if depth == 0 && name != b"metadata" {
                return Err("the root element is not <metadata>".into());
            }
            if !self_closing {
                depth += 1;
                // Text is kept only for leaf elements directly under the root.
                text = (depth == 2).then(|| (name.to_vec(), Vec::new()));
            }
            rest = after.get(end + 1..).unwrap_or_default();
        }
    }
    if depth != 0 {
        return Err("the document ends inside an element".into());
    }
    found.group = group.ok_or("it has no <groupId> under <metadata>")?;
    if found.artifact.is_none() {
        found.version = None;
    }
    Ok(found)
}

fn push_text(text: &mut Option<(Vec<u8>, Vec<u8>)>, bytes: &[u8]) {
    if let Some((_, t)) = text {
        t.extend_from_slice(bytes);
    }
}

fn skip_past<'a>(s: &'a [u8], end: &[u8]) -> Result<&'a [u8], String> {
    let at = memchr::memmem::find(s, end).ok_or("a comment or declaration is not closed")?;
    Ok(s.get(at + end.len()..).unwrap_or_default())
}

/// Text with the five predefined entities replaced.
fn decode(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "a coordinate is not UTF-8".to_owned())?;
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp..).unwrap_or_default();
        let (entity, c) = [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>'), ("&quot;", '"'), ("&apos;", '\'')]
            .into_iter()
            .find(|(e, _)| after.starts_with(e))
            .ok_or("a coordinate holds an entity other than &amp; &lt; &gt; &quot; &apos;")?;
        out.push(c);
        rest = after.get(entity.len()..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads `path` whole, refusing one larger than [`MAX_LEN`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, crate::Error> {
    use std::io::Read as _;
    let f = crate::layout::open_regular(path)?;
    let mut buf = Vec::new();
    f.take(MAX_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    if buf.len() as u64 > MAX_LEN {
        return Err(crate::Error::Metadata {
            path: path.to_path_buf(),
            why: format!("it is larger than {MAX_LEN} bytes, more than repository metadata holds"),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_metadata_names_group_and_artifact() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment with <groupId>wrong</groupId> -->
<metadata modelVersion="1.1.0">
  <groupId>org.apache.commons</groupId>
  <artifactId>commons-lang3</artifactId>
  <versioning>
    <latest>3.12.0</latest>
    <versions><version>3.11</version><version>3.12.0</version></versions>
    <lastUpdated>20210301000000</lastUpdated>
  </versioning>
</metadata>
"#;
        let c = coordinates(xml).unwrap();
        assert_eq!(
            c,
            Coordinates { group: "org.apache.commons".into(), artifact: Some("commons-lang3".into()), version: None }
        );
        assert_eq!(c.path("maven-metadata.xml"), Path::new("org/apache/commons/commons-lang3/maven-metadata.xml"));
    }

    #[test]
    fn group_and_snapshot_metadata() {
        let group = b"<metadata><groupId>org.example</groupId><plugins><plugin><prefix>x</prefix>\
                      <artifactId>x-maven-plugin</artifactId></plugin></plugins></metadata>";
        assert_eq!(coordinates(group).unwrap().path("m.xml"), Path::new("org/example/m.xml"));
        let snap = b"<metadata><groupId>a&amp;b</groupId><artifactId>c</artifactId><version>1-SNAPSHOT</version>\
                     <versioning><snapshot><timestamp>1</timestamp></snapshot></versioning></metadata>";
        let c = coordinates(snap).unwrap();
        assert_eq!(c.group, "a&b");
        assert_eq!(c.version.as_deref(), Some("1-SNAPSHOT"));
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            &b""[..],
            b"<project><groupId>a</groupId></project>",
            b"<metadata><groupId>a</groupId>",
            b"<metadata><groupId>a</artifactId></metadata>",
            b"<metadata><groupId>&foo;</groupId></metadata>",
            b"<metadata><!-- open",
            b"<metadata></metadata></metadata>",
            b"<metadata><artifactId>x</artifactId></metadata>",
            b"<metadata><groupId><![CDATA[x]]></groupId></metadata>",
            b"<metadata><groupId>\xff</groupId></metadata>",
            b"<",
            b"</x>",
        ] {
            assert!(coordinates(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = coordinates(&bytes);
        }

        #[test]
        fn never_panics_on_tag_soup(parts in proptest::collection::vec(
            proptest::sample::select(vec!["<metadata>", "</metadata>", "<groupId>", "</groupId>", "<a/>", "<!--", "-->",
                "<?x", "?>", "&amp;", "&", "<", ">", "x", " ", "<artifactId>", "</artifactId>", "<![CDATA["]), 0..40)) {
            let _ = coordinates(parts.concat().as_bytes());
        }
    }
}
