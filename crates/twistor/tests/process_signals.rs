//! User signal handlers (SIGHUP, SIGUSR1, SIGUSR2) run on the reactor thread, including for
//! signals sent by a child process. (Its own test binary: signal dispositions are
//! process-wide, and the handlers are installed for the whole test.)

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use twistor::process::{ProcessCommand, ProcessProtocol, ProcessStatus};

struct Quiet;
impl ProcessProtocol for Quiet {
    fn process_ended(&mut self, status: &ProcessStatus) {
        assert!(status.success(), "{status}");
    }
}

#[test]
fn hup_usr1_usr2_reach_their_handlers_on_the_reactor_thread() {
    // Run on a thread that is not the main one: handlers must be installed explicitly.
    thread::spawn(|| {
        let reactor = twistor_testing::reactor_with_timeout(Duration::from_secs(30));
        let me = thread::current().id();
        let log = Rc::new(RefCell::new(Vec::new()));
        let hups = Rc::new(Cell::new(0));
        {
            let (log, hups) = (log.clone(), hups.clone());
            reactor
                .add_signal_handler(libc::SIGHUP, move || {
                    assert_eq!(thread::current().id(), me);
                    hups.set(hups.get() + 1);
                    log.borrow_mut().push("HUP");
                })
                .unwrap();
        }
        reactor.install_signal_handlers().unwrap();
        // Handlers added after installing work too.
        {
            let (log, r) = (log.clone(), reactor.clone());
            reactor
                .add_signal_handler(libc::SIGUSR1, move || {
                    log.borrow_mut().push("USR1");
                    // Sent by a child: now ask another child for SIGUSR2.
                    r.spawn_process(
                        Quiet,
                        &ProcessCommand::new("sh").args(["-c", "kill -USR2 $PPID"]),
                    );
                })
                .unwrap();
        }
        {
            let (log, r) = (log.clone(), reactor.clone());
            reactor
                .add_signal_handler(libc::SIGUSR2, move || {
                    log.borrow_mut().push("USR2");
                    r.stop();
                })
                .unwrap();
        }
        let r = reactor.clone();
        reactor.call_when_running(move || {
            // SAFETY: sending ourselves a signal whose handler is installed.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            r.spawn_process(
                Quiet,
                &ProcessCommand::new("sh").args(["-c", "kill -USR1 $PPID"]),
            );
        });
        reactor.run().unwrap();
        assert_eq!(*log.borrow(), ["HUP", "USR1", "USR2"]);
        assert_eq!(hups.get(), 1);
    })
    .join()
    .unwrap();
}
