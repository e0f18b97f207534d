//! A proxy-wasm host for network filters on the wasmi interpreter: it loads the real
//! `shardcar_filter.wasm` and drives it as Envoy drives a network filter, with the part
//! of the ABI (0.2.1) Envoy offers one: contexts, downstream and upstream data buffers
//! (read, replace, and Envoy's keep-on-pause semantics), properties, metrics, logs and
//! the clock, plus the few WASI calls Rust's standard library makes.
//!
//! [`WasmRelay`] puts the host between real clients and a real mysqld on loopback.

use anyhow::{anyhow, bail, Context as _};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmi::{
    Caller, Engine, Extern, ExternType, Func, Instance, Linker, Memory, Module, Store, Val,
};

/// proxy-wasm status codes.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
/// Buffer types.
const DOWNSTREAM_DATA: i32 = 2;
const UPSTREAM_DATA: i32 = 3;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;
/// The root context's id.
const ROOT: i32 = 1;

/// The modules `scripts/build-wasm.sh` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Query rules, access policy, row limits and metrics.
    Full,
    /// Without the access policy (no SQL parser).
    Lean,
}

/// Where a module variant is (built here when missing).
pub fn module_path(variant: Variant) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let name = match variant {
        Variant::Full => "shardcar_filter.wasm",
        Variant::Lean => "shardcar_filter_lean.wasm",
    };
    let path = target.join("wasm").join(name);
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(crate::workspace_root().join("scripts/build-wasm.sh"))
            .status()
            .context("running scripts/build-wasm.sh")?;
        if !status.success() || !path.exists() {
            bail!("scripts/build-wasm.sh did not build {}", path.display());
        }
    }
    Ok(path)
}

/// A metric the module defined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    /// 0 counter, 1 gauge, 2 histogram.
    pub kind: i32,
    /// Counter and gauge value.
    pub value: i64,
    /// Histogram samples.
    pub samples: Vec<u64>,
}

#[derive(Debug, Default)]
struct HostState {
    memory: Option<Memory>,
    alloc: Option<Func>,
    /// The context the current call is for (properties are per connection).
    current: i32,
    buffers: HashMap<i32, Vec<u8>>,
    properties: HashMap<(i32, String), Vec<u8>>,
    plugin_config: Vec<u8>,
    metrics: Vec<Metric>,
    logs: Vec<(i32, String)>,
    now_ns: u64,
    closed: Vec<i32>,
    random: u64,
}

/// Direction of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (Envoy's downstream) to the server.
    ClientToServer,
    /// From the server (upstream) to the client.
    ServerToClient,
}

/// One loaded module with its root context configured.
#[derive(Debug)]
pub struct WasmHost {
    store: Store<HostState>,
    instance: Instance,
    next_context: i32,
    /// Bytes Envoy keeps buffered per connection and direction after `Action::Pause`.
    kept: HashMap<(i32, bool), Vec<u8>>,
    /// The two data callbacks, looked up once.
    on_downstream: wasmi::TypedFunc<(i32, i32, i32), i32>,
    on_upstream: wasmi::TypedFunc<(i32, i32, i32), i32>,
}

fn memory(caller: &Caller<'_, HostState>) -> anyhow::Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| anyhow!("module memory not bound"))
}

fn read_bytes(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> anyhow::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0; usize::try_from(len)?];
    mem.read(caller, usize::try_from(ptr)?, &mut buf)?;
    Ok(buf)
}

fn write_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> anyhow::Result<()> {
    let mem = memory(caller)?;
    mem.write(caller, usize::try_from(ptr)?, bytes)?;
    Ok(())
}

/// Copies `bytes` into memory the module allocates and stores pointer and size where
/// the module asked.
fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> anyhow::Result<()> {
    let alloc = caller
        .data()
        .alloc
        .ok_or_else(|| anyhow!("proxy_on_memory_allocate not bound"))?;
    let alloc = alloc.typed::<i32, i32>(&*caller)?;
    let ptr = alloc.call(&mut *caller, i32::try_from(bytes.len())?)?;
    write_bytes(caller, ptr, bytes)?;
    write_bytes(caller, ptr_ptr, &ptr.to_le_bytes())?;
    write_bytes(caller, size_ptr, &i32::try_from(bytes.len())?.to_le_bytes())?;
    Ok(())
}

fn host_error(e: anyhow::Error) -> wasmi::Error {
    wasmi::Error::new(e.to_string())
}

fn define_proxy_abi(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |caller: Caller<'_, HostState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> Result<i32, wasmi::Error> {
            let text = read_bytes(&caller, ptr, len).map_err(host_error)?;
            let mut caller = caller;
            caller
                .data_mut()
                .logs
                .push((level, String::from_utf8_lossy(&text).into_owned()));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, ret: i32| -> Result<i32, wasmi::Error> {
            write_bytes(&mut caller, ret, &1i32.to_le_bytes()).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, ret: i32| -> Result<i32, wasmi::Error> {
            let now = caller.data().now_ns;
            write_bytes(&mut caller, ret, &now.to_le_bytes()).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", |_: i32| OK)?;
    linker.func_wrap("env", "proxy_set_effective_context", |_: i32| OK)?;
    linker.func_wrap("env", "proxy_done", || OK)?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, _kind: i32| {
            let current = caller.data().current;
            caller.data_mut().closed.push(current);
            OK
        },
    )?;
    linker.func_wrap("env", "proxy_continue_stream", |_: i32| OK)?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32, wasmi::Error> {
            let data = match kind {
                DOWNSTREAM_DATA | UPSTREAM_DATA => caller.data().buffers.get(&kind).cloned(),
                PLUGIN_CONFIGURATION => Some(caller.data().plugin_config.clone()),
                VM_CONFIGURATION => Some(Vec::new()),
                _ => None,
            };
            let Some(data) = data else {
                return Ok(NOT_FOUND);
            };
            let start = (start as u32 as usize).min(data.len());
            // Sizes are wasm32 `usize`: the SDK asks for `usize::MAX` as -1.
            let end = start.saturating_add(max as u32 as usize).min(data.len());
            if start == end {
                return Ok(NOT_FOUND);
            }
            return_bytes(&mut caller, &data[start..end], ptr_ptr, size_ptr).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         size: i32,
         ptr: i32,
         len: i32|
         -> Result<i32, wasmi::Error> {
            if kind != DOWNSTREAM_DATA && kind != UPSTREAM_DATA {
                return Ok(BAD_ARGUMENT);
            }
            let bytes = read_bytes(&caller, ptr, len).map_err(host_error)?;
            let buffer = caller.data_mut().buffers.entry(kind).or_default();
            let start = usize::try_from(start).unwrap_or(0).min(buffer.len());
            let end = start
                .saturating_add(usize::try_from(size).unwrap_or(0))
                .min(buffer.len());
            buffer.splice(start..end, bytes);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32, wasmi::Error> {
            let path = read_bytes(&caller, path_ptr, path_len).map_err(host_error)?;
            let key = (
                caller.data().current,
                String::from_utf8_lossy(&path).replace('\0', "."),
            );
            let Some(value) = caller.data().properties.get(&key).cloned() else {
                return Ok(NOT_FOUND);
            };
            return_bytes(&mut caller, &value, ptr_ptr, size_ptr).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         ptr: i32,
         len: i32,
         ret: i32|
         -> Result<i32, wasmi::Error> {
            let name = read_bytes(&caller, ptr, len).map_err(host_error)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let metrics = &mut caller.data_mut().metrics;
            let id = match metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    metrics.push(Metric {
                        name,
                        kind,
                        ..Metric::default()
                    });
                    metrics.len() - 1
                }
            };
            let id = i32::try_from(id).map_err(|e| host_error(e.into()))?;
            write_bytes(&mut caller, ret, &id.to_le_bytes()).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: Caller<'_, HostState>, id: i32, by: i64| match usize::try_from(id)
            .ok()
            .and_then(|i| caller.data_mut().metrics.get_mut(i))
        {
            Some(m) => {
                m.value += by;
                OK
            }
            None => NOT_FOUND,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: Caller<'_, HostState>, id: i32, value: i64| match usize::try_from(id)
            .ok()
            .and_then(|i| caller.data_mut().metrics.get_mut(i))
        {
            Some(m) if m.kind == 2 => {
                m.samples.push(u64::try_from(value).unwrap_or(0));
                OK
            }
            Some(m) => {
                m.value = value;
                OK
            }
            None => NOT_FOUND,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, ret: i32| -> Result<i32, wasmi::Error> {
            let value = usize::try_from(id)
                .ok()
                .and_then(|i| caller.data().metrics.get(i))
                .map(|m| m.value);
            let Some(value) = value else {
                return Ok(NOT_FOUND);
            };
            write_bytes(&mut caller, ret, &value.to_le_bytes()).map_err(host_error)?;
            Ok(OK)
        },
    )?;
    Ok(())
}

/// The WASI calls Rust's standard library makes in a reactor module.
fn define_wasi(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         count: i32,
         written_ptr: i32|
         -> Result<i32, wasmi::Error> {
            let mut total = 0i32;
            let mut text = Vec::new();
            for i in 0..count {
                let iov = read_bytes(&caller, iovs + i * 8, 8).map_err(host_error)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend(read_bytes(&caller, ptr, len).map_err(host_error)?);
                total += len;
            }
            caller
                .data_mut()
                .logs
                .push((100 + fd, String::from_utf8_lossy(&text).into_owned()));
            write_bytes(&mut caller, written_ptr, &total.to_le_bytes()).map_err(host_error)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> Result<i32, wasmi::Error> {
            let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
            let state = &mut caller.data_mut().random;
            for b in &mut bytes {
                // xorshift64: test randomness, not cryptography.
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *b = (*state >> 24) as u8;
            }
            write_bytes(&mut caller, ptr, &bytes).map_err(host_error)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>,
         _id: i32,
         _precision: i64,
         ret: i32|
         -> Result<i32, wasmi::Error> {
            let now = caller.data().now_ns;
            write_bytes(&mut caller, ret, &now.to_le_bytes()).map_err(host_error)?;
            Ok(0)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            WASI,
            name,
            |mut caller: Caller<'_, HostState>, a: i32, b: i32| -> Result<i32, wasmi::Error> {
                write_bytes(&mut caller, a, &0i32.to_le_bytes()).map_err(host_error)?;
                write_bytes(&mut caller, b, &0i32.to_le_bytes()).map_err(host_error)?;
                Ok(0)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: i32, _: i32| 0i32)?;
    }
    linker.func_wrap(WASI, "proc_exit", |code: i32| -> Result<(), wasmi::Error> {
        Err(wasmi::Error::new(format!("proc_exit({code})")))
    })?;
    Ok(())
}

impl WasmHost {
    /// Loads `wasm`, starts the VM and configures the root context with
    /// `plugin_config` (JSON); fails if the module refuses the configuration.
    pub fn new(wasm: &[u8], plugin_config: &str) -> anyhow::Result<Self> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(|e| anyhow!("loading module: {e}"))?;
        let mut linker = Linker::<HostState>::new(&engine);
        define_proxy_abi(&mut linker)?;
        define_wasi(&mut linker)?;
        // Anything else the module imports fails loudly if it is ever called (defining
        // a name the host already has fails, and is skipped).
        for import in module.imports() {
            if let ExternType::Func(ty) = import.ty() {
                let what = format!("{}.{}", import.module(), import.name());
                let _ = linker.func_new(
                    import.module(),
                    import.name(),
                    ty.clone(),
                    move |_, _: &[Val], _: &mut [Val]| {
                        Err(wasmi::Error::new(format!(
                            "host call {what} is not implemented"
                        )))
                    },
                );
            }
        }
        let mut store = Store::new(
            &engine,
            HostState {
                plugin_config: plugin_config.as_bytes().to_vec(),
                random: 0x9e37_79b9_7f4a_7c15,
                now_ns: 1,
                ..HostState::default()
            },
        );
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| anyhow!("instantiating: {e}"))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| anyhow!("the module exports no memory"))?;
        let alloc = instance
            .get_export(&store, "proxy_on_memory_allocate")
            .and_then(Extern::into_func)
            .ok_or_else(|| anyhow!("the module exports no proxy_on_memory_allocate"))?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        let data_callback = |name: &str| {
            instance
                .get_typed_func::<(i32, i32, i32), i32>(&store, name)
                .map_err(|e| anyhow!("export {name}: {e}"))
        };
        let on_downstream = data_callback("proxy_on_downstream_data")?;
        let on_upstream = data_callback("proxy_on_upstream_data")?;
        let mut host = WasmHost {
            store,
            instance,
            next_context: ROOT + 1,
            kept: HashMap::new(),
            on_downstream,
            on_upstream,
        };
        if host
            .instance
            .get_export(&host.store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            bail!("the module does not export proxy_abi_version_0_2_1");
        }
        host.call::<(), ()>("_initialize", ())?;
        host.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT, 0))?;
        if host.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT, 0))? == 0 {
            bail!("proxy_on_vm_start returned false");
        }
        let size = i32::try_from(plugin_config.len())?;
        if host.call::<(i32, i32), i32>("proxy_on_configure", (ROOT, size))? == 0 {
            bail!(
                "the module refused its configuration: {:?}",
                host.logs()
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
            );
        }
        Ok(host)
    }

    /// Loads the module [`module_path`] names.
    pub fn load(variant: Variant, plugin_config: &str) -> anyhow::Result<Self> {
        let path = module_path(variant)?;
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::new(&wasm, plugin_config)
    }

    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(
        &mut self,
        name: &str,
        params: P,
    ) -> anyhow::Result<R> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&self.store, name)
            .map_err(|e| anyhow!("export {name}: {e}"))?;
        func.call(&mut self.store, params)
            .map_err(|e| anyhow!("{name} trapped: {e}"))
    }

    /// Opens a connection from `source` (`ip:port`), with the peer certificate's URI
    /// SAN when the client used mTLS. Returns its context id.
    pub fn open(&mut self, source: &str, uri_san: Option<&str>) -> anyhow::Result<i32> {
        let ctx = self.next_context;
        self.next_context += 1;
        let props = &mut self.store.data_mut().properties;
        props.insert((ctx, "source.address".into()), source.as_bytes().to_vec());
        if let Some(san) = uri_san {
            props.insert(
                (ctx, "connection.uri_san_peer_certificate".into()),
                san.as_bytes().to_vec(),
            );
        }
        self.store.data_mut().current = ctx;
        self.call::<(i32, i32), ()>("proxy_on_context_create", (ctx, ROOT))?;
        self.call::<i32, i32>("proxy_on_new_connection", ctx)?;
        Ok(ctx)
    }

    /// One read arriving on connection `ctx`; returns the bytes the filter chain hands
    /// on (nothing while the filter pauses: Envoy keeps the data and adds the next read).
    pub fn data(
        &mut self,
        ctx: i32,
        direction: Direction,
        bytes: &[u8],
        now_ns: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let (kind, callback) = match direction {
            Direction::ClientToServer => (DOWNSTREAM_DATA, self.on_downstream),
            Direction::ServerToClient => (UPSTREAM_DATA, self.on_upstream),
        };
        let key = (ctx, direction == Direction::ClientToServer);
        let mut buffer = self.kept.remove(&key).unwrap_or_default();
        buffer.extend_from_slice(bytes);
        let size = i32::try_from(buffer.len())?;
        {
            let state = self.store.data_mut();
            state.now_ns = now_ns.max(state.now_ns);
            state.current = ctx;
            state.buffers.insert(kind, buffer);
        }
        let action = callback
            .call(&mut self.store, (ctx, size, 0))
            .map_err(|e| anyhow!("data callback trapped: {e}"))?;
        let buffer = self
            .store
            .data_mut()
            .buffers
            .remove(&kind)
            .unwrap_or_default();
        if action == 0 {
            Ok(buffer)
        } else {
            self.kept.insert(key, buffer);
            Ok(Vec::new())
        }
    }

    /// Closes connection `ctx` (the client went away) and deletes its context.
    pub fn close(&mut self, ctx: i32) -> anyhow::Result<()> {
        self.store.data_mut().current = ctx;
        self.call::<(i32, i32), ()>("proxy_on_downstream_connection_close", (ctx, 1))?;
        self.call::<i32, i32>("proxy_on_done", ctx)?;
        self.call::<i32, ()>("proxy_on_delete", ctx)?;
        self.kept.retain(|(c, _), _| *c != ctx);
        Ok(())
    }

    /// Every metric the module defined.
    pub fn metrics(&self) -> &[Metric] {
        &self.store.data().metrics
    }

    /// A counter's value (0 when never defined).
    pub fn counter(&self, name: &str) -> i64 {
        self.metrics()
            .iter()
            .find(|m| m.name == name)
            .map_or(0, |m| m.value)
    }

    /// A histogram's samples.
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.metrics()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }

    /// Log lines (level, message); WASI stdout/stderr are levels 101 and 102.
    pub fn logs(&self) -> &[(i32, String)] {
        &self.store.data().logs
    }

    /// Bytes of the module's linear memory (its whole heap).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data(&self.store).len())
    }
}

/// The host between real clients and a real mysqld: each accepted connection is relayed
/// to `upstream` through one shared [`WasmHost`] (one VM, as on an Envoy worker).
#[derive(Debug)]
pub struct WasmRelay {
    pub port: u16,
    pub host: Arc<Mutex<WasmHost>>,
    _task: tokio::task::JoinHandle<()>,
}

impl WasmRelay {
    /// Listens on a free loopback port; runs on the current tokio runtime.
    pub async fn start(host: WasmHost, upstream: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let host = Arc::new(Mutex::new(host));
        let shared = Arc::clone(&host);
        let task = tokio::spawn(async move {
            while let Ok((client, peer)) = listener.accept().await {
                let host = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = relay(client, peer, upstream, host).await {
                        eprintln!("wasm relay: {e:#}");
                    }
                });
            }
        });
        Ok(WasmRelay {
            port,
            host,
            _task: task,
        })
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn relay(
    client: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    upstream: u16,
    host: Arc<Mutex<WasmHost>>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
    let ctx = host
        .lock()
        .map_err(|_| anyhow!("host poisoned"))?
        .open(&peer.to_string(), None)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_host = Arc::clone(&host);
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let out = up_host.lock().map_err(|_| anyhow!("host poisoned"))?.data(
                ctx,
                Direction::ClientToServer,
                &buf[..n],
                now_ns(),
            )?;
            sw.write_all(&out).await?;
        }
        sw.shutdown().await?;
        anyhow::Ok(())
    };
    let down_host = Arc::clone(&host);
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let out = down_host
                .lock()
                .map_err(|_| anyhow!("host poisoned"))?
                .data(ctx, Direction::ServerToClient, &buf[..n], now_ns())?;
            cw.write_all(&out).await?;
        }
        cw.shutdown().await?;
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = up => r,
        r = down => r,
    };
    host.lock()
        .map_err(|_| anyhow!("host poisoned"))?
        .close(ctx)?;
    result
}

/// One recorded read: its direction and its bytes.
pub type Read = (Direction, Vec<u8>);

/// A plain TCP relay to `upstream` that records every read of both directions in the
/// order they happened: the byte streams of real sessions, to replay through a host.
#[derive(Debug)]
pub struct RecordingRelay {
    pub port: u16,
    pub reads: Arc<Mutex<Vec<Read>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl RecordingRelay {
    pub async fn start(upstream: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let reads: Arc<Mutex<Vec<Read>>> = Arc::default();
        let log = Arc::clone(&reads);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    if let Err(e) = record(client, upstream, log).await {
                        eprintln!("recording relay: {e:#}");
                    }
                });
            }
        });
        Ok(RecordingRelay {
            port,
            reads,
            _task: task,
        })
    }

    /// The reads so far.
    pub fn take(&self) -> Vec<Read> {
        self.reads
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

async fn record(
    client: tokio::net::TcpStream,
    upstream: u16,
    log: Arc<Mutex<Vec<Read>>>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_log = Arc::clone(&log);
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Recorded before it is forwarded, so the order of the log is causal.
            if let Ok(mut l) = up_log.lock() {
                l.push((Direction::ClientToServer, buf[..n].to_vec()));
            }
            sw.write_all(&buf[..n]).await?;
        }
        anyhow::Ok(())
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Ok(mut l) = log.lock() {
                l.push((Direction::ServerToClient, buf[..n].to_vec()));
            }
            cw.write_all(&buf[..n]).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
