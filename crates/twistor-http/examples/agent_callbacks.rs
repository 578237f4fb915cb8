//! Fetches a URL with the `Agent`, with callbacks: prints the status to stderr and the
//! body to stdout; exits 1 if the request fails.
//!
//! `cargo run -p twistor-http --example agent_callbacks -- http://127.0.0.1:8080/`

use std::io::Write;

use twistor::Reactor;
use twistor_http::client::Agent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: agent_callbacks URL")?;
    let reactor = Reactor::new()?;
    let agent = Agent::new(&reactor);
    let body = agent.get(&url).and_then_deferred(|response| {
        eprintln!("{}", response.status());
        response.read_body()
    });
    // Runs the reactor until the body is in (or the request failed), then stops it.
    let body = reactor.run_until(body)??;
    std::io::stdout().write_all(&body)?;
    Ok(())
}
