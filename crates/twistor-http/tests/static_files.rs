//! Static files over real sockets: types, validators and 304, ranges (single, multiple,
//! unsatisfiable, If-Range), index files, listings, streaming a large file, and every way
//! of trying to leave the root.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use support::{Server, TempDir, connect, exchange_until_close, field, read_response};
use twistor_http::server::Site;
use twistor_http::static_files::{StaticFile, StaticOptions};

fn serve(root: PathBuf, options: StaticOptions) -> Server {
    Server::start(move |reactor| {
        Site::new(
            reactor.clone(),
            Rc::new(StaticFile::with_options(root, options).unwrap()),
        )
    })
}

fn get(server: &Server, path: &str, extra: &str) -> (String, Vec<u8>) {
    let mut s = connect(server.port);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    read_response(&mut s)
}

fn status(head: &str) -> u16 {
    head[9..12].parse().unwrap()
}

fn site_dir() -> TempDir {
    let dir = TempDir::new("static");
    dir.write("hello.txt", b"Hello, world!\n");
    dir.write("page.html", b"<p>hi</p>");
    dir.write(
        "data.bin",
        (0..=255u8).cycle().take(1000).collect::<Vec<_>>(),
    );
    dir.write("sub/index.html", b"sub index");
    dir.write("plain/a.txt", b"a");
    dir
}

#[test]
fn files_with_types_validators_and_head() {
    let dir = site_dir();
    let server = serve(dir.path().into(), StaticOptions::default());
    let (head, body) = get(&server, "/hello.txt", "");
    assert_eq!(status(&head), 200);
    assert_eq!(body, b"Hello, world!\n");
    assert_eq!(
        field(&head, "content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(field(&head, "accept-ranges").unwrap(), "bytes");
    assert!(field(&head, "etag").unwrap().starts_with('"'));
    assert!(field(&head, "last-modified").unwrap().ends_with(" GMT"));
    let (head, _) = get(&server, "/page.html", "");
    assert_eq!(
        field(&head, "content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let (head, _) = get(&server, "/data.bin", "");
    assert_eq!(
        field(&head, "content-type").unwrap(),
        "application/octet-stream"
    );

    let mut s = connect(server.port);
    s.write_all(
        b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert_eq!(field(&head, "content-length").unwrap(), "14");
    // The next thing on the stream is the second response: HEAD sent no body.
    let (next, body) = read_response(&mut s);
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert_eq!(body, b"Hello, world!\n");
}

#[test]
fn not_modified_by_etag_and_date() {
    let dir = site_dir();
    let server = serve(dir.path().into(), StaticOptions::default());
    let (head, _) = get(&server, "/hello.txt", "");
    let etag = field(&head, "etag").unwrap();
    let date = field(&head, "last-modified").unwrap();

    let (head, body) = get(&server, "/hello.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(status(&head), 304, "{head}");
    assert!(body.is_empty());
    assert_eq!(field(&head, "etag").unwrap(), etag);
    assert_eq!(field(&head, "content-length"), None);
    let (head, _) = get(
        &server,
        "/hello.txt",
        &format!("If-None-Match: \"x\", W/{etag}\r\n"),
    );
    assert_eq!(status(&head), 304);
    let (head, _) = get(&server, "/hello.txt", "If-None-Match: \"other\"\r\n");
    assert_eq!(status(&head), 200);

    let (head, _) = get(
        &server,
        "/hello.txt",
        &format!("If-Modified-Since: {date}\r\n"),
    );
    assert_eq!(status(&head), 304);
    let (head, _) = get(
        &server,
        "/hello.txt",
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!(status(&head), 200);
    // If-None-Match wins over If-Modified-Since.
    let (head, _) = get(
        &server,
        "/hello.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {date}\r\n"),
    );
    assert_eq!(status(&head), 200);
}

#[test]
fn single_multiple_and_unsatisfiable_ranges() {
    let dir = site_dir();
    let server = serve(dir.path().into(), StaticOptions::default());
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();

    let (head, body) = get(&server, "/data.bin", "Range: bytes=10-19\r\n");
    assert_eq!(status(&head), 206);
    assert_eq!(field(&head, "content-range").unwrap(), "bytes 10-19/1000");
    assert_eq!(body, &data[10..20]);
    let (_, body) = get(&server, "/data.bin", "Range: bytes=-5\r\n");
    assert_eq!(body, &data[995..]);

    let (head, body) = get(&server, "/data.bin", "Range: bytes=0-1, 998-\r\n");
    assert_eq!(status(&head), 206);
    let kind = field(&head, "content-type").unwrap();
    let boundary = kind
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_owned();
    let expected = [
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/1000\r\n\r\n").into_bytes(),
        data[0..2].to_vec(),
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 998-999/1000\r\n\r\n").into_bytes(),
        data[998..].to_vec(),
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    ]
    .concat();
    assert_eq!(body, expected);
    assert_eq!(
        field(&head, "content-length").unwrap(),
        expected.len().to_string()
    );

    let (head, _) = get(&server, "/data.bin", "Range: bytes=1000-\r\n");
    assert_eq!(status(&head), 416);
    assert_eq!(field(&head, "content-range").unwrap(), "bytes */1000");

    let (head, body) = get(&server, "/data.bin", "Range: bytes=5-1\r\n");
    assert_eq!(status(&head), 200, "a malformed range is ignored");
    assert_eq!(body.len(), 1000);

    let (h, _) = get(&server, "/data.bin", "");
    let etag = field(&h, "etag").unwrap();
    let (head, _) = get(
        &server,
        "/data.bin",
        &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(status(&head), 206);
    let (head, _) = get(
        &server,
        "/data.bin",
        "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!(status(&head), 200);
}

#[test]
fn index_redirect_and_escaped_listing() {
    let dir = site_dir();
    dir.write("list/<b>&\"q\".txt", b"x");
    dir.write("list/space name.txt", b"yy");
    std::fs::create_dir(dir.path().join("list/folder")).unwrap();
    let server = serve(dir.path().into(), StaticOptions::default());

    let (head, body) = get(&server, "/sub/", "");
    assert_eq!((status(&head), body.as_slice()), (200, &b"sub index"[..]));
    let (head, _) = get(&server, "/sub?x=1", "");
    assert_eq!(status(&head), 301);
    assert_eq!(field(&head, "location").unwrap(), "/sub/?x=1");

    let (head, body) = get(&server, "/list/", "");
    assert_eq!(status(&head), 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("Directory listing for /list/"), "{html}");
    assert!(
        html.contains("<a href=\"%3Cb%3E%26%22q%22.txt\">&lt;b&gt;&amp;&quot;q&quot;.txt</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"space%20name.txt\">space name.txt</a>"));
    assert!(html.contains("<a href=\"folder/\">folder/</a>"));
    assert!(!html.contains("<b>"), "no raw markup from names");
    let folder = html.find("folder/").unwrap();
    assert!(folder < html.find("space").unwrap(), "directories first");

    let server = serve(dir.path().into(), {
        let mut o = StaticOptions::default();
        o.directory_listing = false;
        o
    });
    let (head, _) = get(&server, "/list/", "");
    assert_eq!(status(&head), 403);
}

#[test]
fn no_escape_from_the_root() {
    let outside = TempDir::new("outside");
    outside.write("secret.txt", b"secret");
    let dir = site_dir();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("out.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("outdir")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("hello.txt"), dir.path().join("in.txt")).unwrap();
    let parent_name = outside
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let server = serve(dir.path().into(), StaticOptions::default());

    for path in [
        format!("/../{parent_name}/secret.txt"),
        format!("/%2e%2e/{parent_name}/secret.txt"),
        format!("/%2E%2E/{parent_name}/secret.txt"),
        format!("/sub/%2e%2e/%2e%2e/{parent_name}/secret.txt"),
        format!("/%2e%2e%2f{parent_name}%2fsecret.txt"),
        "/./hello.txt".to_owned(),
        "/hello.txt%00.html".to_owned(),
        "/out.txt".to_owned(),
        "/outdir/secret.txt".to_owned(),
        "/outdir/".to_owned(),
    ] {
        let (response, _) = exchange_until_close(
            server.port,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(response.starts_with("HTTP/1.1 404 "), "{path}: {response}");
        assert!(!response.contains("secret"), "{path}");
    }
    let (head, body) = get(&server, "/in.txt", "");
    assert_eq!(
        (status(&head), body.as_slice()),
        (200, &b"Hello, world!\n"[..])
    );

    let server = serve(dir.path().into(), {
        let mut o = StaticOptions::default();
        o.follow_outside_links = true;
        o
    });
    let (_, body) = get(&server, "/out.txt", "");
    assert_eq!(body, b"secret");
    let (response, _) = exchange_until_close(
        server.port,
        format!(
            "GET /%2e%2e/{parent_name}/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(
        response.starts_with("HTTP/1.1 404 "),
        "dot-dot stays refused"
    );
}

#[test]
fn a_large_sparse_file_streams_with_bounded_memory() {
    if !twistor_testing::process::have("curl", &["--version"]) {
        return;
    }
    let dir = TempDir::new("big");
    let size: u64 = 1 << 30;
    let f = std::fs::File::create(dir.path().join("big.bin")).unwrap();
    f.set_len(size).unwrap(); // sparse: no disk used
    drop(f);
    let server = serve(dir.path().into(), StaticOptions::default());
    let before = support::rss_kib();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(server.url("/big.bin"))
        .output()
        .unwrap();
    let after = support::rss_kib();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {size}"));
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn preconditions_in_the_order_of_rfc_9110() {
    let dir = site_dir();
    let server = serve(dir.path().into(), StaticOptions::default());
    let (head, _) = get(&server, "/hello.txt", "");
    let etag = field(&head, "etag").unwrap();
    let date = field(&head, "last-modified").unwrap();
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let cases: Vec<(String, u16)> = vec![
        // If-Match: strong comparison, `*` and lists.
        (format!("If-Match: {etag}"), 200),
        ("If-Match: *".into(), 200),
        (format!("If-Match: \"a\", {etag}, \"b\""), 200),
        (format!("If-Match: \"a,b\",{etag}"), 200),
        ("If-Match: \"other\"".into(), 412),
        (format!("If-Match: W/{etag}"), 412),
        ("If-Match: \"a\", \"b\"".into(), 412),
        // If-Unmodified-Since, only without If-Match.
        (format!("If-Unmodified-Since: {date}"), 200),
        (format!("If-Unmodified-Since: {future}"), 200),
        (format!("If-Unmodified-Since: {old}"), 412),
        ("If-Unmodified-Since: not a date".into(), 200),
        (
            format!("If-Match: {etag}\r\nIf-Unmodified-Since: {old}"),
            200,
        ),
        (
            format!("If-Match: \"other\"\r\nIf-Unmodified-Since: {future}"),
            412,
        ),
        // If-None-Match: weak comparison, `*` and lists; then If-Modified-Since.
        ("If-None-Match: *".into(), 304),
        (format!("If-None-Match: W/{etag}"), 304),
        (format!("If-None-Match: \"a\", W/\"b\", {etag}"), 304),
        ("If-None-Match: \"a\", \"b\"".into(), 200),
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {date}"),
            200,
        ),
        (format!("If-Modified-Since: {date}"), 304),
        (format!("If-Modified-Since: {old}"), 200),
        // A failed If-Match wins over a matching If-None-Match.
        (format!("If-Match: \"other\"\r\nIf-None-Match: {etag}"), 412),
        // If-Match passes, If-None-Match then decides.
        (format!("If-Match: {etag}\r\nIf-None-Match: {etag}"), 304),
        // Malformed lists match nothing.
        (format!("If-Match: {}", etag.trim_matches('"')), 412),
    ];
    for (fields, want) in cases {
        let (head, body) = get(&server, "/hello.txt", &format!("{fields}\r\n"));
        assert_eq!(status(&head), want, "{fields}: {head}");
        if want == 200 {
            assert_eq!(body, b"Hello, world!\n");
        }
        if want == 304 {
            assert!(body.is_empty());
        }
    }
    // HEAD is judged as GET.
    let mut s = connect(server.port);
    write!(
        s,
        "HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n"
    )
    .unwrap();
    let (head, _) = read_response(&mut s);
    assert_eq!(status(&head), 304, "{head}");
}
