//! Fetches URLs with the `Agent` and prints each status and body size; the body of the
//! last one goes to standard output.
//!
//! ```text
//! cargo run -p twistor-http --example fetch -- http://127.0.0.1:8080/ http://127.0.0.1:8080/x
//! ```

use std::io::Write;

use twistor::Reactor;
use twistor::defer::Failure;
use twistor_http::client::Agent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        eprintln!("usage: fetch URL...");
        std::process::exit(2);
    }
    let reactor = Reactor::new()?;
    let agent = Agent::new(&reactor);
    let r = reactor.clone();
    let done = reactor.spawn(async move {
        let mut last = Vec::new();
        // One after the other, so keep-alive connections are reused.
        for url in &urls {
            let response = agent.get(url).await?;
            let status = response.status();
            let body = response.read_body().await?;
            eprintln!("{status} {url} ({} bytes)", body.len());
            last = body.to_vec();
        }
        Ok::<_, Failure>(last)
    });
    let result = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = result.clone();
    done.consume(move |outcome| {
        *slot.borrow_mut() = Some(outcome);
        r.stop();
    });
    reactor.run()?;
    let outcome = result.borrow_mut().take();
    match outcome {
        Some(Ok(body)) => {
            std::io::stdout().write_all(&body)?;
            Ok(())
        }
        Some(Err(failure)) => {
            eprintln!("fetch: {failure}");
            std::process::exit(1);
        }
        None => Ok(()),
    }
}
