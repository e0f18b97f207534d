//! The client side of the connection phase, toward mysqld: reads the greeting, optionally
//! upgrades to TLS, authenticates with the sidecar's own credentials
//! (`mysql_native_password`, `caching_sha2_password` including full authentication, and
//! `mysql_clear_password` over TLS only), following auth switches.
//!
//! Sans-IO: feed each packet from the server to [`ClientHandshake::handle_packet`] and act
//! on the returned [`ClientStep`].

use super::auth::{self, sha2_status, AuthPlugin};
use super::constants::{capabilities as caps, DEFAULT_COLLATION};
use super::handshake::{
    AuthSwitchRequest, Greeting, HandshakeResponse, SslRequest, AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
};
use super::packet::{write_packet, Packet};
use super::response::{ErrPacket, OK_HEADER};
use thiserror::Error;

/// How to log in to mysqld.
#[derive(Clone)]
pub struct ClientHandshakeConfig {
    pub user: String,
    pub password: Vec<u8>,
    pub database: Option<String>,
    /// Capabilities wanted (the application's negotiated set, or the sidecar's default);
    /// intersected with the server's.
    pub capabilities: u32,
    pub collation: u8,
    pub max_packet_size: u32,
    /// Upgrade to TLS with an SSLRequest.
    pub tls: bool,
    /// Connection attributes block to send.
    pub connect_attrs: Vec<u8>,
    /// The server's RSA public key (PEM), if known; otherwise it is requested.
    pub server_public_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientHandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshakeConfig")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("capabilities", &format_args!("{:#x}", self.capabilities))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for ClientHandshakeConfig {
    fn default() -> Self {
        Self {
            user: String::new(),
            password: Vec::new(),
            database: None,
            capabilities: caps::CLIENT_DEFAULT,
            collation: DEFAULT_COLLATION,
            max_packet_size: 1 << 30,
            tls: false,
            connect_attrs: Vec::new(),
            server_public_key: None,
        }
    }
}

/// Why a login to mysqld failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientHandshakeError {
    /// The server refused (ERR packet), e.g. 1045, 1049, 1040.
    #[error("{0}")]
    Server(ErrPacket),
    #[error("malformed packet from server during handshake: {0}")]
    Malformed(String),
    #[error("server does not support TLS but TLS to the upstream is configured")]
    TlsUnsupported,
    #[error("server asked for an unsupported authentication plugin '{0}'")]
    UnsupportedPlugin(String),
    #[error("server asked for a clear-text password over an unencrypted connection")]
    InsecureClearText,
    #[error("caching_sha2_password full authentication failed: {0}")]
    Rsa(String),
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    /// Write these bytes and wait for the next server packet.
    Send(Vec<u8>),
    /// Write these bytes (the SSLRequest), run the TLS client handshake, then call
    /// [`ClientHandshake::after_tls`] and write what it returns.
    SendThenUpgradeTls(Vec<u8>),
    /// Wait for the next server packet.
    Wait,
    /// Logged in; the command phase starts.
    Done(Session),
}

/// What the connection to mysqld turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub server_version: String,
    pub connection_id: u32,
    /// Negotiated capabilities.
    pub capabilities: u32,
    /// Everything the server offered.
    pub server_capabilities: u32,
    pub collation: u8,
    pub status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitGreeting,
    AwaitAuthResult(AuthPlugin),
    /// caching_sha2: asked for the public key.
    AwaitPublicKey,
    Finished,
}

/// The client-side connection-phase state machine for one connection to mysqld.
#[derive(Debug)]
pub struct ClientHandshake {
    config: ClientHandshakeConfig,
    state: State,
    seq: u8,
    scramble: Vec<u8>,
    greeting: Option<Greeting>,
    capabilities: u32,
    tls: bool,
}

impl ClientHandshake {
    pub fn new(config: ClientHandshakeConfig) -> Self {
        Self {
            config,
            state: State::AwaitGreeting,
            seq: 0,
            scramble: Vec::new(),
            greeting: None,
            capabilities: 0,
            tls: false,
        }
    }

    /// The server's greeting, once received.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// Feeds one packet from the server.
    pub fn handle_packet(&mut self, packet: &Packet) -> Result<ClientStep, ClientHandshakeError> {
        let payload = packet.payload.as_slice();
        if payload.first() == Some(&super::response::ERR_HEADER) {
            self.state = State::Finished;
            let err = ErrPacket::decode(payload)
                .map_err(|e| ClientHandshakeError::Malformed(e.to_string()))?;
            return Err(ClientHandshakeError::Server(err));
        }
        self.seq = packet.last_seq.wrapping_add(1);
        match self.state {
            State::AwaitGreeting => self.on_greeting(payload),
            State::AwaitAuthResult(plugin) => self.on_auth_result(plugin, payload),
            State::AwaitPublicKey => {
                let pem = payload
                    .strip_prefix(&[AUTH_MORE_DATA_HEADER])
                    .ok_or_else(|| malformed("expected the server's public key"))?;
                self.send_rsa_password(pem)
            }
            State::Finished => Err(malformed("packet after the handshake finished")),
        }
    }

    fn on_greeting(&mut self, payload: &[u8]) -> Result<ClientStep, ClientHandshakeError> {
        let g = Greeting::decode(payload)
            .map_err(|e| ClientHandshakeError::Malformed(e.to_string()))?;
        if g.capabilities & caps::PROTOCOL_41 == 0 {
            return Err(malformed("server does not speak protocol 4.1"));
        }
        // The connection-phase capabilities this machine needs; everything that shapes
        // the command phase comes from the configuration (the application's own set), so
        // both hops agree on it.
        let mut wanted = self.config.capabilities
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        wanted &= !(caps::SSL | caps::CONNECT_WITH_DB | caps::COMPRESS);
        if self.config.database.is_some() {
            wanted |= caps::CONNECT_WITH_DB;
        }
        if !self.config.connect_attrs.is_empty() {
            wanted |= caps::CONNECT_ATTRS;
        }
        self.capabilities = wanted & g.capabilities;
        self.scramble = g.scramble.clone();
        self.greeting = Some(g);
        if self.config.tls {
            let server_caps = self.greeting.as_ref().map_or(0, |g| g.capabilities);
            if server_caps & caps::SSL == 0 {
                return Err(ClientHandshakeError::TlsUnsupported);
            }
            self.capabilities |= caps::SSL;
            let req = SslRequest {
                capabilities: self.capabilities,
                max_packet_size: self.config.max_packet_size,
                collation: self.config.collation,
            };
            let mut out = Vec::new();
            write_packet(&mut out, &mut self.seq, &req.encode());
            return Ok(ClientStep::SendThenUpgradeTls(out));
        }
        self.send_response()
    }

    /// After the TLS handshake: the HandshakeResponse to write.
    pub fn after_tls(&mut self) -> Result<ClientStep, ClientHandshakeError> {
        self.tls = true;
        self.send_response()
    }

    fn send_response(&mut self) -> Result<ClientStep, ClientHandshakeError> {
        let server_plugin = self
            .greeting
            .as_ref()
            .and_then(|g| AuthPlugin::from_name(&g.auth_plugin))
            .unwrap_or(AuthPlugin::NativePassword);
        let plugin = match server_plugin {
            AuthPlugin::ClearPassword if !self.tls => AuthPlugin::NativePassword,
            p => p,
        };
        let resp = HandshakeResponse {
            capabilities: self.capabilities,
            max_packet_size: self.config.max_packet_size,
            collation: self.config.collation,
            username: self.config.user.as_bytes().to_vec(),
            auth_response: self.scramble_for(plugin, &self.scramble.clone())?,
            database: self.config.database.as_ref().map(|d| d.as_bytes().to_vec()),
            auth_plugin: Some(plugin.name().as_bytes().to_vec()),
            connect_attrs: self.config.connect_attrs.clone(),
        };
        self.state = State::AwaitAuthResult(plugin);
        let mut out = Vec::new();
        write_packet(&mut out, &mut self.seq, &resp.encode());
        Ok(ClientStep::Send(out))
    }

    fn scramble_for(
        &self,
        plugin: AuthPlugin,
        nonce: &[u8],
    ) -> Result<Vec<u8>, ClientHandshakeError> {
        let pw = &self.config.password;
        Ok(match plugin {
            AuthPlugin::NativePassword => auth::native_password_scramble(pw, nonce),
            AuthPlugin::CachingSha2Password => auth::sha2_password_scramble(pw, nonce),
            AuthPlugin::ClearPassword => {
                if !self.tls {
                    return Err(ClientHandshakeError::InsecureClearText);
                }
                let mut v = pw.clone();
                v.push(0);
                v
            }
        })
    }

    fn on_auth_result(
        &mut self,
        plugin: AuthPlugin,
        payload: &[u8],
    ) -> Result<ClientStep, ClientHandshakeError> {
        match payload.first() {
            Some(&OK_HEADER) => {
                self.state = State::Finished;
                let ok = super::response::OkPacket::decode(payload, self.capabilities)
                    .map_err(|e| ClientHandshakeError::Malformed(e.to_string()))?;
                let g = self
                    .greeting
                    .as_ref()
                    .ok_or_else(|| malformed("no greeting"))?;
                Ok(ClientStep::Done(Session {
                    server_version: g.server_version.clone(),
                    connection_id: g.connection_id,
                    capabilities: self.capabilities,
                    server_capabilities: g.capabilities,
                    collation: g.collation,
                    status: ok.status,
                }))
            }
            Some(&AUTH_SWITCH_HEADER) => {
                let switch = AuthSwitchRequest::decode(payload)
                    .map_err(|e| ClientHandshakeError::Malformed(e.to_string()))?;
                let new_plugin = AuthPlugin::from_name(&switch.plugin).ok_or_else(|| {
                    ClientHandshakeError::UnsupportedPlugin(
                        String::from_utf8_lossy(&switch.plugin).into_owned(),
                    )
                })?;
                if !switch.data.is_empty() {
                    self.scramble = switch.data.clone();
                }
                let data = self.scramble_for(new_plugin, &self.scramble.clone())?;
                self.state = State::AwaitAuthResult(new_plugin);
                let mut out = Vec::new();
                write_packet(&mut out, &mut self.seq, &data);
                Ok(ClientStep::Send(out))
            }
            Some(&AUTH_MORE_DATA_HEADER) if plugin == AuthPlugin::CachingSha2Password => {
                match payload.get(1) {
                    Some(&sha2_status::FAST_AUTH_SUCCESS) => Ok(ClientStep::Wait),
                    Some(&sha2_status::PERFORM_FULL_AUTHENTICATION) => {
                        if self.tls {
                            let mut pw = self.config.password.clone();
                            pw.push(0);
                            let mut out = Vec::new();
                            write_packet(&mut out, &mut self.seq, &pw);
                            return Ok(ClientStep::Send(out));
                        }
                        if let Some(pem) = self.config.server_public_key.clone() {
                            return self.send_rsa_password(&pem);
                        }
                        self.state = State::AwaitPublicKey;
                        let mut out = Vec::new();
                        write_packet(&mut out, &mut self.seq, &[sha2_status::REQUEST_PUBLIC_KEY]);
                        Ok(ClientStep::Send(out))
                    }
                    _ => Err(malformed("unexpected caching_sha2_password status")),
                }
            }
            _ => Err(malformed("unexpected packet during authentication")),
        }
    }

    fn send_rsa_password(&mut self, pem: &[u8]) -> Result<ClientStep, ClientHandshakeError> {
        let ct = auth::rsa_encrypt_password(
            pem,
            &self.config.password,
            &self.scramble,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| ClientHandshakeError::Rsa(e.to_string()))?;
        self.state = State::AwaitAuthResult(AuthPlugin::CachingSha2Password);
        let mut out = Vec::new();
        write_packet(&mut out, &mut self.seq, &ct);
        Ok(ClientStep::Send(out))
    }
}

fn malformed(what: &str) -> ClientHandshakeError {
    ClientHandshakeError::Malformed(what.to_string())
}

#[cfg(test)]
mod tests {
    //! The client machine is exercised against the server machine: both sides of the
    //! protocol in one process, no sockets.
    use super::*;
    use crate::protocol::auth::Credentials;
    use crate::protocol::packet::PacketAssembler;
    use crate::protocol::server::{AuthContext, ServerHandshake, ServerHandshakeConfig, Step};
    use std::collections::HashSet;

    struct Ctx {
        creds: Credentials,
        cached: HashSet<String>,
        key: rsa::RsaPrivateKey,
    }

    impl AuthContext for Ctx {
        fn credentials(&self, user: &str) -> Option<Credentials> {
            (user == "shardcar").then(|| self.creds.clone())
        }
        fn sha2_cached(&self, user: &str) -> bool {
            self.cached.contains(user)
        }
        fn sha2_remember(&mut self, user: &str) {
            self.cached.insert(user.into());
        }
        fn rsa_public_key_pem(&mut self) -> Option<Vec<u8>> {
            use rsa::pkcs8::{EncodePublicKey, LineEnding};
            self.key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .ok()
                .map(String::into_bytes)
        }
        fn rsa_decrypt_password(&mut self, ct: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
            auth::rsa_decrypt_password(&self.key, ct, scramble).ok()
        }
    }

    fn packets(bytes: &[u8]) -> Vec<Packet> {
        let mut a = PacketAssembler::new(1 << 24);
        a.extend(bytes);
        std::iter::from_fn(|| a.next_packet().ok().flatten()).collect()
    }

    /// Runs both machines against each other; returns the client's result.
    fn login(plugin: AuthPlugin, password: &[u8], ctx: &mut Ctx) -> Result<Session, String> {
        let mut server = ServerHandshake::new(
            ServerHandshakeConfig {
                default_plugin: plugin,
                ..Default::default()
            },
            [9; 20],
        );
        let mut client = ClientHandshake::new(ClientHandshakeConfig {
            user: "shardcar".into(),
            password: password.to_vec(),
            database: Some("db".into()),
            ..Default::default()
        });
        let mut to_client = server.greeting();
        for _ in 0..10 {
            let mut to_server = Vec::new();
            for p in packets(&to_client) {
                match client.handle_packet(&p).map_err(|e| e.to_string())? {
                    ClientStep::Send(b) => to_server.extend(b),
                    ClientStep::Wait => {}
                    ClientStep::Done(s) => return Ok(s),
                    ClientStep::SendThenUpgradeTls(_) => return Err("tls".into()),
                }
            }
            to_client.clear();
            for p in packets(&to_server) {
                match server.handle_packet(&p, ctx) {
                    Step::Send(b) | Step::Done(b, _) | Step::Fail(b, _) => to_client.extend(b),
                    Step::UpgradeTls => return Err("tls".into()),
                }
            }
        }
        Err("no progress".into())
    }

    fn ctx() -> Ctx {
        Ctx {
            creds: Credentials::from_password(b"pw"),
            cached: HashSet::new(),
            key: rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap(),
        }
    }

    #[test]
    fn native_login_against_the_server_machine() {
        let mut ctx = ctx();
        let s = login(AuthPlugin::NativePassword, b"pw", &mut ctx).unwrap();
        assert!(s.capabilities & caps::CONNECT_WITH_DB != 0);
        let err = login(AuthPlugin::NativePassword, b"bad", &mut ctx).unwrap_err();
        assert!(err.contains("1045"), "{err}");
    }

    #[test]
    fn caching_sha2_full_then_fast_login_against_the_server_machine() {
        let mut ctx = ctx();
        login(AuthPlugin::CachingSha2Password, b"pw", &mut ctx).unwrap();
        assert!(ctx.cached.contains("shardcar"));
        login(AuthPlugin::CachingSha2Password, b"pw", &mut ctx).unwrap();
        let err = login(AuthPlugin::CachingSha2Password, b"nope", &mut ctx).unwrap_err();
        assert!(err.contains("1045"), "{err}");
    }

    #[test]
    fn server_error_instead_of_greeting_is_reported() {
        let mut client = ClientHandshake::new(ClientHandshakeConfig::default());
        let err = ErrPacket::new(
            crate::protocol::error_codes::ER_CON_COUNT_ERROR,
            "Too many connections",
        );
        let p = Packet {
            seq: 0,
            last_seq: 0,
            payload: err.encode(),
        };
        assert_eq!(
            client.handle_packet(&p),
            Err(ClientHandshakeError::Server(err))
        );
    }
}
