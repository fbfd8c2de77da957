#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from real fixtures.

NARs and exports come from real Nix (`nix-store --dump`, `--export` of the
store paths of crates/narwhal-testkit/fixtures/formats.nix, built here), the
narinfos and the cache info from example/cache (written by `nix copy`), ELF
files from gcc and patchelf, compressed files from gzip, xz and zip. Run it from
anywhere as root (Nix without a daemon); it replaces the seed directories.
Seeds are small on purpose: libFuzzer grows them, `scripts/fuzz` keeps the
growth out of git.
"""

import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CACHE = ROOT / "example" / "cache"
NIX_CONFIG = "experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters ="
FIXTURES = ["empty-file", "empty-dir", "executable", "symlink-root", "symlinks", "deep", "sorting", "non-utf8", "app"]
PUSH_TOKEN = "fuzz-push-token-0123456789"  # crates/narwhal-fuzzcheck/src/router.rs


def nix(*args):
    env = dict(os.environ, NIX_CONFIG=NIX_CONFIG)
    return subprocess.run(args, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL).stdout


def seeds(target, items):
    d = CORPUS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, data in items:
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def wire_str(b):
    return struct.pack("<Q", len(b)) + b + b"\0" * (-len(b) % 8)


def main():
    built = nix("nix-build", str(ROOT / "crates/narwhal-testkit/fixtures/formats.nix"), "--no-out-link",
                *[a for f in FIXTURES for a in ("-A", f)]).decode().split()
    paths = dict(zip(FIXTURES, built))
    lib = nix("nix-store", "-qR", paths["app"]).decode().split()

    # NAR: every fixture, and the small NARs of the example cache.
    nars = [(f, nix("nix-store", "--dump", p)) for f, p in paths.items()]
    for nar in sorted(CACHE.glob("nar/*.nar.xz"), key=lambda p: p.stat().st_size)[:3]:
        nars.append(("example-" + nar.name[:8], lzma.decompress(nar.read_bytes())))
    seeds("nar", nars)

    # Export: one path, a closure with a reference (references first), and a legacy signature.
    one = nix("nix-store", "--export", paths["executable"])
    closure = nix("nix-store", "--export", *lib)
    # nix-store --export ends each path with u64(0); a legacy signature is u64(1) str(sig).
    legacy = one[:-16] + struct.pack("<Q", 1) + wire_str(b"cache-1:c2lnbmF0dXJl") + struct.pack("<Q", 0)
    seeds("export", [("one-path", one), ("closure", closure), ("legacy-signature", legacy),
                     ("empty", struct.pack("<Q", 0))])

    # Narinfo: as Nix wrote them, and the layouts other writers use.
    infos = [(p.stem[:8], p.read_text()) for p in sorted(CACHE.glob("*.narinfo"))]
    base = (CACHE / "5cnynnpam552yi3xkvljamav3a6d6iii.narinfo").read_text()
    infos += [
        ("unknown-deriver", base.replace("Deriver: svrm7d1i7gln9zfz8abnd3adjgxi0j9i-deploy-data.drv",
                                         "Deriver: unknown-deriver")),
        ("hex-narhash", base.replace("NarHash: sha256:0sq8zn31a4yqm5laxg1346fqbiybky1x43793rh7rfmafb128p77",
                                     "NarHash: sha256:" + "ab" * 32)),
        ("sri-narhash", base.replace("NarHash: sha256:0sq8zn31a4yqm5laxg1346fqbiybky1x43793rh7rfmafb128p77",
                                     "NarHash: sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")),
        ("no-references-ca-extra", base.replace("References: \n", "")
         + "CA: fixed:r:sha256:0sq8zn31a4yqm5laxg1346fqbiybky1x43793rh7rfmafb128p77\nX-Extra: yes\n"),
        ("two-sigs-system", base + "Sig: other-1:AAAA\nSystem: x86_64-linux\n"),
    ]
    seeds("narinfo", infos)

    # Store paths, bare and full, in other store directories, with something after them.
    sp = [Path(p).name for p in built[:4]]
    seeds("store_path", [(f"base-{i}", b) for i, b in enumerate(sp)] + [
        ("full", paths["app"]),
        ("inner", paths["app"] + "/bin/app"),
        ("other-dir", "/app/store\n/app/store/" + sp[0]),
        ("drv", "svrm7d1i7gln9zfz8abnd3adjgxi0j9i-deploy-data.drv"),
        ("name-chars", "0pqyvyw21p553pf74czgvqks0vjaqp0l-a+b-c._?=d"),
    ])

    # Hashes: every algorithm in every encoding.
    hashes = []
    for algo in ["md5", "sha1", "sha256", "sha512"]:
        for enc in ["base16", "nix32", "base64", "sri"]:
            h = nix("nix", "hash", "file", "--type", algo, "--" + {"nix32": "base32"}.get(enc, enc), str(ROOT / "example/ROOT")).decode().strip()
            prefixed = h if enc == "sri" else f"{algo}:{h}"
            hashes.append((f"{algo}-{enc}", prefixed))
            if enc == "nix32":
                hashes.append((f"{algo}-bare-nix32", h))
    hashes.append(("raw-64", bytes(range(64))))
    seeds("hash", hashes)

    seeds("cache_url", [(n, u) for n, u in [
        ("file", "file:///var/cache/nix?priority=30&compression=zstd"),
        ("plain", "/srv/cache"),
        ("percent", "file:///a%20b?secret-key=%2Fetc%2Fnix%2Fcache.sec"),
        ("https", "https://cache.example.org/sub/?priority=40"),
        ("credentials", "https://user:secret@cache.example.org:8443/x"),
        ("s3", "s3://nix-cache?region=eu-west-1&endpoint=http://127.0.0.1:3900&profile=ci"),
        ("s3-prefix", "s3://b/team/cache/?scheme=http&endpoint=s3.example.org"),
    ]])

    seeds("cache_info", [
        ("example", (CACHE / "nix-cache-info").read_text()),
        ("full", "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"),
        ("lenient", "junk line\nStoreDir:  /app/store \nPriority:30\nWantMassQuery: 0"),
    ])

    store_path = paths["app"]
    seeds("pin", [
        ("latest", f"Name: web\nStorePath: {store_path}\nCreated: 1767225600\n"),
        ("revision", f"Name: web\nStorePath: {store_path}\nRevision: 3f2a9c\nCreated: 42\nFuture: ok\n"),
        ("key-with-rev", "web@3f2a9c"),
    ])

    seeds("slug_filter", [
        ("docs", b"# trim docs\n- /store/*/share/doc/\n- *.a\n+ /store/*/lib/***\n- **/include\n\0"
                 b"store/abc-x/share/doc\0store/abc-x/lib/libfoo.a\0store/abc-x/lib/sub/x.h\0store/abc-x/include"),
        ("long-forms", b"include /store/keep/**\nexclude_*.o\r- [a-c]?x\\*\n;comment\n\0store/keep/a/b\0x.o\0bbx*"),
        ("classes", b"- [[:digit:]]*\n- [!a-z]/\n+ ?\n\0" b"9lives\0A\0b"),
    ])

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "hello.c").write_text('int puts(const char *);\nint main(void) { return puts("hi"); }\n')
        (t / "lib.c").write_text("int answer(void) { return 42; }\n")
        subprocess.run(["gcc", "-Os", "-s", "-o", t / "hello", t / "hello.c"], check=True)
        subprocess.run(["gcc", "-Os", "-s", "-shared", "-fPIC", "-Wl,-rpath,/nix/store/x-lib/lib",
                        "-Wl,--enable-new-dtags", "-o", t / "libanswer.so", t / "lib.c"], check=True)
        subprocess.run(["gcc", "-Os", "-s", "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../lib",
                        "-o", t / "rpath", t / "hello.c"], check=True)
        shutil.copy(t / "hello", t / "interp")
        subprocess.run(["patchelf", "--set-interpreter", "/app/store/abc-glibc/lib/ld-linux-x86-64.so.2",
                        "--add-needed", "libanswer.so", t / "interp"], check=True)
        hello = (t / "hello").read_bytes()
        seeds("elf", [(n, (t / n).read_bytes()) for n in ["hello", "libanswer.so", "rpath", "interp"]]
              + [("header-only", hello[:64])])

    text = b"#!/bin/sh\nexec /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1/bin/t1 \"$@\"\n"
    plain = b"nothing to see here\n" * 20

    def zipped(method, data):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=method) as z:
            z.writestr("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n")
            z.writestr("lib/conf.txt", data)
        return buf.getvalue()

    seeds("scan", [
        ("gzip-hit", gzip.compress(text, mtime=0)),
        ("gzip-miss", gzip.compress(plain, mtime=0)),
        ("gzip-multi", gzip.compress(plain, mtime=0) + gzip.compress(text, mtime=0)),
        ("xz-hit", lzma.compress(text)),
        ("xz-miss", lzma.compress(plain)),
        ("zip-stored", zipped(zipfile.ZIP_STORED, text)),
        ("zip-deflated", zipped(zipfile.ZIP_DEFLATED, text)),
        ("zip-miss", zipped(zipfile.ZIP_DEFLATED, plain)),
    ])

    narinfo = (CACHE / "5cnynnpam552yi3xkvljamav3a6d6iii.narinfo").read_bytes()
    nar_name = "nar/08fpxdknnmkw02c2ymfvyaf6qiycv1zqdirsg4y16j6p48h7jw65.nar.xz"
    nar = (CACHE / nar_name).read_bytes()
    auth = f"Authorization: Bearer {PUSH_TOKEN}\n".encode()
    h = b"5cnynnpam552yi3xkvljamav3a6d6iii"
    seeds("router", [
        ("cache-info", b"GET\n/nix-cache-info\n\n"),
        ("narinfo", b"GET\n/" + h + b".narinfo\n\n"),
        ("narinfo-head", b"HEAD\n/" + h + b".narinfo\n\n"),
        ("narinfo-miss", b"GET\n/0pqyvyw21p553pf74czgvqks0vjaqp0l.narinfo\n\n"),
        ("bad-hash", b"GET\n/../etc/passwd.narinfo\n\n"),
        ("nar", b"GET\n/" + nar_name.encode() + b"\n\n"),
        ("nar-range", b"GET\n/" + nar_name.encode() + b"\nRange: bytes=10-20\n\n"),
        ("listing", b"GET\n/" + h + b".ls\n\n"),
        ("log", b"GET\n/log/svrm7d1i7gln9zfz8abnd3adjgxi0j9i-deploy-data.drv\n\n"),
        ("health", b"GET\n/health\n\n"),
        ("metrics", b"GET\n/metrics\n\n"),
        ("put-unauthorized", b"PUT\n/" + h + b".narinfo\n\n" + narinfo),
        ("put-narinfo", b"PUT\n/" + h + b".narinfo\n" + auth + b"Content-Type: text/x-nix-narinfo\n\n" + narinfo),
        ("put-nar", b"PUT\n/nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz\n" + auth + b"\n" + nar),
        ("put-pin", b"PUT\n/pins/web\n" + auth + b"\nName: web\nStorePath: /nix/store/" + h
         + b"-deploy-data\nCreated: 1\n"),
        ("delete-pin", b"DELETE\n/pins/web\n" + auth + b"\n"),
        ("basic-auth", b"GET\n/pins/web\nAuthorization: Basic bml4OmZ1enotcHVzaC10b2tlbi0wMTIzNDU2Nzg5\n\n"),
    ])
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    print(f"seeds: {sum(1 for f in CORPUS.rglob('*') if f.is_file())} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
