//! Resolvers on the reactor.
