//! Fetches a URL with the `Agent`, with async/await: prints the status to stderr and the
//! body to stdout; exits 1 if the request fails, saying why on stderr.
//!
//! `cargo run -p twistor-http --example agent_async -- http://127.0.0.1:8080/`

use std::io::Write;

use twistor::task::react;
use twistor_http::client::Agent;

fn main() {
    let url = std::env::args().nth(1).expect("usage: agent_async URL");
    react(|reactor| async move {
        let agent = Agent::new(&reactor);
        let response = agent.get(&url).await?;
        eprintln!("{}", response.status());
        let body = response.read_body().await?;
        std::io::stdout().write_all(&body)?;
        Ok(())
    });
}
