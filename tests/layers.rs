//! The library's layers point down only, and no module depends on itself
//! through others. Reads the sources (every `crate::`, `super::` and
//! child-module path, `use` lines and inline paths alike), so a new arrow
//! that climbs back up or closes a circle fails here with its file named.
//! Also: every model is there for the server, not for its own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// From the top down: a module may use modules of its own layer or below.
const LAYERS: &[&[&str]] = &[
    &["server", "logging"],
    &["runtime"],
    &["gateway", "api"],
    &["shard"],
    &["instance"],
    &["bus"],
    &[
        "config", "cli", "event", "room", "origin", "close", "shard_id", "auth", "models", "metrics",
        "presence", "fault", "history", "protocol",
    ],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn layers_point_down_only() {
    let graph = module_graph();
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if layer(from) > layer(to) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "arrows that climb back up:\n{}", upward.join("\n"));
}

#[test]
fn no_module_cycle() {
    let graph = module_graph();
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
    // The walk saw the modules it should, so it cannot pass by seeing none.
    for module in ["shard", "shard::index", "bus::local", "runtime", "gateway::session", "api::publish"] {
        assert!(graph.contains_key(module), "{module} not found in {:?}", graph.keys());
    }
    assert!(graph["shard"].contains("bus"), "shard uses the bus: {:?}", graph["shard"]);
}

/// A model only its own tests (or another model) use looks alive and is
/// not: the server checks the payloads of README's event types, nothing else.
#[test]
fn every_model_is_used_outside_models() {
    let graph = module_graph();
    let used: BTreeSet<&String> = graph
        .iter()
        .filter(|(from, _)| from.split("::").next() != Some("models"))
        .flat_map(|(_, targets)| targets)
        .collect();
    let unused: Vec<&String> =
        graph.keys().filter(|m| m.starts_with("models::") && !used.contains(m)).collect();
    assert!(unused.is_empty(), "models nothing outside models uses: {unused:?}");
    assert!(used.contains(&"models::order".to_owned()), "the walk sees event.rs use the models");
}

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .unwrap_or_else(|| panic!("module {top} is in no layer: add it to LAYERS"))
}

/// Module → the modules it uses (file modules, by path from the crate root).
fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    collect(&src, &src, &mut files);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .filter(|(module, _)| !module.is_empty())
        .map(|(module, text)| {
            let uses = references(module, text)
                .into_iter()
                .filter_map(|path| resolve(&path, &modules))
                .filter(|target| target != module && !target.is_empty())
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// Every library source file by module path; the binary's `main.rs` is not
/// part of the library.
fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") || path == root.join("main.rs") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.insert(parts.join("::"), code_only(&text));
    }
}

/// The file without comments and without its unit tests (which sit at the
/// end, behind `#[cfg(test)]`, and may use anything).
fn code_only(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    code.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Absolute paths (from the crate root) of everything the file names through
/// `crate::`, `super::` or a child module declared in it.
fn references(module: &str, text: &str) -> Vec<Vec<String>> {
    let own: Vec<String> = module.split("::").map(str::to_owned).collect();
    let parent = own[..own.len() - 1].to_vec();
    let children: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub ").unwrap_or(line.trim()).strip_prefix("mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        .collect();
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < text.len() {
        let ident = ident_at(text, at);
        let boundary = at == 0 || !is_ident_byte(bytes[at - 1]) && bytes[at - 1] != b':';
        if ident.is_empty() || !boundary {
            at += ident.len().max(1);
            continue;
        }
        let base = match ident {
            "crate" => Some(Vec::new()),
            "super" => Some(parent.clone()),
            child if children.contains(&child) => Some([own.clone(), vec![child.to_owned()]].concat()),
            _ => None,
        };
        let after = at + ident.len();
        match base {
            Some(base) if bytes[after..].starts_with(b"::") => {
                let (paths, end) = paths_after(text, after + 2);
                found.extend(paths.into_iter().map(|p| [base.clone(), p].concat()));
                at = end;
            }
            _ => at = after,
        }
    }
    found
}

/// The path segments after `crate::`/`super::`, expanding one `{a, b::c}`
/// group; also where parsing stopped.
fn paths_after(text: &str, mut at: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix = Vec::new();
    loop {
        if bytes[at..].starts_with(b"{") {
            let close = bytes[at..].iter().position(|b| *b == b'}').map_or(text.len(), |i| at + i);
            let items = text[at + 1..close]
                .split(',')
                .map(|item| {
                    let segments: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.trim().trim_start_matches('{').to_owned())
                        .take_while(|s| !s.is_empty() && s.bytes().all(is_ident_byte))
                        .collect();
                    [prefix.clone(), segments].concat()
                })
                .collect();
            return (items, close);
        }
        let ident = ident_at(text, at);
        if ident.is_empty() {
            return (vec![prefix], at);
        }
        prefix.push(ident.to_owned());
        at += ident.len();
        if !bytes[at..].starts_with(b"::") {
            return (vec![prefix], at);
        }
        at += 2;
    }
}

/// The identifier starting at byte `at`; empty when none does (also in the
/// middle of a multi-byte character, which is never sliced).
fn ident_at(text: &str, at: usize) -> &str {
    let length = text.as_bytes()[at..].iter().take_while(|b| is_ident_byte(**b)).count();
    if length == 0 {
        return "";
    }
    &text[at..at + length]
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The longest known module that starts the path.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (0..=path.len()).rev().map(|n| path[..n].join("::")).find(|candidate| modules.contains(candidate))
}

/// One line per strongly connected group of two or more modules.
fn cycles(graph: &Graph) -> Vec<String> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reaches(m))).collect();
    let mut groups = BTreeSet::new();
    for (module, reached) in &reach {
        let group: BTreeSet<&String> =
            reached.iter().filter(|other| reach.get(other).is_some_and(|r| r.contains(*module))).collect();
        if !group.is_empty() {
            groups.insert(group.into_iter().cloned().collect::<Vec<_>>().join(" <-> "));
        }
    }
    groups.into_iter().collect()
}
