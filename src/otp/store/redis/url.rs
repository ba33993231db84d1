//! Redis URLs to clients, and the TLS provider every constructor installs.

use redis::Client;

use crate::Error;

/// The client for `url`. A `rediss://` URL without the `redis-tls` feature
/// is a configuration error, as is anything that is not a Redis URL.
pub(super) fn client(url: &str) -> Result<Client, Error> {
    install_tls_provider();
    Client::open(url).map_err(|_| Error::StoreConfig)
}

/// Makes ring the process's rustls provider unless one is set already, so
/// that an application that also links rustls with aws-lc-rs (two
/// providers, none chosen; the AWS SDK does) does not make rustls panic on
/// connect. Called by every constructor, before any connection.
pub(super) fn install_tls_provider() {
    // rustls 0.23.48 deprecates ring's provider (it has no post-quantum key
    // exchange); choosing another provider is the application's to make
    // first, which this call leaves alone.
    #[cfg(feature = "redis-tls")]
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}
