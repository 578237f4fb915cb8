//! inotify: create, modify, rename and delete files and see each event, in a recursive
//! watch that follows new subdirectories. Each step waits for its events through the
//! reactor; nothing sleeps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use twistor::Reactor;
use twistor::inotify::{FsEvent, Inotify, Mask};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twistor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

type Action = Box<dyn FnOnce(&Path)>;

/// A step: something to do, and the events (kind, path relative to the root) it must cause.
struct Step {
    action: Action,
    expect: Vec<(Mask, &'static str)>,
}

fn step(action: impl FnOnce(&Path) + 'static, expect: &[(Mask, &'static str)]) -> Step {
    Step {
        action: Box::new(action),
        expect: expect.to_vec(),
    }
}

/// Runs the steps one after another: each starts once every event the previous one expects
/// has arrived. Returns every event seen.
fn run_script(
    reactor: &Reactor,
    dir: &Path,
    recursive: bool,
    mask: Mask,
    steps: Vec<Step>,
) -> Vec<FsEvent> {
    let r = reactor.downgrade();
    let timeout = reactor.call_later(Duration::from_secs(30), move || {
        if let Some(r) = r.upgrade() {
            r.stop();
        }
    });
    let seen = Rc::new(RefCell::new(Vec::<FsEvent>::new()));
    let waiting = Rc::new(RefCell::new(Vec::<(Mask, PathBuf)>::new()));
    let steps = Rc::new(RefCell::new(VecDeque::from(steps)));

    // Starts the next step, or stops the reactor when none is left.
    let next: Rc<dyn Fn()> = {
        let (steps, waiting, dir, reactor) = (
            steps.clone(),
            waiting.clone(),
            dir.to_path_buf(),
            reactor.clone(),
        );
        Rc::new(move || {
            let Some(step) = steps.borrow_mut().pop_front() else {
                reactor.stop();
                return;
            };
            *waiting.borrow_mut() = step.expect.iter().map(|(m, p)| (*m, dir.join(p))).collect();
            (step.action)(&dir);
        })
    };

    let notifier = Inotify::new(reactor).unwrap();
    let callback = {
        let (seen, waiting, next, reactor) =
            (seen.clone(), waiting.clone(), next.clone(), reactor.clone());
        move |event: &FsEvent| {
            seen.borrow_mut().push(event.clone());
            let mut w = waiting.borrow_mut();
            let before = w.len();
            w.retain(|(m, p)| !(event.mask == *m && event.path == *p));
            if before > 0 && w.is_empty() {
                let next = next.clone();
                reactor.call_soon(move || next());
            }
        }
    };
    if recursive {
        notifier.watch_recursive(dir, mask, callback).unwrap();
    } else {
        notifier.watch(dir, mask, callback).unwrap();
    }
    assert!(notifier.is_watched(dir));
    next();
    reactor.run().unwrap();
    let _ = timeout.cancel();
    assert!(
        waiting.borrow().is_empty() && steps.borrow().is_empty(),
        "timed out waiting for {:?}; saw {:?}",
        waiting.borrow(),
        seen.borrow()
    );
    notifier.close();
    seen.take()
}

#[test]
fn create_modify_rename_delete_are_seen() {
    let dir = temp_dir("inotify");
    let reactor = twistor_testing::reactor();
    let dir_mask = Mask::CREATE | Mask::ISDIR;
    let steps = vec![
        step(
            |d| std::fs::write(d.join("a"), b"").unwrap(),
            &[(Mask::CREATE, "a")],
        ),
        step(
            |d| std::fs::write(d.join("a"), b"more").unwrap(),
            &[(Mask::MODIFY, "a")],
        ),
        step(
            |d| std::fs::rename(d.join("a"), d.join("b")).unwrap(),
            &[(Mask::MOVED_FROM, "a"), (Mask::MOVED_TO, "b")],
        ),
        step(
            |d| std::fs::remove_file(d.join("b")).unwrap(),
            &[(Mask::DELETE, "b")],
        ),
        // A new subdirectory is watched too, and what appears in it is seen.
        step(
            |d| std::fs::create_dir(d.join("sub")).unwrap(),
            &[(dir_mask, "sub")],
        ),
        step(
            |d| std::fs::write(d.join("sub/c"), b"x").unwrap(),
            &[(Mask::CREATE, "sub/c"), (Mask::MODIFY, "sub/c")],
        ),
        step(
            |d| {
                std::fs::remove_file(d.join("sub/c")).unwrap();
                std::fs::remove_dir(d.join("sub")).unwrap();
            },
            &[(Mask::DELETE, "sub/c"), (Mask::DELETE | Mask::ISDIR, "sub")],
        ),
    ];
    let seen = run_script(&reactor, &dir, true, Mask::CHANGES, steps);

    // The two halves of the rename share a cookie.
    let from = seen.iter().find(|e| e.mask == Mask::MOVED_FROM).unwrap();
    let to = seen.iter().find(|e| e.mask == Mask::MOVED_TO).unwrap();
    assert_ne!(from.cookie, 0);
    assert_eq!(from.cookie, to.cookie);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_subdirectories_and_non_recursive_watches() {
    let dir = temp_dir("inotify-tree");
    std::fs::create_dir_all(dir.join("x/y")).unwrap();
    let reactor = twistor_testing::reactor();
    // Recursive: the existing x/y is watched from the start.
    let steps = vec![step(
        |d| std::fs::write(d.join("x/y/deep"), b"").unwrap(),
        &[(Mask::CREATE, "x/y/deep")],
    )];
    run_script(&reactor, &dir, true, Mask::CREATE, steps);

    // Not recursive: only the directory's own entries.
    let steps = vec![
        step(
            |d| {
                std::fs::write(d.join("x/ignored"), b"").unwrap();
                std::fs::write(d.join("top"), b"").unwrap();
            },
            &[(Mask::CREATE, "top")],
        ),
        // Events of a kind not asked for are not delivered.
        step(
            |d| {
                std::fs::write(d.join("top"), b"changed").unwrap();
                std::fs::remove_file(d.join("top")).unwrap();
            },
            &[(Mask::DELETE, "top")],
        ),
    ];
    let seen = run_script(&reactor, &dir, false, Mask::CREATE | Mask::DELETE, steps);
    assert!(
        seen.iter()
            .all(|e| !e.path.ends_with("ignored") && e.mask != Mask::MODIFY),
        "{seen:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn watching_a_missing_path_is_an_error() {
    let reactor = twistor_testing::reactor();
    let notifier = Inotify::new(&reactor).unwrap();
    let err = notifier
        .watch("/nonexistent/twistor", Mask::CREATE, |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/twistor"), "{err}");
    assert!(!notifier.ignore("/nonexistent/twistor"));
}
