//! A tiny stand-in for the Kubernetes API server, on 127.0.0.1: just the
//! calls podnetd makes (Nodes; Pods, Namespaces and NetworkPolicies for
//! NetworkPolicy; its DaemonSet), over HTTP/1.1, with the semantics that
//! matter to it: a resourceVersion counter, lists, JSON merge patches with the
//! resourceVersion precondition (409 Conflict), watches streamed as
//! chunked JSON lines from a resourceVersion, and 410 Gone for a watch from
//! a compacted one. Hand-written so no API server is needed; it is not a
//! conformance reference.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type Hook = Box<dyn FnOnce(&mut State) + Send>;

/// What the fake holds. Tests change it through [`FakeApi::update`].
#[derive(Default)]
pub struct State {
    /// Per collection (`nodes`, `pods`, `namespaces`, `networkpolicies`),
    /// objects by `namespace/name` (or `name` when cluster-scoped).
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    rv: u64,
    /// (resourceVersion, collection, ADDED|MODIFIED|DELETED, object), for
    /// watches.
    history: Vec<(u64, &'static str, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    /// Bumped to end every open watch.
    generation: u64,
    /// Run once, just before the next PATCH of the named Node is handled.
    before_patch: HashMap<String, Hook>,
    /// DaemonSets by "namespace/name" (podnetd reads its own at SIGTERM).
    pub daemonsets: BTreeMap<String, Value>,
    /// Answer every request with 503 while set.
    pub unavailable: bool,
    /// "METHOD path?query", in order.
    pub requests: Vec<String>,
    /// (node, patch body, answer code), in order.
    pub patches: Vec<(String, Value, u16)>,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Adds or replaces a Node (as the kubelet or controller-manager would).
    pub fn put(&mut self, node: Value) {
        self.put_in("nodes", node);
    }

    /// Adds or replaces an object of `collection`.
    pub fn put_in(&mut self, collection: &'static str, mut object: Value) {
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&object);
        let objects = self.objects.entry(collection).or_default();
        let kind = if objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.history.push((rv, collection, kind, object.clone()));
        objects.insert(key, object);
    }

    /// Changes a Node in place (bumping its resourceVersion).
    pub fn modify(&mut self, name: &str, change: impl FnOnce(&mut Value)) {
        self.modify_in("nodes", name, change);
    }

    /// Changes an object (`namespace/name` or `name`) in place.
    pub fn modify_in(
        &mut self,
        collection: &'static str,
        key: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut object = self.objects[collection][key].clone();
        change(&mut object);
        self.put_in(collection, object);
    }

    pub fn delete(&mut self, name: &str) {
        self.delete_in("nodes", name);
    }

    pub fn delete_in(&mut self, collection: &'static str, key: &str) {
        let removed = self.objects.get_mut(collection).and_then(|o| o.remove(key));
        if let Some(mut object) = removed {
            let rv = self.bump();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.history.push((rv, collection, "DELETED", object));
        }
    }

    /// The keys of every object of `collection`.
    pub fn keys(&self, collection: &str) -> Vec<String> {
        self.objects
            .get(collection)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn nodes(&self) -> &BTreeMap<String, Value> {
        static NONE: BTreeMap<String, Value> = BTreeMap::new();
        self.objects.get("nodes").unwrap_or(&NONE)
    }

    pub fn annotation(&self, name: &str, key: &str) -> Option<String> {
        self.nodes()[name]["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    }

    /// Forgets history: a watch from any resourceVersion seen so far gets
    /// 410 Gone (as after etcd compaction).
    pub fn compact(&mut self) {
        self.compacted = self.rv + 1;
        self.history.clear();
    }

    /// Ends every open watch (its client reconnects).
    pub fn drop_watches(&mut self) {
        self.generation += 1;
    }

    pub fn before_patch(&mut self, node: &str, hook: impl FnOnce(&mut State) + Send + 'static) {
        self.before_patch.insert(node.to_string(), Box::new(hook));
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn key_of(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().expect("a named object");
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The collection a list or watch path names, and its list kind.
fn collection(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/api/v1/nodes" => ("nodes", "NodeList"),
        "/api/v1/pods" => ("pods", "PodList"),
        "/api/v1/namespaces" => ("namespaces", "NamespaceList"),
        "/apis/networking.k8s.io/v1/networkpolicies" => ("networkpolicies", "NetworkPolicyList"),
        _ => return None,
    })
}

pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    dir: tempfile::TempDir,
}

impl FakeApi {
    /// Serves `nodes` on an ephemeral port of 127.0.0.1.
    pub async fn start(nodes: Vec<Value>) -> Self {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), nodes).await
    }

    /// Serves `nodes` on `listener` (bound in whichever network namespace
    /// the clients are).
    pub async fn start_on(listener: std::net::TcpListener, nodes: Vec<Value>) -> Self {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut state = State::default();
        for node in nodes {
            state.put(node);
        }
        state.history.clear();
        let state = Arc::new(Mutex::new(state));
        let (changed, _) = watch::channel(0);
        let (st, tx) = (state.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, st.clone(), tx.clone()));
            }
        });
        Self {
            addr,
            state,
            changed,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A kubeconfig pointing at the fake.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-secret\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Changes the state and wakes the watches.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
        out
    }

    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap())
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        r.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await.ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query,
        body,
    })
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn handle(state: &mut State, req: &Request) -> (u16, Value) {
    if state.unavailable {
        return status(503, "ServiceUnavailable", "the fake is down");
    }
    let name = req.path.strip_prefix("/api/v1/nodes/");
    if let (Some((collection, kind)), "GET") = (collection(&req.path), req.method.as_str()) {
        let items: Vec<Value> = state
            .objects
            .get(collection)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default();
        return (
            200,
            json!({"apiVersion": "v1", "kind": kind,
                   "metadata": {"resourceVersion": state.rv.to_string()},
                   "items": items}),
        );
    }
    if let Some(pod) = pod_path(&req.path).filter(|_| req.method == "GET") {
        return match state.objects.get("pods").and_then(|o| o.get(&pod)) {
            Some(p) => (200, p.clone()),
            None => status(404, "NotFound", &format!("pods {pod:?} not found")),
        };
    }
    match (req.method.as_str(), name) {
        ("PATCH", Some(name)) => {
            if let Some(hook) = state.before_patch.remove(name) {
                hook(state);
            }
            let patch: Value = serde_json::from_slice(&req.body).unwrap();
            let answer = patch_node(state, name, &patch);
            state.patches.push((name.to_string(), patch, answer.0));
            answer
        }
        ("GET", None) if req.path.starts_with("/apis/apps/v1/namespaces/") => {
            let rest = &req.path["/apis/apps/v1/namespaces/".len()..];
            let key = rest.replacen("/daemonsets/", "/", 1);
            match state.daemonsets.get(&key) {
                Some(ds) => (200, ds.clone()),
                None => status(404, "NotFound", &format!("daemonsets {key:?} not found")),
            }
        }
        _ => status(404, "NotFound", "the fake does not serve this"),
    }
}

/// `namespace/name` of `/api/v1/namespaces/NS/pods/NAME`.
fn pod_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, name) = rest.split_once("/pods/")?;
    (!name.contains('/')).then(|| format!("{ns}/{name}"))
}

fn patch_node(state: &mut State, name: &str, patch: &Value) -> (u16, Value) {
    let Some(current) = state.nodes().get(name) else {
        return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
    };
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
        if current["metadata"]["resourceVersion"].as_str() != Some(rv) {
            return status(
                409,
                "Conflict",
                &format!("Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
            );
        }
    }
    let mut node = current.clone();
    merge_patch(&mut node, patch);
    state.put(node);
    (200, state.nodes()[name].clone())
}

async fn write_response(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    code: u16,
    body: &Value,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).unwrap();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(&body).await
}

async fn chunk(w: &mut tokio::net::tcp::OwnedWriteHalf, line: &Value) -> std::io::Result<()> {
    let mut data = serde_json::to_vec(line).unwrap();
    data.push(b'\n');
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    w.write_all(&data).await?;
    w.write_all(b"\r\n").await
}

async fn serve(conn: TcpStream, state: Arc<Mutex<State>>, changed: watch::Sender<u64>) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    while let Some(req) = read_request(&mut r).await {
        let mut target = req.path.clone();
        let mut query: Vec<_> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        query.sort();
        if !query.is_empty() {
            target = format!("{target}?{}", query.join("&"));
        }
        let watching = req
            .query
            .get("watch")
            .is_some_and(|v| v == "true" || v == "1");
        let answer = {
            let mut st = state.lock().unwrap();
            st.requests.push(format!("{} {target}", req.method));
            if watching && !st.unavailable {
                None
            } else {
                Some(handle(&mut st, &req))
            }
        };
        match answer {
            Some((code, body)) => {
                changed.send_modify(|n| *n += 1);
                if write_response(&mut w, code, &body).await.is_err() {
                    return;
                }
            }
            None => {
                let from: u64 = req
                    .query
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let of = collection(&req.path).map_or("", |(c, _)| c);
                let _ = stream_watch(&mut w, &state, changed.subscribe(), of, from).await;
                // A watch response ends the connection.
                return;
            }
        }
    }
}

async fn stream_watch(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    state: &Mutex<State>,
    mut changed: watch::Receiver<u64>,
    of: &str,
    from: u64,
) -> std::io::Result<()> {
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    let (generation, gone) = {
        let st = state.lock().unwrap();
        (st.generation, from < st.compacted)
    };
    if gone {
        let (_, body) = status(410, "Expired", "too old resource version");
        chunk(w, &json!({"type": "ERROR", "object": body})).await?;
        return w.write_all(b"0\r\n\r\n").await;
    }
    let mut sent = from;
    loop {
        changed.borrow_and_update();
        let (events, ended) = {
            let st = state.lock().unwrap();
            let events: Vec<(u64, &'static str, Value)> = st
                .history
                .iter()
                .filter(|(rv, c, _, _)| *rv > sent && *c == of)
                .map(|(rv, _, kind, object)| (*rv, *kind, object.clone()))
                .collect();
            (events, st.generation != generation)
        };
        if ended {
            break;
        }
        for (rv, kind, object) in events {
            chunk(w, &json!({"type": kind, "object": object})).await?;
            sent = rv;
        }
        if tokio::time::timeout(Duration::from_secs(30), changed.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    w.write_all(b"0\r\n\r\n").await
}
