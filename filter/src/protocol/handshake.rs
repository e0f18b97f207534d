//! Connection-phase packets: the server greeting (HandshakeV10), the client's
//! HandshakeResponse41 and SSLRequest, AuthSwitchRequest and AuthMoreData, and the
//! COM_CHANGE_USER payload, which carries the same fields.

use super::auth::{AuthPlugin, SCRAMBLE_LEN};
use super::constants::capabilities as caps;
use super::wire::{self, DecodeError, DecodeResult, Reader};

/// First byte of an AuthSwitchRequest.
pub const AUTH_SWITCH_HEADER: u8 = 0xfe;
/// First byte of an AuthMoreData packet.
pub const AUTH_MORE_DATA_HEADER: u8 = 0x01;
/// Length of an SSLRequest payload.
pub const SSL_REQUEST_LEN: usize = 32;
/// Upper bound on connection attributes the sidecar keeps (MySQL allows 64 KiB).
pub const MAX_CONNECT_ATTRS_LEN: usize = 64 * 1024;

/// The server greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub protocol_version: u8,
    pub server_version: String,
    pub connection_id: u32,
    /// The full scramble (both parts), without the trailing NUL.
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB extended capabilities (only when the server clears `CLIENT_LONG_PASSWORD`).
    pub mariadb_capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: Vec<u8>,
}

impl Greeting {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        let protocol_version = r.u8("protocol version")?;
        if protocol_version != 10 {
            return Err(DecodeError::Invalid(
                "unsupported handshake protocol version",
            ));
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes("server version")?).into_owned();
        let connection_id = r.u32("connection id")?;
        let mut scramble = r.take(8, "scramble part 1")?.to_vec();
        r.skip(1, "filler")?;
        let caps_low = r.u16("capability flags")?;
        let mut g = Greeting {
            protocol_version,
            server_version,
            connection_id,
            scramble: Vec::new(),
            capabilities: u32::from(caps_low),
            mariadb_capabilities: 0,
            collation: 0,
            status: 0,
            auth_plugin: Vec::new(),
        };
        if r.is_empty() {
            g.scramble = scramble;
            return Ok(g);
        }
        g.collation = r.u8("collation")?;
        g.status = r.u16("status flags")?;
        let caps_high = r.u16("capability flags (upper)")?;
        g.capabilities |= u32::from(caps_high) << 16;
        let scramble_len = r.u8("scramble length")?;
        r.skip(6, "reserved")?;
        let mariadb = r.u32("mariadb capabilities")?;
        if g.capabilities & caps::LONG_PASSWORD == 0 {
            g.mariadb_capabilities = mariadb;
        }
        if g.capabilities & caps::SECURE_CONNECTION != 0 {
            let len = usize::from(scramble_len).saturating_sub(8).max(13);
            let part2 = r.take(len.min(r.remaining().len()), "scramble part 2")?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        if g.capabilities & caps::PLUGIN_AUTH != 0 {
            g.auth_plugin = r.nul_bytes_or_rest().to_vec();
        }
        g.scramble = scramble;
        Ok(g)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.server_version.len());
        out.push(self.protocol_version);
        wire::put_nul_bytes(&mut out, self.server_version.as_bytes());
        wire::put_u32(&mut out, self.connection_id);
        let (part1, part2) = self.scramble.split_at(self.scramble.len().min(8));
        out.extend_from_slice(part1);
        out.extend(std::iter::repeat_n(0u8, 8 - part1.len()));
        out.push(0);
        wire::put_u16(&mut out, self.capabilities as u16);
        out.push(self.collation);
        wire::put_u16(&mut out, self.status);
        wire::put_u16(&mut out, (self.capabilities >> 16) as u16);
        let plugin_auth = self.capabilities & caps::PLUGIN_AUTH != 0;
        out.push(if plugin_auth {
            (self.scramble.len() + 1) as u8
        } else {
            0
        });
        out.extend_from_slice(&[0; 6]);
        wire::put_u32(&mut out, self.mariadb_capabilities);
        if self.capabilities & caps::SECURE_CONNECTION != 0 {
            out.extend_from_slice(part2);
            out.extend(std::iter::repeat_n(
                0u8,
                12usize.saturating_sub(part2.len()),
            ));
            out.push(0);
        }
        if plugin_auth {
            wire::put_nul_bytes(&mut out, &self.auth_plugin);
        }
        out
    }
}

/// The client's SSLRequest: the first 32 bytes of a HandshakeResponse41.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    pub capabilities: u32,
    pub max_packet_size: u32,
    pub collation: u8,
}

impl SslRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SSL_REQUEST_LEN);
        wire::put_u32(&mut out, self.capabilities | caps::SSL);
        wire::put_u32(&mut out, self.max_packet_size);
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
        out
    }
}

/// The client's HandshakeResponse41.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet_size: u32,
    pub collation: u8,
    pub username: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    /// Raw connection attributes block (key/value lenenc pairs), without its length.
    pub connect_attrs: Vec<u8>,
}

impl std::fmt::Debug for HandshakeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("capabilities", &format_args!("{:#x}", self.capabilities))
            .field("username", &String::from_utf8_lossy(&self.username))
            .field(
                "database",
                &self.database.as_deref().map(String::from_utf8_lossy),
            )
            .field(
                "auth_plugin",
                &self.auth_plugin.as_deref().map(String::from_utf8_lossy),
            )
            .finish_non_exhaustive()
    }
}

impl HandshakeResponse {
    /// Whether a payload received in place of a HandshakeResponse is an SSLRequest.
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == SSL_REQUEST_LEN
            && Reader::new(payload)
                .u32("capability flags")
                .is_ok_and(|c| c & caps::SSL != 0)
    }

    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32("capability flags")?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(DecodeError::Invalid(
                "client does not speak protocol 4.1 (HandshakeResponse320 unsupported)",
            ));
        }
        let max_packet_size = r.u32("max packet size")?;
        let collation = r.u8("collation")?;
        r.skip(23, "filler")?;
        let username = r.nul_bytes("user name")?.to_vec();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes("auth response")?
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let len = r.u8("auth response length")?;
            r.take(usize::from(len), "auth response")?
        } else {
            r.nul_bytes("auth response")?
        }
        .to_vec();
        let mut resp = HandshakeResponse {
            capabilities,
            max_packet_size,
            collation,
            username,
            auth_response,
            ..Default::default()
        };
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            resp.database = Some(r.nul_bytes_or_rest().to_vec());
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin = Some(r.nul_bytes_or_rest().to_vec());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let attrs = r.lenenc_bytes("connection attributes")?;
            if attrs.len() > MAX_CONNECT_ATTRS_LEN {
                return Err(DecodeError::Invalid("connection attributes too large"));
            }
            resp.connect_attrs = attrs.to_vec();
        }
        Ok(resp)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.username.len() + self.connect_attrs.len());
        wire::put_u32(&mut out, self.capabilities);
        wire::put_u32(&mut out, self.max_packet_size);
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
        wire::put_nul_bytes(&mut out, &self.username);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            wire::put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.push(self.auth_response.len().min(255) as u8);
            out.extend_from_slice(&self.auth_response[..self.auth_response.len().min(255)]);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            wire::put_nul_bytes(&mut out, self.database.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            wire::put_nul_bytes(&mut out, self.auth_plugin.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            wire::put_lenenc_bytes(&mut out, &self.connect_attrs);
        }
        out
    }
}

/// Parses a connection-attributes block into key/value pairs (for logs and identity).
pub fn parse_connect_attrs(block: &[u8]) -> DecodeResult<Vec<(String, String)>> {
    let mut r = Reader::new(block);
    let mut out = Vec::new();
    while !r.is_empty() {
        let k = r.lenenc_bytes("attribute name")?;
        let v = r.lenenc_bytes("attribute value")?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Ok(out)
}

/// Appends one key/value pair to a connection-attributes block.
pub fn push_connect_attr(block: &mut Vec<u8>, key: &str, value: &str) {
    wire::put_lenenc_bytes(block, key.as_bytes());
    wire::put_lenenc_bytes(block, value.as_bytes());
}

/// AuthSwitchRequest: the server asks the client to authenticate with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitchRequest {
    pub plugin: Vec<u8>,
    pub data: Vec<u8>,
}

impl AuthSwitchRequest {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        if r.u8("auth switch header")? != AUTH_SWITCH_HEADER {
            return Err(DecodeError::Invalid("not an AuthSwitchRequest"));
        }
        let plugin = r.nul_bytes_or_rest().to_vec();
        let data = r.take_rest();
        let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
        Ok(Self { plugin, data })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.plugin.len() + self.data.len() + 1);
        out.push(AUTH_SWITCH_HEADER);
        wire::put_nul_bytes(&mut out, &self.plugin);
        out.extend_from_slice(&self.data);
        out.push(0);
        out
    }

    /// A switch to `plugin` carrying the connection's scramble.
    pub fn for_plugin(plugin: AuthPlugin, scramble: &[u8; SCRAMBLE_LEN]) -> Self {
        Self {
            plugin: plugin.name().as_bytes().to_vec(),
            data: scramble.to_vec(),
        }
    }
}

/// AuthMoreData payload: `0x01` then plugin-specific bytes.
pub fn encode_auth_more_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(AUTH_MORE_DATA_HEADER);
    out.extend_from_slice(data);
    out
}

/// The COM_CHANGE_USER payload (after the command byte has been checked).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    pub username: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub collation: Option<u16>,
    pub auth_plugin: Option<Vec<u8>>,
    pub connect_attrs: Vec<u8>,
}

impl std::fmt::Debug for ChangeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeUser")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("database", &String::from_utf8_lossy(&self.database))
            .finish_non_exhaustive()
    }
}

impl ChangeUser {
    /// Decodes a whole COM_CHANGE_USER payload, command byte included.
    pub fn decode(payload: &[u8], capabilities: u32) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        r.skip(1, "command")?;
        let username = r.nul_bytes("user name")?.to_vec();
        let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
            let len = r.u8("auth response length")?;
            r.take(usize::from(len), "auth response")?.to_vec()
        } else {
            r.nul_bytes("auth response")?.to_vec()
        };
        let database = r.nul_bytes_or_rest().to_vec();
        let mut cu = ChangeUser {
            username,
            auth_response,
            database,
            ..Default::default()
        };
        if !r.is_empty() {
            cu.collation = Some(r.u16("collation")?);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            cu.auth_plugin = Some(r.nul_bytes_or_rest().to_vec());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            cu.connect_attrs = r.lenenc_bytes("connection attributes")?.to_vec();
        }
        Ok(cu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A greeting captured from MariaDB 10.11 (Debian 12).
    fn mariadb_greeting() -> Greeting {
        Greeting {
            protocol_version: 10,
            server_version: "5.5.5-10.11.6-MariaDB-0+deb12u1".into(),
            connection_id: 42,
            scramble: b"abcdefgh123456789012".to_vec(),
            capabilities: 0xf7fe_fffe & !caps::LONG_PASSWORD,
            mariadb_capabilities: 0x1d,
            collation: 45,
            status: 2,
            auth_plugin: b"mysql_native_password".to_vec(),
        }
    }

    #[test]
    fn greeting_round_trips() {
        let g = mariadb_greeting();
        assert_eq!(Greeting::decode(&g.encode()), Ok(g));
    }

    #[test]
    fn handshake_response_round_trips_with_every_optional_field() {
        let mut attrs = Vec::new();
        push_connect_attr(&mut attrs, "_client_name", "libmariadb");
        let resp = HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
                | caps::CONNECT_WITH_DB
                | caps::CONNECT_ATTRS,
            max_packet_size: 1 << 24,
            collation: 45,
            username: b"app".to_vec(),
            auth_response: vec![1; 20],
            database: Some(b"demo".to_vec()),
            auth_plugin: Some(b"mysql_native_password".to_vec()),
            connect_attrs: attrs.clone(),
        };
        let back = HandshakeResponse::decode(&resp.encode()).unwrap();
        assert_eq!(back, resp);
        assert_eq!(
            parse_connect_attrs(&back.connect_attrs).unwrap(),
            vec![("_client_name".to_string(), "libmariadb".to_string())]
        );
    }

    #[test]
    fn ssl_request_is_recognised() {
        let req = SslRequest {
            capabilities: caps::PROTOCOL_41,
            max_packet_size: 0,
            collation: 45,
        };
        assert!(HandshakeResponse::is_ssl_request(&req.encode()));
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let g = mariadb_greeting().encode();
        for n in 0..g.len() - 1 {
            let _ = Greeting::decode(&g[..n]);
        }
        let resp = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::CONNECT_ATTRS,
            username: b"u".to_vec(),
            connect_attrs: vec![3, b'a', b'b', b'c', 0],
            ..Default::default()
        }
        .encode();
        for n in 0..resp.len() - 1 {
            let _ = HandshakeResponse::decode(&resp[..n]);
        }
    }

    #[test]
    fn auth_switch_round_trips() {
        let s = AuthSwitchRequest::for_plugin(AuthPlugin::NativePassword, b"01234567890123456789");
        assert_eq!(AuthSwitchRequest::decode(&s.encode()), Ok(s));
    }
}
