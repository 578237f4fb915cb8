//! Runs a command and prints its output as it arrives, then how it ended.
//!
//! `cargo run --example process_demo -- COMMAND [ARGS...]`; with no command, a small shell
//! script that writes to stdout and stderr over half a second and exits with code 2. The
//! demo exits with the child's code (128 + the signal's number if a signal killed it, 127
//! if it could not be started).

use std::io::Write;

use twistor::Reactor;
use twistor::process::{ProcessCommand, ProcessProtocol, ProcessStatus, ProcessTransport};

struct Show {
    reactor: Reactor,
    exit_code: std::rc::Rc<std::cell::Cell<i32>>,
}

impl ProcessProtocol for Show {
    fn connection_made(&mut self, transport: &ProcessTransport) {
        println!("started pid {}", transport.pid().unwrap_or_default());
    }

    fn out_received(&mut self, _transport: &ProcessTransport, data: &[u8]) {
        for line in String::from_utf8_lossy(data).lines() {
            println!("[out] {line}");
        }
        let _ = std::io::stdout().flush();
    }

    fn err_received(&mut self, _transport: &ProcessTransport, data: &[u8]) {
        for line in String::from_utf8_lossy(data).lines() {
            println!("[err] {line}");
        }
        let _ = std::io::stdout().flush();
    }

    fn process_ended(&mut self, status: &ProcessStatus) {
        println!("process {status}");
        self.exit_code.set(match status {
            ProcessStatus::Exited(code) => *code,
            ProcessStatus::Signaled { signal, .. } => 128 + signal,
            _ => 127,
        });
        self.reactor.stop();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let command = match args.next() {
        Some(program) => ProcessCommand::new(program).args(args),
        None => ProcessCommand::new("sh").args([
            "-c",
            "for i in 1 2 3; do echo line $i; sleep 0.15; done; echo oops >&2; exit 2",
        ]),
    }
    .no_child_fd(0);
    let reactor = Reactor::new()?;
    let exit_code = std::rc::Rc::new(std::cell::Cell::new(0));
    reactor.spawn_process(
        Show {
            reactor: reactor.clone(),
            exit_code: exit_code.clone(),
        },
        &command,
    );
    reactor.run()?;
    std::process::exit(exit_code.get());
}
