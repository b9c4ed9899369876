//! `Node::change` on a node of its own in a temp state dir, with a real
//! component: a change is one revision, applied whole or not at all.

use crate::node::{ChangeError, Node, NodeOptions};
use nubo_plan::{AppSettings, ComponentDef, Route, RouteTarget, Step};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub(crate) async fn node(state: &std::path::Path) -> Arc<Node> {
    let opts = NodeOptions {
        state: state.to_path_buf(),
        cache_dir: None,
        max_upload: 64 << 20,
        cluster: None,
        token: Some("t".repeat(32)),
        memory_budget: Some(256 << 20),
        disk_reserve: 0,
        trusted_proxies: Default::default(),
        metering: true,
    };
    let node = Node::open(opts).await.expect("node opens");
    node.restore().await.expect("restores");
    node
}

/// The probe component, uploaded; its digest.
fn upload(node: &Node) -> String {
    let bytes = std::fs::read(nubo_testkit::wasm("probe")).expect("probe built");
    let digest = hex::encode(Sha256::digest(&bytes));
    node.content.put(&digest, &bytes).expect("stored");
    digest
}

fn route(component: &str) -> Route {
    Route {
        pattern: nubo_manifest::RoutePattern::Prefix("/p".into()),
        target: RouteTarget::Component(component.into()),
        access: Default::default(),
    }
}

fn create(digest: &str) -> Vec<Step> {
    vec![
        Step::CreateApp {
            name: "a".into(),
            settings: AppSettings::default(),
        },
        Step::AddComponent {
            name: "web".into(),
            component: ComponentDef::new(digest),
        },
        Step::SetRoutes {
            routes: vec![route("web")],
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_is_one_revision_applied_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path()).await;
    let digest = upload(&node);

    let made = node.change("a", Some(0), create(&digest)).await;
    let made = made.expect("created");
    assert_eq!((made.revision, made.changed), (1, true));
    assert_eq!(node.app("a").await.map(|a| a.revision), Some(1));

    // The same steps again change nothing and make no revision.
    let steps = vec![Step::SetRoutes {
        routes: vec![route("web")],
    }];
    let same = node.change("a", Some(1), steps).await.expect("no-op");
    assert_eq!((same.revision, same.changed), (1, false));

    // Planned against an older revision: refused.
    let stale = node.change("a", Some(0), create(&digest)).await;
    assert!(matches!(stale, Err(ChangeError::Stale(_))), "{stale:?}");

    // A definition that would not serve is refused whole: the route's
    // component is gone, so neither step lands.
    let broken = vec![
        Step::RemoveComponent { name: "web".into() },
        Step::SetRoutes {
            routes: vec![route("web")],
        },
    ];
    let refused = node.change("a", Some(1), broken).await;
    assert!(
        matches!(refused, Err(ChangeError::Rejected(_))),
        "{refused:?}"
    );
    let live = node.app("a").await.expect("still there");
    assert_eq!(live.revision, 1);
    assert!(live.def.components.contains_key("web"));

    // A grant no capability owns is refused too.
    let mut granted = ComponentDef::new(&digest);
    granted
        .grants
        .insert("no_such_grant".into(), vec!["x".into()]);
    let steps = vec![Step::ReplaceComponent {
        name: "web".into(),
        component: granted,
        reasons: Vec::new(),
    }];
    let refused = node.change("a", Some(1), steps).await;
    assert!(
        matches!(refused, Err(ChangeError::Rejected(_))),
        "{refused:?}"
    );

    // Removal is a revision of its own; the app is gone from the node.
    let removed = node
        .change("a", Some(1), vec![Step::RemoveApp { keep_data: false }])
        .await
        .expect("removed");
    assert_eq!(removed.revision, 2);
    assert!(node.app("a").await.is_none());
}
