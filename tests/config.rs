//! Configuration: bad values stop start-up with exit code 2 and one line
//! naming the variable; `.env` < environment < flags; `serve` alias.

mod support;

use std::time::Duration;

use support::*;

const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Start with `var=value` and expect exit 2 with a single stderr line naming `var`.
fn assert_bad_value(var: &str, value: &str) {
    let done = server().env(var, value).run(EXIT_BOUND);
    assert_eq!(
        done.code(),
        Some(2),
        "{var}={value:?}: exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "{var}={value:?}: expected exactly one stderr line, got {lines:#?}");
    assert!(lines[0].contains(var), "{var}={value:?}: stderr line does not name {var}: {:?}", lines[0]);
}

macro_rules! bad_value {
    ($($name:ident: $var:expr => $value:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_bad_value($var, $value);
            }
        )*
    };
}

bad_value! {
    bad_port_not_numeric: "PORT" => "abc";
    bad_port_zero: "PORT" => "0";
    bad_port_too_large: "PORT" => "70000";
    bad_shards_zero: "SHARDS" => "0";
    bad_ws_read_timeout_zero: "WS_READ_TIMEOUT" => "0";
    bad_ws_read_timeout_negative: "WS_READ_TIMEOUT" => "-1";
    bad_ws_read_timeout_not_numeric: "WS_READ_TIMEOUT" => "x";
    bad_log_format: "LOG_FORMAT" => "xml";
    bad_max_connections: "MAX_CONNECTIONS" => "x";
    bad_max_message_size: "MAX_MESSAGE_SIZE" => "x";
    max_message_size_above_send_queue_bytes: "MAX_MESSAGE_SIZE" => "1048577";
    bad_shutdown_timeout_zero: "SHUTDOWN_TIMEOUT" => "0";
    bad_redis_url: "REDIS_URL" => "not-a-url";
    bad_bind_addr: "BIND_ADDR" => "nonsense";
    bad_share_port: "SHARE_PORT" => "maybe";
    bad_rust_log: "RUST_LOG" => "realtime=loud";
    bad_allowed_origin_without_scheme: "ALLOWED_ORIGINS" => "https://shop.example,admin.example";
    bad_allowed_origin_with_a_path: "ALLOWED_ORIGINS" => "https://shop.example/app";
    jwt_secret_set_but_empty: "JWT_SECRET" => "";
}

#[test]
fn bad_flag_value_exits_2() {
    let done = server().args(&["--shards", "0"]).run(EXIT_BOUND);
    assert_eq!(done.code(), Some(2), "--shards 0: {:?}\nstderr:\n{}", done.status, done.stderr);
    assert!(
        done.stderr.to_ascii_lowercase().contains("shards"),
        "--shards 0: stderr does not name the setting:\n{}",
        done.stderr
    );
}

#[test]
fn dotenv_port_is_honoured() {
    let dir = TempDir::new();
    let port = free_port();
    dir.write(".env", &format!("PORT={port}\n"));
    let s = server().unset("PORT").cwd(dir.path()).port(port).no_port_env().start();
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn environment_overrides_dotenv() {
    let dir = TempDir::new();
    let file_port = free_port();
    let env_port = free_port();
    dir.write(".env", &format!("PORT={file_port}\n"));
    let s = server().env("PORT", &env_port.to_string()).port(env_port).cwd(dir.path()).start();
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn flag_overrides_environment() {
    let env_port = free_port();
    let flag_port = free_port();
    let s = server()
        .env("PORT", &env_port.to_string())
        .args(&["--port", &flag_port.to_string()])
        .port(flag_port)
        .start();
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn serve_subcommand_takes_the_same_flags() {
    let port = free_port();
    let s = server().unset("PORT").args(&["serve", "--port", &port.to_string()]).port(port).start();
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn dotenv_other_settings_are_read() {
    // SHARDS from .env shows in /health; the environment does not set it.
    let dir = TempDir::new();
    dir.write(".env", "SHARDS=1\n");
    let s = server().unset("SHARDS").cwd(dir.path()).start();
    assert_eq!(s.health()["shards"], 1);
}

#[test]
fn shards_above_cpu_count_is_allowed() {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let shards = cpus + 1;
    let s = server().env("SHARDS", &shards.to_string()).start();
    assert_eq!(s.health()["shards"], shards as u64);
    // README's Client protocol section: allowed, with a warning.
    s.wait_stderr(DEFAULT_DEADLINE, |e| e.lines().any(|l| l.to_ascii_lowercase().contains("shard")));
}

/// README's Configuration table has one row per flag's variable, and names
/// no variable the server does not read.
#[test]
fn the_configuration_table_is_the_flags_variables() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once('`').map(|(name, _)| name))
        .collect();
    rows.sort_unstable();
    let command = <realtime::cli::Cli as clap::CommandFactory>::command();
    let serve = command.find_subcommand("serve").expect("a serve subcommand");
    let mut flags: Vec<String> =
        serve.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    flags.sort_unstable();
    assert_eq!(rows, flags, "README's table rows (left) against `realtime serve`'s variables (right)");
    let read = realtime::cli::variables();
    for (name, documented) in [("RUST_LOG", section), ("SSL_CERT_FILE", readme.as_str())] {
        assert!(read.iter().any(|v| v == name), "{name} is read by the server: {read:?}");
        assert!(documented.contains(&format!("`{name}`")), "{name} is documented");
    }
}

/// A value the server refuses, or one that would make the harness's tokens,
/// publishes or `/health` fail, for every variable the server reads.
fn hostile_value(var: &str) -> &'static str {
    match var {
        "REALTIME_INJECT_PANIC" => "health",
        _ => "a b",
    }
}

/// The harness keeps the machine's environment out of the servers it
/// starts: this test binary is run again with every variable the server
/// reads set to a hostile value, and the server it starts there must still
/// come up, take the harness's tokens and accept its publishes.
#[test]
fn the_machines_environment_does_not_reach_the_server() {
    let mut inner = std::process::Command::new(std::env::current_exe().expect("this test binary"));
    inner.args(["--exact", "started_in_a_hostile_environment", "--ignored"]);
    for var in realtime::cli::variables() {
        inner.env(&var, hostile_value(&var));
    }
    let mut child = inner.spawn().expect("run this test binary again");
    let status = wait_child(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the inner test did not finish within 60 s")
    });
    assert!(status.success(), "the server saw the machine's environment (inner test: {status})");
}

#[test]
#[ignore = "run by the_machines_environment_does_not_reach_the_server, in the environment it makes"]
fn started_in_a_hostile_environment() {
    let s = server().start();
    let (mut ws, hello) = s.connect("env", "seller");
    assert_eq!(hello["type"], "connected", "{hello}");
    let id = s.marker();
    expect_event(&mut ws, &id);
}
