//! The server side of the connection phase, toward applications: greeting, optional TLS
//! upgrade, authentication with `mysql_native_password` or `caching_sha2_password`
//! (fast path, and full authentication over TLS or the RSA public-key exchange), and the
//! same authentication again for COM_CHANGE_USER.
//!
//! Sans-IO: the driver sends [`ServerHandshake::greeting`], feeds each assembled client
//! packet to [`ServerHandshake::handle_packet`] and acts on the returned [`Step`]. The
//! user directory, the caching_sha2 cache and the RSA key are reached through
//! [`AuthContext`], so the machine itself holds no secrets and reads no clock.

use super::auth::{self, sha2_status, AuthPlugin, Credentials, SCRAMBLE_LEN};
use super::constants::{capabilities as caps, status, DEFAULT_COLLATION};
use super::error_codes::{self, ErrorCode};
use super::handshake::{
    encode_auth_more_data, AuthSwitchRequest, ChangeUser, Greeting, HandshakeResponse,
};
use super::packet::{write_packet, Packet};
use super::response::{ErrPacket, OkPacket};

/// What the handshake needs from the sidecar: users, the caching_sha2 fast-auth cache
/// and the RSA key pair.
pub trait AuthContext {
    /// The stored credentials of `user`, if it exists.
    fn credentials(&self, user: &str) -> Option<Credentials>;
    /// Whether `user` has completed a full caching_sha2 authentication before (MySQL's
    /// fast-auth cache): only then is the fast path accepted.
    fn sha2_cached(&self, user: &str) -> bool;
    /// Records a completed full caching_sha2 authentication.
    fn sha2_remember(&mut self, user: &str);
    /// The RSA public key in PEM, for clients that ask for it; `None` disables the
    /// public-key exchange.
    fn rsa_public_key_pem(&mut self) -> Option<Vec<u8>>;
    /// Decrypts an RSA-encrypted password; `None` when it cannot.
    fn rsa_decrypt_password(&mut self, ciphertext: &[u8], scramble: &[u8]) -> Option<Vec<u8>>;
}

/// Settings for one application connection's handshake.
#[derive(Debug, Clone)]
pub struct ServerHandshakeConfig {
    /// Version string announced in the greeting (the upstream's, so connectors detect
    /// MariaDB or MySQL features correctly).
    pub server_version: String,
    pub connection_id: u32,
    /// Capabilities offered (the sidecar's supported set ∩ the upstream's).
    pub capabilities: u32,
    pub collation: u8,
    pub default_plugin: AuthPlugin,
    /// A TLS server configuration exists: `CLIENT_SSL` is offered.
    pub tls_available: bool,
    /// Plain-text connections are refused after the handshake response.
    pub tls_required: bool,
    /// Host part used in error messages (`'user'@'host'`).
    pub client_host: String,
}

impl Default for ServerHandshakeConfig {
    fn default() -> Self {
        Self {
            server_version: "8.0.36-shardcar".into(),
            connection_id: 1,
            capabilities: caps::SUPPORTED,
            collation: DEFAULT_COLLATION,
            default_plugin: AuthPlugin::NativePassword,
            tls_available: false,
            tls_required: false,
            client_host: "localhost".into(),
        }
    }
}

/// The result of an accepted handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub database: Option<String>,
    /// Negotiated capabilities (offered ∩ requested).
    pub capabilities: u32,
    pub collation: u8,
    pub plugin: AuthPlugin,
    /// Raw connection attributes block from the client.
    pub connect_attrs: Vec<u8>,
    pub tls: bool,
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes (framed packets) and wait for the next client packet.
    Send(Vec<u8>),
    /// The client asked for TLS: run the TLS server handshake on the stream, then call
    /// [`ServerHandshake::tls_established`] and keep feeding packets.
    UpgradeTls,
    /// Authentication succeeded: write these bytes (the OK packet); the command phase
    /// starts, with the next command at sequence id 0.
    Done(Vec<u8>, Authenticated),
    /// Refused: write these bytes (an ERR packet) and close the connection.
    Fail(Vec<u8>, ErrPacket),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitResponse,
    /// Sent an AuthSwitchRequest; waiting for the scramble of `plugin`.
    AwaitSwitchResponse(AuthPlugin),
    /// Asked for full caching_sha2 authentication; waiting for a password, an RSA
    /// ciphertext or a public-key request.
    AwaitFullAuth,
    /// Sent the public key; waiting for the RSA ciphertext.
    AwaitRsaPassword,
    Finished,
}

/// The server-side connection-phase state machine for one application connection.
#[derive(Debug)]
pub struct ServerHandshake {
    config: ServerHandshakeConfig,
    scramble: [u8; SCRAMBLE_LEN],
    state: State,
    /// Sequence id for the next packet the server writes.
    seq: u8,
    tls: bool,
    client: Option<HandshakeResponse>,
    /// Set when the handshake serves a COM_CHANGE_USER rather than a new connection.
    change_user: bool,
}

impl ServerHandshake {
    /// `scramble` must come from a CSPRNG; bytes are kept printable and non-NUL as MySQL
    /// does, because some clients treat the scramble as a C string.
    pub fn new(config: ServerHandshakeConfig, mut scramble: [u8; SCRAMBLE_LEN]) -> Self {
        for b in &mut scramble {
            *b = 0x21 + (*b % 0x5e);
        }
        Self {
            config,
            scramble,
            state: State::AwaitResponse,
            seq: 0,
            tls: false,
            client: None,
            change_user: false,
        }
    }

    /// Prepares to authenticate a COM_CHANGE_USER (sequence id 0 already consumed by the
    /// command); the driver then calls [`ServerHandshake::start_change_user`]. The connection keeps its negotiated capabilities and TLS state; the
    /// client authenticated the command against the original greeting's scramble.
    pub fn for_change_user(
        config: ServerHandshakeConfig,
        scramble: [u8; SCRAMBLE_LEN],
        negotiated: &Authenticated,
        request: &ChangeUser,
    ) -> Self {
        let mut hs = Self {
            config,
            scramble,
            state: State::AwaitResponse,
            seq: 1,
            tls: negotiated.tls,
            client: None,
            change_user: true,
        };
        let resp = HandshakeResponse {
            capabilities: negotiated.capabilities,
            max_packet_size: 0,
            collation: request
                .collation
                .map(|c| c as u8)
                .unwrap_or(negotiated.collation),
            username: request.username.clone(),
            auth_response: request.auth_response.clone(),
            database: (!request.database.is_empty()).then(|| request.database.clone()),
            auth_plugin: request.auth_plugin.clone(),
            connect_attrs: request.connect_attrs.clone(),
        };
        hs.client = Some(resp);
        hs
    }

    /// The scramble of this connection (kept for a later COM_CHANGE_USER).
    pub fn scramble(&self) -> &[u8; SCRAMBLE_LEN] {
        &self.scramble
    }

    fn offered_capabilities(&self) -> u32 {
        let mut c = self.config.capabilities | caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
        c |= caps::PLUGIN_AUTH;
        if self.config.tls_available {
            c |= caps::SSL;
        } else {
            c &= !caps::SSL;
        }
        c
    }

    /// The greeting, framed with sequence id 0.
    pub fn greeting(&mut self) -> Vec<u8> {
        let g = Greeting {
            protocol_version: 10,
            server_version: self.config.server_version.clone(),
            connection_id: self.config.connection_id,
            scramble: self.scramble.to_vec(),
            capabilities: self.offered_capabilities(),
            mariadb_capabilities: 0,
            collation: self.config.collation,
            status: status::AUTOCOMMIT,
            auth_plugin: self.config.default_plugin.name().as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        self.seq = 0;
        write_packet(&mut out, &mut self.seq, &g.encode());
        out
    }

    /// Ends the handshake with an ERR the driver detected itself (a malformed or
    /// oversized packet), numbered where the client expects the server's next packet.
    pub fn refuse(&mut self, code: ErrorCode, message: impl Into<String>) -> Step {
        self.fail(code, message.into())
    }

    /// Called once the TLS handshake finished after an SSLRequest.
    pub fn tls_established(&mut self) {
        self.tls = true;
    }

    /// Runs COM_CHANGE_USER authentication as if the response had just arrived.
    pub fn start_change_user(&mut self, ctx: &mut dyn AuthContext) -> Step {
        let Some(resp) = self.client.clone() else {
            return self.fail(error_codes::ER_HANDSHAKE_ERROR, "Bad handshake".into());
        };
        self.authenticate(resp, ctx)
    }

    /// Feeds one client packet.
    pub fn handle_packet(&mut self, packet: &Packet, ctx: &mut dyn AuthContext) -> Step {
        let expected = self.seq;
        if packet.seq != expected {
            return self.fail(
                error_codes::ER_NET_PACKETS_OUT_OF_ORDER,
                "Got packets out of order".into(),
            );
        }
        self.seq = packet.last_seq.wrapping_add(1);
        match self.state {
            State::AwaitResponse => self.on_response(&packet.payload, ctx),
            State::AwaitSwitchResponse(plugin) => {
                let mut resp = self.client.clone().unwrap_or_default();
                resp.auth_response = packet.payload.clone();
                resp.auth_plugin = Some(plugin.name().as_bytes().to_vec());
                self.verify(resp, plugin, ctx)
            }
            State::AwaitFullAuth => self.on_full_auth(&packet.payload, ctx),
            State::AwaitRsaPassword => self.on_rsa_password(&packet.payload, ctx),
            State::Finished => self.fail(
                error_codes::ER_HANDSHAKE_ERROR,
                "Bad handshake: packet after authentication finished".into(),
            ),
        }
    }

    fn on_response(&mut self, payload: &[u8], ctx: &mut dyn AuthContext) -> Step {
        if HandshakeResponse::is_ssl_request(payload) {
            if !self.config.tls_available || self.tls {
                return self.fail(
                    error_codes::ER_HANDSHAKE_ERROR,
                    "Bad handshake: TLS is not available".into(),
                );
            }
            return Step::UpgradeTls;
        }
        let resp = match HandshakeResponse::decode(payload) {
            Ok(r) => r,
            Err(_) => return self.fail(error_codes::ER_HANDSHAKE_ERROR, "Bad handshake".into()),
        };
        if self.config.tls_required && !self.tls {
            return self.fail(
                error_codes::ER_SECURE_TRANSPORT_REQUIRED,
                "Connections using insecure transport are prohibited while --require_secure_transport=ON.".into(),
            );
        }
        self.authenticate(resp, ctx)
    }

    fn authenticate(&mut self, resp: HandshakeResponse, ctx: &mut dyn AuthContext) -> Step {
        let user = String::from_utf8_lossy(&resp.username).into_owned();
        let creds = ctx.credentials(&user).unwrap_or_default();
        let client_plugin = resp
            .auth_plugin
            .as_deref()
            .and_then(AuthPlugin::from_name)
            .unwrap_or(if self.change_user {
                AuthPlugin::NativePassword
            } else {
                self.config.default_plugin
            });
        self.client = Some(resp.clone());
        // As mysqld does: the user's plugin is the configured default when the user has a
        // hash for it, otherwise the one it has. A client that answered with another
        // plugin is asked to switch, so its answer is always computed for our scramble.
        let usable = |p: AuthPlugin| match p {
            AuthPlugin::NativePassword => creds.native.is_some(),
            AuthPlugin::CachingSha2Password => creds.sha2.is_some(),
            AuthPlugin::ClearPassword => false,
        };
        let plugin = if usable(self.config.default_plugin) {
            self.config.default_plugin
        } else if creds.native.is_some() {
            AuthPlugin::NativePassword
        } else if creds.sha2.is_some() {
            AuthPlugin::CachingSha2Password
        } else {
            // Unknown user: answer as for a wrong password, without revealing which.
            return self.access_denied(!resp.auth_response.is_empty());
        };
        if plugin != client_plugin || (self.change_user && resp.auth_plugin.is_none()) {
            self.state = State::AwaitSwitchResponse(plugin);
            let mut out = Vec::new();
            let switch = AuthSwitchRequest::for_plugin(plugin, &self.scramble);
            write_packet(&mut out, &mut self.seq, &switch.encode());
            return Step::Send(out);
        }
        self.verify(resp, plugin, ctx)
    }

    fn verify(
        &mut self,
        resp: HandshakeResponse,
        plugin: AuthPlugin,
        ctx: &mut dyn AuthContext,
    ) -> Step {
        let user = String::from_utf8_lossy(&resp.username).into_owned();
        let creds = ctx.credentials(&user).unwrap_or_default();
        let response = resp.auth_response.clone();
        self.client = Some(resp);
        match plugin {
            AuthPlugin::NativePassword => {
                let Some(stored) = creds.native else {
                    return self.access_denied(!response.is_empty());
                };
                let ok = if response.is_empty() {
                    stored == auth::native_password_hash(b"")
                } else {
                    auth::verify_native_password(&stored, &self.scramble, &response)
                };
                if ok {
                    self.accept(plugin)
                } else {
                    self.access_denied(!response.is_empty())
                }
            }
            AuthPlugin::CachingSha2Password => {
                let Some(stored) = creds.sha2 else {
                    return self.access_denied(!response.is_empty());
                };
                if response.is_empty() || response == [0] {
                    return if stored == auth::sha2_password_hash(b"") {
                        self.accept(plugin)
                    } else {
                        self.access_denied(false)
                    };
                }
                if ctx.sha2_cached(&user) {
                    if auth::verify_sha2_password(&stored, &self.scramble, &response) {
                        let mut out = Vec::new();
                        write_packet(
                            &mut out,
                            &mut self.seq,
                            &encode_auth_more_data(&[sha2_status::FAST_AUTH_SUCCESS]),
                        );
                        return self.accept_after(out, plugin);
                    }
                    return self.access_denied(true);
                }
                self.state = State::AwaitFullAuth;
                let mut out = Vec::new();
                write_packet(
                    &mut out,
                    &mut self.seq,
                    &encode_auth_more_data(&[sha2_status::PERFORM_FULL_AUTHENTICATION]),
                );
                Step::Send(out)
            }
            AuthPlugin::ClearPassword => self.access_denied(true),
        }
    }

    fn on_full_auth(&mut self, payload: &[u8], ctx: &mut dyn AuthContext) -> Step {
        if self.tls {
            let password = payload.strip_suffix(&[0]).unwrap_or(payload);
            return self.check_full_password(password, ctx);
        }
        if payload == [sha2_status::REQUEST_PUBLIC_KEY] {
            let Some(pem) = ctx.rsa_public_key_pem() else {
                return self.fail(
                    error_codes::ER_ACCESS_DENIED_ERROR,
                    "Authentication requires secure connection.".into(),
                );
            };
            self.state = State::AwaitRsaPassword;
            let mut out = Vec::new();
            write_packet(&mut out, &mut self.seq, &encode_auth_more_data(&pem));
            return Step::Send(out);
        }
        // A client that already holds the public key sends the ciphertext directly.
        self.on_rsa_password(payload, ctx)
    }

    fn on_rsa_password(&mut self, payload: &[u8], ctx: &mut dyn AuthContext) -> Step {
        match ctx.rsa_decrypt_password(payload, &self.scramble) {
            Some(password) => self.check_full_password(&password, ctx),
            // Clear text over an insecure channel is refused, as MySQL does.
            None => self.access_denied(true),
        }
    }

    fn check_full_password(&mut self, password: &[u8], ctx: &mut dyn AuthContext) -> Step {
        let user = self.user();
        let stored = ctx.credentials(&user).and_then(|c| c.sha2);
        match stored {
            Some(stored) if auth::sha2_password_hash(password) == stored => {
                ctx.sha2_remember(&user);
                self.accept(AuthPlugin::CachingSha2Password)
            }
            _ => self.access_denied(true),
        }
    }

    fn user(&self) -> String {
        self.client
            .as_ref()
            .map(|c| String::from_utf8_lossy(&c.username).into_owned())
            .unwrap_or_default()
    }

    fn accept(&mut self, plugin: AuthPlugin) -> Step {
        self.accept_after(Vec::new(), plugin)
    }

    fn accept_after(&mut self, mut out: Vec<u8>, plugin: AuthPlugin) -> Step {
        self.state = State::Finished;
        let Some(resp) = self.client.take() else {
            return self.fail(error_codes::ER_HANDSHAKE_ERROR, "Bad handshake".into());
        };
        let capabilities = if self.change_user {
            resp.capabilities
        } else {
            resp.capabilities & self.offered_capabilities()
        };
        let ok = OkPacket {
            status: status::AUTOCOMMIT,
            ..Default::default()
        };
        write_packet(&mut out, &mut self.seq, &ok.encode(capabilities));
        let authenticated = Authenticated {
            user: String::from_utf8_lossy(&resp.username).into_owned(),
            database: resp
                .database
                .filter(|d| !d.is_empty())
                .map(|d| String::from_utf8_lossy(&d).into_owned()),
            capabilities,
            collation: resp.collation,
            plugin,
            connect_attrs: resp.connect_attrs,
            tls: self.tls,
        };
        Step::Done(out, authenticated)
    }

    fn access_denied(&mut self, using_password: bool) -> Step {
        let msg = format!(
            "Access denied for user '{}'@'{}' (using password: {})",
            self.user(),
            self.config.client_host,
            if using_password { "YES" } else { "NO" }
        );
        self.fail(error_codes::ER_ACCESS_DENIED_ERROR, msg)
    }

    fn fail(&mut self, code: ErrorCode, message: String) -> Step {
        self.state = State::Finished;
        let err = ErrPacket::new(code, message);
        let mut out = Vec::new();
        write_packet(&mut out, &mut self.seq, &err.encode());
        Step::Fail(out, err)
    }
}

/// An ERR packet sent in place of the greeting (sequence id 0), e.g. when the upstream
/// cannot be reached or the connection limit is hit. Like mysqld, it carries no SQLSTATE:
/// clients parse it before any capability is negotiated.
pub fn error_before_greeting(code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 0;
    write_packet(
        &mut out,
        &mut seq,
        &ErrPacket::new(code, message).encode_pre_handshake(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::SslRequest;
    use crate::protocol::packet::PacketAssembler;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct Ctx {
        users: HashMap<String, Credentials>,
        cached: HashSet<String>,
        key: Option<rsa::RsaPrivateKey>,
    }

    impl AuthContext for Ctx {
        fn credentials(&self, user: &str) -> Option<Credentials> {
            self.users.get(user).cloned()
        }
        fn sha2_cached(&self, user: &str) -> bool {
            self.cached.contains(user)
        }
        fn sha2_remember(&mut self, user: &str) {
            self.cached.insert(user.to_string());
        }
        fn rsa_public_key_pem(&mut self) -> Option<Vec<u8>> {
            use rsa::pkcs8::{EncodePublicKey, LineEnding};
            let key = self.key.as_ref()?;
            key.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .ok()
                .map(String::into_bytes)
        }
        fn rsa_decrypt_password(&mut self, ct: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
            auth::rsa_decrypt_password(self.key.as_ref()?, ct, scramble).ok()
        }
    }

    fn ctx() -> Ctx {
        let mut c = Ctx::default();
        c.users
            .insert("app".into(), Credentials::from_password(b"secret"));
        c
    }

    fn packets(bytes: &[u8]) -> Vec<Packet> {
        let mut a = PacketAssembler::new(1 << 24);
        a.extend(bytes);
        let mut out = Vec::new();
        while let Ok(Some(p)) = a.next_packet() {
            out.push(p);
        }
        out
    }

    fn client_response(greeting: &Greeting, plugin: AuthPlugin, password: &[u8]) -> Packet {
        let auth_response = match plugin {
            AuthPlugin::NativePassword => {
                auth::native_password_scramble(password, &greeting.scramble)
            }
            AuthPlugin::CachingSha2Password => {
                auth::sha2_password_scramble(password, &greeting.scramble)
            }
            AuthPlugin::ClearPassword => password.to_vec(),
        };
        let resp = HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
                | caps::CONNECT_WITH_DB
                | caps::DEPRECATE_EOF,
            max_packet_size: 1 << 24,
            collation: 45,
            username: b"app".to_vec(),
            auth_response,
            database: Some(b"demo".to_vec()),
            auth_plugin: Some(plugin.name().as_bytes().to_vec()),
            connect_attrs: Vec::new(),
        };
        Packet {
            seq: 1,
            last_seq: 1,
            payload: resp.encode(),
        }
    }

    fn start(config: ServerHandshakeConfig) -> (ServerHandshake, Greeting) {
        let mut hs = ServerHandshake::new(config, [7; SCRAMBLE_LEN]);
        let g = packets(&hs.greeting()).remove(0);
        (hs, Greeting::decode(&g.payload).unwrap())
    }

    #[test]
    fn native_password_login_succeeds_and_negotiates_capabilities() {
        let mut ctx = ctx();
        let (mut hs, g) = start(ServerHandshakeConfig::default());
        assert!(g.scramble.iter().all(|b| *b != 0));
        match hs.handle_packet(
            &client_response(&g, AuthPlugin::NativePassword, b"secret"),
            &mut ctx,
        ) {
            Step::Done(bytes, a) => {
                let p = packets(&bytes).remove(0);
                assert_eq!((p.seq, p.payload[0]), (2, 0));
                assert_eq!(a.user, "app");
                assert_eq!(a.database.as_deref(), Some("demo"));
                assert!(a.capabilities & caps::DEPRECATE_EOF != 0);
                assert!(a.capabilities & caps::SSL == 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_password_gets_mysql_access_denied_text() {
        let mut ctx = ctx();
        let (mut hs, g) = start(ServerHandshakeConfig::default());
        match hs.handle_packet(
            &client_response(&g, AuthPlugin::NativePassword, b"nope"),
            &mut ctx,
        ) {
            Step::Fail(_, e) => {
                assert_eq!(e.code, 1045);
                assert_eq!(e.sqlstate_str(), "28000");
                assert_eq!(
                    e.message,
                    "Access denied for user 'app'@'localhost' (using password: YES)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_plugin_answer_gets_auth_switch_then_succeeds() {
        let mut ctx = ctx();
        ctx.users.insert(
            "app".into(),
            Credentials {
                native: Some(auth::native_password_hash(b"secret")),
                sha2: None,
            },
        );
        let config = ServerHandshakeConfig {
            default_plugin: AuthPlugin::CachingSha2Password,
            ..Default::default()
        };
        let (mut hs, g) = start(config);
        let step = hs.handle_packet(
            &client_response(&g, AuthPlugin::CachingSha2Password, b"secret"),
            &mut ctx,
        );
        let Step::Send(bytes) = step else {
            panic!("{step:?}")
        };
        let p = packets(&bytes).remove(0);
        let switch = AuthSwitchRequest::decode(&p.payload).unwrap();
        assert_eq!(switch.plugin, b"mysql_native_password");
        let answer = Packet {
            seq: 3,
            last_seq: 3,
            payload: auth::native_password_scramble(b"secret", &switch.data),
        };
        assert!(matches!(
            hs.handle_packet(&answer, &mut ctx),
            Step::Done(..)
        ));
    }

    #[test]
    fn caching_sha2_full_auth_over_rsa_then_fast_path() {
        let mut ctx = ctx();
        ctx.key = Some(rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap());
        let config = ServerHandshakeConfig {
            default_plugin: AuthPlugin::CachingSha2Password,
            ..Default::default()
        };
        // First login: not cached, so full authentication with the public key.
        let (mut hs, g) = start(config.clone());
        let step = hs.handle_packet(
            &client_response(&g, AuthPlugin::CachingSha2Password, b"secret"),
            &mut ctx,
        );
        let Step::Send(bytes) = step else {
            panic!("{step:?}")
        };
        assert_eq!(packets(&bytes)[0].payload, [1, 4]);
        let req = Packet {
            seq: 3,
            last_seq: 3,
            payload: vec![2],
        };
        let Step::Send(bytes) = hs.handle_packet(&req, &mut ctx) else {
            panic!()
        };
        let pem = packets(&bytes).remove(0).payload[1..].to_vec();
        let ct = auth::rsa_encrypt_password(&pem, b"secret", &g.scramble, &mut rand::thread_rng())
            .unwrap();
        let step = hs.handle_packet(
            &Packet {
                seq: 5,
                last_seq: 5,
                payload: ct,
            },
            &mut ctx,
        );
        assert!(matches!(step, Step::Done(..)), "{step:?}");
        assert!(ctx.sha2_cached("app"));
        // Second login: fast path.
        let (mut hs, g) = start(config);
        match hs.handle_packet(
            &client_response(&g, AuthPlugin::CachingSha2Password, b"secret"),
            &mut ctx,
        ) {
            Step::Done(bytes, _) => {
                let ps = packets(&bytes);
                assert_eq!(ps[0].payload, [1, 3]);
                assert_eq!(ps[1].payload[0], 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clear_text_password_without_tls_is_refused() {
        let mut ctx = ctx();
        let config = ServerHandshakeConfig {
            default_plugin: AuthPlugin::CachingSha2Password,
            ..Default::default()
        };
        let (mut hs, g) = start(config);
        let _ = hs.handle_packet(
            &client_response(&g, AuthPlugin::CachingSha2Password, b"secret"),
            &mut ctx,
        );
        let step = hs.handle_packet(
            &Packet {
                seq: 3,
                last_seq: 3,
                payload: b"secret\0".to_vec(),
            },
            &mut ctx,
        );
        assert!(
            matches!(step, Step::Fail(_, ref e) if e.code == 1045),
            "{step:?}"
        );
    }

    #[test]
    fn ssl_request_asks_for_upgrade_and_tls_allows_clear_password() {
        let mut ctx = ctx();
        let config = ServerHandshakeConfig {
            default_plugin: AuthPlugin::CachingSha2Password,
            tls_available: true,
            tls_required: true,
            ..Default::default()
        };
        let (mut hs, g) = start(config);
        assert!(g.capabilities & caps::SSL != 0);
        let ssl = SslRequest {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
            max_packet_size: 0,
            collation: 45,
        };
        let step = hs.handle_packet(
            &Packet {
                seq: 1,
                last_seq: 1,
                payload: ssl.encode(),
            },
            &mut ctx,
        );
        assert_eq!(step, Step::UpgradeTls);
        hs.tls_established();
        let mut resp = client_response(&g, AuthPlugin::CachingSha2Password, b"secret");
        resp.seq = 2;
        resp.last_seq = 2;
        let Step::Send(_) = hs.handle_packet(&resp, &mut ctx) else {
            panic!()
        };
        let step = hs.handle_packet(
            &Packet {
                seq: 4,
                last_seq: 4,
                payload: b"secret\0".to_vec(),
            },
            &mut ctx,
        );
        assert!(matches!(step, Step::Done(_, ref a) if a.tls), "{step:?}");
    }

    #[test]
    fn plain_connection_is_refused_when_tls_is_required() {
        let mut ctx = ctx();
        let config = ServerHandshakeConfig {
            tls_available: true,
            tls_required: true,
            ..Default::default()
        };
        let (mut hs, g) = start(config);
        let step = hs.handle_packet(
            &client_response(&g, AuthPlugin::NativePassword, b"secret"),
            &mut ctx,
        );
        assert!(
            matches!(step, Step::Fail(_, ref e) if e.code == 3159),
            "{step:?}"
        );
    }

    #[test]
    fn wrong_sequence_id_fails_the_handshake() {
        let mut ctx = ctx();
        let (mut hs, g) = start(ServerHandshakeConfig::default());
        let mut p = client_response(&g, AuthPlugin::NativePassword, b"secret");
        p.seq = 9;
        assert!(matches!(hs.handle_packet(&p, &mut ctx), Step::Fail(_, ref e) if e.code == 1156));
    }

    #[test]
    fn error_before_greeting_has_no_sqlstate_marker() {
        let bytes = error_before_greeting(error_codes::ER_CON_COUNT_ERROR, "Too many connections");
        let p = packets(&bytes).remove(0);
        assert_eq!(p.seq, 0);
        assert_eq!(&p.payload[..3], &[0xff, 0x10, 0x04]);
        assert_eq!(&p.payload[3..], b"Too many connections");
    }

    #[test]
    fn garbage_response_fails_cleanly() {
        let mut ctx = ctx();
        for len in 0..64 {
            let (mut hs, _) = start(ServerHandshakeConfig::default());
            let p = Packet {
                seq: 1,
                last_seq: 1,
                payload: vec![0xff; len],
            };
            let step = hs.handle_packet(&p, &mut ctx);
            assert!(matches!(step, Step::Fail(..)), "{len}: {step:?}");
        }
    }
}
