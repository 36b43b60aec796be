//! The shared Wasm engine: one wasmtime `Engine` configured for many short-lived instances
//! (pooling allocator, copy-on-write memory images, epoch interruption), its epoch ticker,
//! the linkers, the compiled-code cache and the semaphore that bounds live instances.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::ModuleCache;
use crate::failure::HostError;
use crate::linker;
use crate::sandbox::{ComponentState, P1State};

/// How the engine is built. `Default` suits a worker; tests and benchmarks shrink the pool.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Compiled code is cached here by module digest; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Instances alive at once over all handlers. Callers beyond it wait for a slot.
    pub max_instances: u32,
    /// The largest `spec.limits.memory` a handler on this engine may have: the size of one
    /// pooled memory slot (virtual address space, reserved up front, not resident).
    pub max_memory: u64,
    /// Linear memories one component instance may have (interpreters link several modules).
    pub max_memories_per_instance: u32,
    /// Core instances one component may contain.
    pub max_core_instances_per_component: u32,
    /// Stack a guest may use before it traps with "call stack exhausted".
    pub max_wasm_stack: usize,
    /// How often the epoch advances: the granularity of the timeout. `None` turns epoch
    /// interruption off, for benchmarks only: a spinning guest can then only be stopped when
    /// it next calls the host.
    pub epoch_tick: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 100,
            max_memory: 4 << 30,
            max_memories_per_instance: 4,
            max_core_instances_per_component: 64,
            max_wasm_stack: 1 << 20,
            epoch_tick: Some(Duration::from_millis(10)),
        }
    }
}

/// Counters of what `load` did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Modules compiled from Wasm.
    pub compiled: u64,
    /// Modules loaded as native code from the cache directory.
    pub cache_hits: u64,
}

/// The Wasm engine shared by every handler of a worker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) component_linker: wasmtime::component::Linker<ComponentState>,
    pub(crate) p1_linker: wasmtime::Linker<P1State>,
    pub(crate) cache: Option<ModuleCache>,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    pub(crate) epoch_tick: Option<Duration>,
    pub(crate) max_memory: u64,
    pub(crate) compiled: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Result<Engine, HostError> {
        let e = |err: wasmtime::Error| HostError::Engine(format!("{err:#}"));
        if cfg.max_instances == 0 {
            return Err(HostError::Engine("max_instances must be at least 1".into()));
        }
        let max_memory = usize::try_from(cfg.max_memory)
            .map_err(|_| HostError::Engine("max_memory exceeds the address space".into()))?;
        let mut pool = PoolingAllocationConfig::new();
        // Every pool limit is sized from max_instances so the semaphore, not the pool, is
        // what callers meet when the worker is saturated.
        pool.total_component_instances(cfg.max_instances)
            .total_core_instances(cfg.max_instances * cfg.max_core_instances_per_component)
            .total_memories(cfg.max_instances * cfg.max_memories_per_instance)
            .total_tables(cfg.max_instances * cfg.max_memories_per_instance * 4)
            .total_stacks(cfg.max_instances)
            .max_memories_per_component(cfg.max_memories_per_instance)
            .max_tables_per_component(cfg.max_memories_per_instance * 4)
            .max_core_instances_per_component(cfg.max_core_instances_per_component)
            .max_memory_size(max_memory)
            // Interpreters (Python, JavaScript) have large function tables.
            .table_elements(1 << 16);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            // Linux ≥ 6.7 reports which pages a guest dirtied: reset only those, by copy,
            // up to 2 MiB per slot, so a typical handler's slot is reused without an
            // madvise (each one a TLB-shootdown IPI to every core running the process)
            // and without page faults on its next run. A Rust guest's 1 MiB shadow stack
            // and first heap pages fit in that.
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(2 << 20)
                .table_keep_resident(256 << 10);
        } else {
            // Without the scan the kept bytes are reset with memset whether dirty or not,
            // so keep only the first pages, which nearly every handler touches.
            pool.linear_memory_keep_resident(64 << 10)
                .table_keep_resident(64 << 10);
        }
        // What does need an madvise is batched, one IPI round per batch.
        pool.decommit_batch_size(16);
        let mut config = wasmtime::Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(cfg.epoch_tick.is_some())
            .max_wasm_stack(cfg.max_wasm_stack)
            // The async fiber stack holds the wasm stack plus host frames below it.
            .async_stack_size(cfg.max_wasm_stack + (1 << 20))
            .parallel_compilation(true)
            .wasm_component_model(true);
        let wasmtime = wasmtime::Engine::new(&config).map_err(e)?;
        let cache = cfg
            .cache_dir
            .as_deref()
            .map(|dir| ModuleCache::open(dir, &wasmtime))
            .transpose()?;
        if let Some(tick) = cfg.epoch_tick {
            spawn_epoch_ticker(&wasmtime, tick)?;
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                component_linker: linker::component_linker(&wasmtime).map_err(e)?,
                p1_linker: linker::p1_linker(&wasmtime).map_err(e)?,
                wasmtime,
                cache,
                permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_instances as usize)),
                epoch_tick: cfg.epoch_tick,
                max_memory: cfg.max_memory,
                compiled: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
            }),
        })
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
        }
    }
}

/// Advances the epoch every `tick`. The thread holds only a weak reference, so it ends once
/// the engine and everything compiled with it are dropped.
fn spawn_epoch_ticker(engine: &wasmtime::Engine, tick: Duration) -> Result<(), HostError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
        .map_err(|e| HostError::Engine(format!("starting the epoch ticker: {e}")))
}
