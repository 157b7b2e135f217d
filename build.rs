//! Tells the tests what this machine can run, so that a test needing a
//! program that is not installed is reported by `cargo test` as ignored, with
//! the reason, instead of passing without having run.
//!
//! - `no_redis`: `redis-server` is not on `PATH`;
//! - `no_browser`: `node`, Chromium or `tests/browser/node_modules` is missing.
//!
//! `REALTIME_REQUIRE_REDIS=1` and `REALTIME_REQUIRE_BROWSER=1` (CI) never set
//! them: there the tests run and fail loudly on what is missing.

use std::env;
use std::path::{Path, PathBuf};

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(no_redis, no_browser)");
    for var in ["PATH", "REALTIME_REQUIRE_REDIS", "REALTIME_REQUIRE_BROWSER", "REALTIME_E2E_CHROMIUM"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // An install adds an entry to one of these folders, which changes its
    // modification time: the next build looks again.
    for dir in path_dirs() {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    println!("cargo::rerun-if-changed=tests/browser");

    if !required("REALTIME_REQUIRE_REDIS") && on_path("redis-server").is_none() {
        println!("cargo::rustc-cfg=no_redis");
    }
    if !required("REALTIME_REQUIRE_BROWSER") && !browser_runs() {
        println!("cargo::rustc-cfg=no_browser");
    }
}

fn required(var: &str) -> bool {
    env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH").map(|p| env::split_paths(&p).filter(|d| d.is_dir()).collect()).unwrap_or_default()
}

fn on_path(program: &str) -> Option<PathBuf> {
    path_dirs().into_iter().map(|d| d.join(program)).find(|p| p.is_file())
}

fn browser_runs() -> bool {
    let modules = Path::new("tests/browser/node_modules");
    let chromium =
        env::var_os("REALTIME_E2E_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| DEFAULT_CHROMIUM.into());
    on_path("node").is_some()
        && chromium.is_file()
        && modules.join("playwright-core").is_dir()
        && modules.join("axios").is_dir()
}
