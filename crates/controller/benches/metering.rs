//! Metering roll-up for 10,000 running VMs (issue #17's benchmark): the pure pass over
//! every project ([`pass_of`]: meter each VM from its times, account the seconds since
//! its cursor, split at the hour), and the controller's whole pass on the in-memory store
//! (list and decode the instances, read the ledgers, write each project's ledger in one
//! transaction). Steady state: the ledgers hold the previous pass, 30 s earlier.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use yunhan_controller::metering::{pass_of, Inventory, MeteringController};
use yunhan_controller::Reconciler;
use yunhan_model::{
    rfc3339_of, Doc, Instance, InstancePhase, InstanceSpec, InstanceStatus, Ledger, Metadata,
    Resource,
};
use yunhan_store::metering::{LEDGERS_PREFIX, USAGE_PREFIX};
use yunhan_store::objects::{object_key, Objects};
use yunhan_store::{MemStore, Store, StoreExt};

const VMS: usize = 10_000;

fn vm(i: usize, projects: usize, started: i64) -> Doc<Instance> {
    let project = format!("prj-{:016x}", i % projects);
    Resource {
        metadata: Metadata::new(format!("ins-{i:016x}"), format!("vm-{i}"), Some(project)),
        spec: InstanceSpec::default(),
        status: InstanceStatus {
            phase: InstancePhase::Running,
            vcpus: 2,
            memory_mib: 4096,
            started_at: Some(rfc3339_of(started + (i % 600) as i64)),
            ..InstanceStatus::default()
        },
    }
}

fn inventories(projects: usize, started: i64) -> Vec<(Ledger, Inventory)> {
    let mut inv: Vec<Inventory> = vec![Inventory::default(); projects];
    for i in 0..VMS {
        inv[i % projects].instances.push(vm(i, projects, started));
    }
    (inv.into_iter().enumerate())
        .map(|(p, inv)| {
            let fresh = Ledger {
                project: format!("prj-{p:016x}"),
                ..Ledger::default()
            };
            let (warm, _) = pass_of(&fresh, &inv, started + 1800);
            (warm.ledger, inv)
        })
        .collect()
}

fn pure(c: &mut Criterion) {
    let started = 1_780_000_000;
    for projects in [100, 1] {
        let all = inventories(projects, started);
        let name = format!("pure pass, {VMS} VMs in {projects} projects");
        c.bench_function(&name, |b| {
            b.iter(|| {
                for (ledger, inv) in &all {
                    black_box(pass_of(ledger, inv, started + 1830));
                }
            })
        });
    }
}

fn whole(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let objects = Objects::new(store.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    rt.block_on(async {
        for i in 0..VMS {
            let d = vm(i, 100, now - 3600);
            let key =
                object_key::<Instance>(d.metadata.project.as_deref().unwrap(), &d.metadata.id);
            store
                .put(&key, serde_json::to_vec(&d).unwrap())
                .await
                .unwrap();
        }
        MeteringController.reconcile(&objects).await.unwrap();
    });
    // Each iteration starts without ledgers: every VM accounted and every ledger written.
    let forget = || async {
        for prefix in [LEDGERS_PREFIX, USAGE_PREFIX] {
            for kv in store.range_all(prefix).await.unwrap() {
                store.delete(&kv.key).await.unwrap();
            }
        }
    };
    let name = format!("controller pass, {VMS} VMs in 100 projects, mem store, all written");
    c.bench_function(&name, |b| {
        b.iter_batched(
            || rt.block_on(forget()),
            |()| rt.block_on(MeteringController.reconcile(&objects)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = pure, whole
}
criterion_main!(benches);
