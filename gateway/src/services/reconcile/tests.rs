use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bridge_api::{async_trait, testkit, Background, Bridge, BridgeError, BridgeFactory};
use bridge_api::{BuildContext, Session, SettingsError};

use crate::config::ServiceConfig;
use crate::services::ServiceTable;

/// Counts its starts; its background work runs until the service's shutdown.
struct Counting(Arc<AtomicUsize>);
struct CountingBridge(Arc<AtomicUsize>);

#[async_trait]
impl Bridge for CountingBridge {
    fn subprotocols(&self) -> &[&'static str] {
        &["fake"]
    }
    fn start(&self, bg: Background) {
        self.0.fetch_add(1, Ordering::SeqCst);
        let stop = bg.shutdown().clone();
        bg.spawn(async move { stop.cancelled().await });
    }
    async fn serve(&self, _: Session) -> Result<(), BridgeError> {
        Ok(())
    }
}

impl BridgeFactory for Counting {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn build(
        &self,
        _: BuildContext,
        _: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        Ok(Arc::new(CountingBridge(self.0.clone())))
    }
}

fn svc(name: &str, path: &str, target: &str) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        path: path.into(),
        bridge: "fake".into(),
        allow_no_subprotocol: false,
        allowed_origins: vec![],
        allow_missing_origin: true,
        require_auth: false,
        require_roles: vec![],
        settings: serde_json::json!({ "target": target }),
        compression: None,
    }
}

struct Fixture {
    starts: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            starts: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn table(&self, configs: &[ServiceConfig]) -> ServiceTable {
        let factories: Vec<Box<dyn BridgeFactory>> = vec![Box::new(Counting(self.starts.clone()))];
        ServiceTable::build(configs, &factories, Arc::new(testkit::NoRealm), "test").expect("table")
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn unchanged_bridges_carry_over_and_changed_ones_are_new() {
    let f = Fixture::new();
    let old = f.table(&[
        svc("same", "/a", "x"),
        svc("origins", "/a", "x"),
        svc("settings", "/b", "x"),
        svc("gone", "/c", "x"),
    ]);
    old.start_new();
    assert_eq!(f.starts(), 4);

    let mut origins = svc("origins", "/a", "x");
    origins.allowed_origins = vec!["https://app.example".into()];
    let fresh = f.table(&[
        svc("same", "/a", "x"),
        origins,
        svc("settings", "/b", "y"),
        svc("new", "/d", "x"),
    ]);
    let (table, changes, retired) = fresh.carry_over(&old);
    assert_eq!(names(&changes.unchanged), ["same"]);
    assert_eq!(names(&changes.updated), ["origins"]);
    assert_eq!(names(&changes.rebuilt), ["settings"]);
    assert_eq!(names(&changes.added), ["new"]);
    assert_eq!(names(&changes.removed), ["gone"]);

    let get = |t: &ServiceTable, n: &str| t.get(n).expect(n).clone();
    assert!(Arc::ptr_eq(&get(&table, "same"), &get(&old, "same")));
    let (o, n) = (get(&old, "origins"), get(&table, "origins"));
    assert!(
        !Arc::ptr_eq(&o, &n),
        "a new Service with the new origins..."
    );
    assert!(Arc::ptr_eq(&o.bridge, &n.bridge), "...on the same bridge");
    assert!(Arc::ptr_eq(&o.instance, &n.instance));
    assert!(!n.origins.allows(Some("https://other.example"), None));
    assert!(!Arc::ptr_eq(
        &get(&old, "settings").bridge,
        &get(&table, "settings").bridge
    ));
    assert_eq!(table.at_path("/a").len(), 2);
    assert!(!table.has_path("/c") && table.has_path("/d"));

    let retired: Vec<&str> = retired.iter().map(|r| &*r.name).collect();
    assert_eq!(retired, ["settings", "gone"]);

    table.start_new();
    assert_eq!(f.starts(), 6, "only the rebuilt and the added bridge start");
    table.start_new();
    assert_eq!(f.starts(), 6, "starting twice is starting once");
}

#[tokio::test]
async fn a_replaced_bridge_stops_when_its_last_session_ends() {
    let f = Fixture::new();
    let old = f.table(&[svc("s", "/a", "x")]);
    old.start_new();
    // A session holds its Service for its life.
    let session = old.get("s").expect("s").clone();
    let fresh = f.table(&[svc("s", "/a", "y")]);
    let (table, _, retired) = fresh.carry_over(&old);
    table.start_new();
    drop(old);
    let bg = &retired[0].background;
    assert!(
        !bg.shutdown().is_cancelled(),
        "its session still runs on it"
    );
    assert!(!retired[0].is_done());
    drop(session);
    assert!(
        bg.shutdown().is_cancelled(),
        "stopped with the last session"
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), bg.stopped())
        .await
        .expect("background work ends");
    assert!(retired[0].is_done());
    let new_bg = &table.get("s").expect("s").background;
    assert!(
        !new_bg.shutdown().is_cancelled(),
        "the new bridge keeps running"
    );
}

#[tokio::test]
async fn a_fresh_table_nobody_started_stops_nothing_when_dropped() {
    let f = Fixture::new();
    let old = f.table(&[svc("s", "/a", "x")]);
    old.start_new();
    // A reload whose table is the same: the fresh build is thrown away unstarted.
    let (table, changes, retired) = f.table(&[svc("s", "/a", "x")]).carry_over(&old);
    assert!(retired.is_empty());
    assert_eq!(names(&changes.unchanged), ["s"]);
    drop(table);
    assert!(!old
        .get("s")
        .expect("s")
        .background
        .shutdown()
        .is_cancelled());
    assert_eq!(f.starts(), 1);
}
