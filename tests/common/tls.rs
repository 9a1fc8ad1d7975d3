//! TLS material generated at test time (nothing checked in can expire): a
//! directory of PEM files removed on drop, a test CA, and the TLS halves of
//! server and client settings loaded from those files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use porthole::gencert::{Ca, Pem, Validity};
use porthole::transport::tls::{
    ClientFiles, ServerFiles, TlsClient, TlsServer, load_client, load_server,
};

/// A directory of PEM files for one test, removed when dropped.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A fresh directory named after `test` (and this process: test binaries may
    /// run side by side).
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("porthole-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Pki { dir }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    }

    /// Writes `pem` as `NAME.crt` and `NAME.key`.
    pub fn pair(&self, name: &str, pem: &Pem) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.crt"), &pem.cert),
            self.write(&format!("{name}.key"), &pem.key),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn new_ca() -> Ca {
    Ca::new("test CA", Validity::days(1)).expect("CA")
}

pub fn localhost() -> Vec<String> {
    vec!["localhost".to_owned()]
}

/// The server half: `cert` and `key`, and `client_ca` to require client
/// certificates (mutual TLS).
pub fn server_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsServer {
    let files = ServerFiles {
        cert,
        key,
        client_ca,
        allow_tls12: false,
    };
    load_server(&files).expect("server TLS material loads")
}

/// The client half: trusts `ca`, expects the server to be `name`, and presents
/// `identity` (certificate, key) if given.
pub fn client_tls(ca: &Path, name: &str, identity: Option<(&Path, &Path)>) -> TlsClient {
    let files = ClientFiles {
        ca: Some(ca),
        server_name: name,
        cert: identity.map(|(c, _)| c),
        key: identity.map(|(_, k)| k),
        allow_tls12: false,
    };
    load_client(&files).expect("client TLS material loads")
}

/// The ordinary TLS setup of a tunnel: a test CA, a `localhost` certificate for
/// the server, and a client that trusts the CA and expects `localhost`.
pub struct TlsPair {
    pub server: TlsServer,
    pub client: TlsClient,
}

impl TlsPair {
    pub fn generate() -> TlsPair {
        // One directory per tunnel, even when one test starts several.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let pki = Pki::new(&format!("tunnel-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let pem = ca
            .server(&localhost(), Validity::days(1))
            .expect("server cert");
        let (cert, key) = pki.pair("server", &pem);
        // Loaded into memory here; the files go with `pki`.
        TlsPair {
            server: server_tls(&cert, &key, None),
            client: client_tls(&ca_file, "localhost", None),
        }
    }
}
