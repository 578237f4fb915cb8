//! The echo server over TLS: every byte received is decrypted and sent back encrypted.
//!
//! ```text
//! cargo run --example tls_echo_server -- KEY.pem CERT.pem [PORT] [--alpn h2,http/1.1]
//!     [--sni NAME=KEY.pem,CERT.pem]...
//! ```
//!
//! The default port is 8443. `--sni` serves another certificate to clients asking for
//! `NAME` (`*.example.com` works too); `--alpn` lists the protocols to agree on. Each
//! handshake is reported on standard output. Try it with
//! `openssl s_client -connect 127.0.0.1:8443 -servername localhost`.

use std::error::Error;

use twistor::protocol::{Protocol, factory};
use twistor::tls::{Identity, ServerTlsConfig, TlsTransport};
use twistor::{Reactor, Transport};

struct Echo;

impl Protocol for Echo {
    fn handshake_completed(&mut self, transport: &Transport) {
        if let Some(tls) = transport.downcast_ref::<TlsTransport>() {
            let alpn = tls
                .negotiated_protocol()
                .map(|p| String::from_utf8_lossy(&p).into_owned());
            println!(
                "handshake with {}: {} {}, SNI {:?}, ALPN {:?}",
                transport.peer(),
                tls.protocol_version()
                    .map_or("?".to_string(), |v| v.to_string()),
                tls.cipher_suite().unwrap_or_default(),
                tls.server_name(),
                alpn,
            );
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut alpn: Vec<String> = Vec::new();
    let mut sni: Vec<(String, String, String)> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--alpn" => {
                let list = args.next().ok_or("--alpn needs a list")?;
                alpn = list.split(',').map(str::to_string).collect();
            }
            "--sni" => {
                let spec = args.next().ok_or("--sni needs NAME=KEY,CERT")?;
                let (name, files) = spec.split_once('=').ok_or("--sni NAME=KEY,CERT")?;
                let (key, cert) = files.split_once(',').ok_or("--sni NAME=KEY,CERT")?;
                sni.push((name.into(), key.into(), cert.into()));
            }
            _ => positional.push(arg),
        }
    }
    let [key, cert, rest @ ..] = positional.as_slice() else {
        return Err(
            "usage: tls_echo_server KEY.pem CERT.pem [PORT] [--alpn P,...] \
                    [--sni NAME=KEY,CERT]..."
                .into(),
        );
    };
    let port = match rest.first() {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("expected a port number, got {arg:?}"))?,
        None => 8443,
    };
    let mut config = ServerTlsConfig::from_pem_files(key, Some(cert), None)?;
    for (name, key, cert) in &sni {
        config =
            config.with_sni_certificate(name, Identity::from_pem_files(key, Some(cert), None)?);
    }
    if !alpn.is_empty() {
        config = config.with_alpn(&alpn);
    }
    let reactor = Reactor::new()?;
    let listening = reactor.listen_ssl(port, factory(|_addr| Echo), config)?;
    println!("TLS echo server listening on {}", listening.port());
    reactor.run()?;
    Ok(())
}
