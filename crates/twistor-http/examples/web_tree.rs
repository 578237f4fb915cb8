//! A resource tree: `GET /hello`, `POST /echo` (answers with the body it got) and the
//! files of a directory under `/static/`, on 127.0.0.1.
//!
//! `cargo run -p twistor-http --example web_tree -- [PORT] [DIR]` (default 8080, `.`).

use std::rc::Rc;

use twistor::Reactor;
use twistor_http::http::Method;
use twistor_http::server::{Render, Request, Resource, Site, Tree, handler};
use twistor_http::static_files::StaticFile;

/// Answers a POST with the body it carried.
struct Echo;

impl Resource for Echo {
    fn render_post(&self, request: &Request) -> Render {
        request.set_header("content-type", "application/octet-stream");
        Render::Deferred(request.read_body())
    }

    fn allowed_methods(&self) -> Vec<Method> {
        vec![Method::POST]
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port = args.next().map_or(Ok(8080), |p| p.parse())?;
    let dir = args.next().unwrap_or_else(|| ".".into());
    let root = Tree::new();
    root.put_child(
        "hello",
        handler(|req| {
            req.set_header("content-type", "text/plain");
            "Hello, world!\n".into()
        }),
    );
    root.put_child("echo", Rc::new(Echo));
    root.put_child("static", Rc::new(StaticFile::new(dir)?));
    let reactor = Reactor::new()?;
    let site = Site::new(reactor.clone(), Rc::new(root));
    let port = reactor.listen_tcp_local(port, Rc::new(site))?;
    println!("listening on {}", port.port());
    reactor.run()?;
    Ok(())
}
