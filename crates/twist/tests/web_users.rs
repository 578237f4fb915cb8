//! `twist web --users FILE`: HTTP Basic logins checked against a password file whose hashes
//! are made by real tools (`openssl passwd -6`, `htpasswd -B`), driven by curl.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use twistor_testing::process::{ChildGuard, have};

fn twist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twist"))
}

use twistor_testing::TempDir;

/// What a tool prints, trimmed.
fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Writes a users file with a `$6$` hash for alice (openssl) and a bcrypt hash for bob
/// (htpasswd), and bumps its modification time so a reload sees it.
fn write_users(path: &Path, alice: &str, bob: &str, bump: u64) {
    let six = output("openssl", &["passwd", "-6", alice]);
    let bcrypt = output("htpasswd", &["-nbB", "-C", "5", "bob", bob]);
    let text = format!("# twist web users\nalice:{six}\n{bcrypt}\n");
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(bump))
        .unwrap();
}

/// `curl -u USER:PASSWORD`, or no credentials; the status code, the challenge header (if
/// any) and the body.
fn curl(port: u16, login: Option<&str>) -> (u16, Option<String>, String) {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let headers = std::env::temp_dir().join(format!("twist-users-{}-{n}.head", std::process::id()));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-D"])
        .arg(&headers)
        .arg(format!("http://127.0.0.1:{port}/hello.txt"));
    if let Some(login) = login {
        cmd.args(["-u", login]);
    }
    let out = cmd.output().unwrap();
    let head = std::fs::read_to_string(&headers).unwrap();
    let _ = std::fs::remove_file(&headers);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .map(str::to_string);
    (status, challenge, String::from_utf8(out.stdout).unwrap())
}

fn start(dir: &TempDir) -> (ChildGuard, u16) {
    std::fs::write(dir.join("hello.txt"), "members only\n").unwrap();
    let mut cmd = twist();
    cmd.args(["web", "--listen", "tcp:0:interface=127.0.0.1", "--path"])
        .arg(dir.path())
        .arg("--users")
        .arg(dir.join("users"))
        .args(["--auth-realm", "staff \"only\""]);
    let mut child = ChildGuard::spawn(cmd);
    let line = child.err_line_containing("starting on");
    let port = line.rsplit(' ').next().unwrap().parse().unwrap();
    (child, port)
}

#[test]
fn logins_are_checked_against_hashes_made_by_openssl_and_htpasswd() {
    if !have("curl", &["--version"])
        || !have("openssl", &["version"])
        || !have("htpasswd", &["-nbB", "x", "y"])
    {
        return;
    }
    let dir = TempDir::new("login");
    write_users(&dir.join("users"), "alice pw", "bob pw", 0);
    let (_child, port) = start(&dir);

    let (status, _, body) = curl(port, Some("alice:alice pw"));
    assert_eq!((status, body.as_str()), (200, "members only\n"));
    let (status, _, body) = curl(port, Some("bob:bob pw"));
    assert_eq!((status, body.as_str()), (200, "members only\n"));

    let (status, challenge, nobody) = curl(port, None);
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Basic realm="staff \"only\"", charset="UTF-8""#)
    );
    assert!(!nobody.contains("members only"));

    // A wrong password and an unknown user: the same answer.
    let wrong = curl(port, Some("alice:bob pw"));
    let unknown = curl(port, Some("mallory:alice pw"));
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    // Still open to the right password, after failures from the same address.
    assert_eq!(curl(port, Some("alice:alice pw")).0, 200);
}

#[test]
fn the_users_file_is_reloaded_when_it_changes() {
    if !have("curl", &["--version"])
        || !have("openssl", &["version"])
        || !have("htpasswd", &["-nbB", "x", "y"])
    {
        return;
    }
    let dir = TempDir::new("reload");
    write_users(&dir.join("users"), "old", "bob pw", 0);
    let (mut child, port) = start(&dir);
    assert_eq!(curl(port, Some("alice:old")).0, 200);
    write_users(&dir.join("users"), "new", "bob pw", 10);
    assert_eq!(curl(port, Some("alice:new")).0, 200);
    assert_eq!(curl(port, Some("alice:old")).0, 401);

    // A broken rewrite keeps the users that were there, and says where it is broken.
    std::fs::write(dir.join("users"), "alice:not-a-hash\n").unwrap();
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join("users"))
        .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(20))
        .unwrap();
    assert_eq!(curl(port, Some("alice:new")).0, 200);
    let warning = child.err_line_containing("users:1:");
    assert!(warning.contains("users:1:"), "{warning}");
}

#[test]
fn a_malformed_users_file_exits_2_naming_file_and_line() {
    let dir = TempDir::new("bad");
    std::fs::write(dir.join("users"), "# ok\nalice:$6$salt$abc\nbob\n").unwrap();
    let out = twist()
        .args(["web", "--listen", "tcp:0:interface=127.0.0.1", "--users"])
        .arg(dir.join("users"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let users = dir.join("users");
    assert!(
        err.contains(&format!("{}:", users.display())),
        "names the file: {err}"
    );
    assert!(
        err.contains(":2:") || err.contains(":3:"),
        "names a line: {err}"
    );

    let missing = twist()
        .args(["web", "--users", "/no/such/users/file"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/users/file"));
}
