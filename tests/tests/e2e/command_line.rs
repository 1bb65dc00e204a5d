//! The CLI where a demanding user pushes it: readers that go away, long lists, mistyped data
//! folders, colour and progress on a terminal and never elsewhere, completions, manual pages,
//! and plugin configuration checked at start-up. Each through the real binary.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tests::{component, example_task, ratchet_bin, ratchet_in};

/// `ratchet ARGS` with stdout a pipe whose reader has already gone away.
fn into_a_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(ratchet_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RATCHET_LOG")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `ratchet ARGS` with stderr on a pseudo-terminal and stdout a pipe: its status, its stdout,
/// and everything the terminal received.
fn on_a_terminal(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let size = nix::pty::Winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let child = Command::new(ratchet_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RATCHET_LOG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .unwrap();
    // The terminal is drained as the command writes, so it never blocks on a full buffer; the
    // read ends (EIO) once the last holder of the other side exits.
    let mut master = std::fs::File::from(pty.master);
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            seen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let output = child.wait_with_output().unwrap();
    let terminal = drain.join().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), terminal)
}

/// `count` jobs queued in a new embedded database under `data`.
fn queue_jobs(data: &Path, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = ratchet_core::Config::default();
        let store = ratchet_storage::Store::open_data_dir(data).await.unwrap();
        let tasks = example_task("addition").parent().unwrap().to_owned();
        let (registry, _) = ratchet_service::TaskRegistry::load(&[tasks], &config.limits).unwrap();
        for n in 0..count {
            let input = json!({"num1": n, "num2": 1});
            ratchet_service::enqueue(&store, &registry, &config.queue, "addition", input, Default::default())
                .await
                .unwrap();
        }
        store.close().await;
    });
}

const ESCAPE: &str = "\u{1b}[";

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    queue_jobs(&data, 3);
    let data = data.to_str().unwrap();
    for args in [
        vec!["api", "openapi"],
        vec!["completions", "bash"],
        vec!["jobs", "list", "--data-dir", data],
        vec!["jobs", "list", "--data-dir", data, "--format", "json"],
    ] {
        let (code, stderr) = into_a_closed_pipe(&args);
        assert_eq!(code, Some(141), "{args:?} exits as a shell's SIGPIPE status: {stderr}");
        assert_eq!(stderr, "", "{args:?} says nothing, no panic, no backtrace");
    }
}

#[test]
fn lists_say_when_they_are_cut_and_page_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    queue_jobs(&data, 60);
    let data = data.to_str().unwrap();
    let list = |extra: &[&str]| {
        let mut args = vec!["jobs", "list", "--data-dir", data];
        args.extend(extra);
        ratchet_in(dir.path(), &args, &[])
    };
    let first = list(&[]);
    assert!(first.success(), "{first:?}");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 50 + 1, "header, 50 rows, footer: {}", first.stdout);
    assert_eq!(*lines.last().unwrap(), "50 of 60 shown (--limit, --offset, or --all)");

    let everything = list(&["--all"]);
    assert_eq!(everything.stdout.lines().count(), 1 + 60, "{everything:?}");
    assert!(!everything.stdout.contains("shown"), "nothing is hidden, so no footer");

    let page = list(&["--format", "json", "--limit", "10", "--offset", "55"]).json();
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(60), Some(10), Some(55))
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5), "{page}");
    let all = list(&["--format", "json", "--all"]).json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(60));
    assert_eq!(all["total"], 60);

    for wrong in [&["--limit", "0"][..], &["--limit", "501"], &["--all", "--limit", "5"]] {
        let refused = list(wrong);
        assert_eq!(refused.code, Some(2), "{wrong:?}: {refused:?}");
        assert!(refused.stderr.contains("--limit") || refused.stderr.contains("--all"), "{refused:?}");
    }
    let executions =
        ratchet_in(dir.path(), &["executions", "list", "--data-dir", data, "--format", "json"], &[]);
    assert_eq!(executions.json(), json!({"items": [], "total": 0, "limit": 50, "offset": 0}));
}

#[test]
fn read_only_commands_refuse_a_data_folder_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("tyop/data");
    let typo_arg = typo.to_str().unwrap();
    for command in [
        &["jobs", "list"][..],
        &["jobs", "show", "some-id"],
        &["executions", "list"],
        &["executions", "show", "some-id"],
        &["schedules", "list"],
        &["schedules", "show", "nightly"],
        &["schedules", "next", "nightly"],
        &["nodes"],
        &["tasks"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--data-dir", typo_arg]);
        let refused = ratchet_in(dir.path(), &args, &[]);
        assert_eq!(refused.code, Some(1), "{command:?}: {refused:?}");
        assert!(
            refused
                .stderr
                .contains(&format!("there is no database at {}", typo.join("ratchet.db").display())),
            "{command:?} names the missing database: {}",
            refused.stderr
        );
    }
    assert!(!dir.path().join("tyop").exists(), "nothing was created");
    let checked = ratchet_in(dir.path(), &["config", "check"], &[("RATCHET_STORAGE__DATA_DIR", typo_arg)]);
    assert!(checked.stdout.contains("database: none yet"), "{checked:?}");
    assert!(!dir.path().join("tyop").exists(), "config check creates nothing");

    // A command that writes creates the database, and says so the first time only.
    let tasks = example_task("addition").parent().unwrap().display().to_string();
    let enqueue =
        ["jobs", "enqueue", "addition", "--input-json", r#"{"num1": 1, "num2": 2}"#, "--tasks", &tasks];
    let mut args = enqueue.to_vec();
    args.extend(["--data-dir", typo_arg]);
    let first = ratchet_in(dir.path(), &args, &[]);
    assert!(first.success(), "{first:?}");
    assert!(
        first.stderr.contains(&format!("created the database {}", typo.join("ratchet.db").display())),
        "{first:?}"
    );
    let second = ratchet_in(dir.path(), &args, &[]);
    assert!(second.success() && !second.stderr.contains("created"), "{second:?}");
    let listed = ratchet_in(dir.path(), &["jobs", "list", "--data-dir", typo_arg, "--format", "json"], &[]);
    assert_eq!(listed.json()["total"], 2, "{listed:?}");
}

#[test]
fn colour_only_on_a_terminal_or_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let debug = [("RATCHET_LOG", "debug")];
    // Into a pipe or a file: plain text, whatever the log level.
    let piped = ratchet_in(dir.path(), &["config", "show"], &debug);
    assert!(piped.stderr.contains("no configuration file"), "the debug line is logged: {piped:?}");
    assert!(!piped.stderr.contains(ESCAPE), "{piped:?}");
    let forced = ratchet_in(dir.path(), &["config", "show", "--color", "always"], &debug);
    assert!(forced.stderr.contains(ESCAPE), "{forced:?}");

    // On a terminal: colour, unless NO_COLOR or --color never says otherwise.
    let (code, _, terminal) = on_a_terminal(dir.path(), &["config", "show"], &debug);
    assert_eq!(code, Some(0), "{terminal}");
    assert!(terminal.contains("no configuration file") && terminal.contains(ESCAPE), "{terminal:?}");
    let (_, _, no_color) = on_a_terminal(dir.path(), &["config", "show"], &[debug[0], ("NO_COLOR", "1")]);
    assert!(no_color.contains("no configuration file") && !no_color.contains(ESCAPE), "{no_color:?}");
    let (_, _, never) = on_a_terminal(dir.path(), &["--color", "never", "config", "show"], &debug);
    assert!(never.contains("no configuration file") && !never.contains(ESCAPE), "{never:?}");
    let wrong = ratchet_in(dir.path(), &["--color", "sometimes", "config", "show"], &[]);
    assert_eq!(wrong.code, Some(2), "{wrong:?}");
    assert!(wrong.stderr.contains("auto") && wrong.stderr.contains("never"), "{wrong:?}");
}

#[test]
fn progress_is_drawn_on_a_terminal_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let task = example_task("addition");
    let task = task.to_str().unwrap();
    let (code, stdout, terminal) = on_a_terminal(dir.path(), &["test", "--from-fs", task], &[]);
    assert_eq!(code, Some(0), "{stdout}{terminal}");
    assert!(terminal.contains("/3 cases"), "a bar over the three cases: {terminal:?}");
    assert!(stdout.contains("3 passed, 0 failed") && !stdout.contains("cases"), "{stdout}");
    let piped = ratchet_in(dir.path(), &["test", "--from-fs", task], &[]);
    assert!(piped.success(), "{piped:?}");
    assert!(!piped.stderr.contains("cases") && !piped.stderr.contains(ESCAPE), "no bar in a pipe: {piped:?}");

    let data = dir.path().join("data");
    queue_jobs(&data, 1);
    let data = data.to_str().unwrap();
    let prune = ["executions", "prune", "--older-than", "1d", "--data-dir", data];
    let (code, stdout, terminal) = on_a_terminal(dir.path(), &prune, &[]);
    assert_eq!(code, Some(0), "{stdout}{terminal}");
    assert!(terminal.contains("pruning what finished over 1day ago"), "a spinner: {terminal:?}");
    assert!(stdout.starts_with("pruned 0 execution(s)"), "{stdout}");
    let mut json = prune.to_vec();
    json.extend(["--format", "json"]);
    let (_, stdout, terminal) = on_a_terminal(dir.path(), &json, &[]);
    assert!(!terminal.contains("pruning"), "no spinner with --format json: {terminal:?}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["executions"], 0);
}

#[test]
fn bash_completes_commands_and_flags_and_the_other_shells_get_scripts() {
    let script = ratchet_in(Path::new("."), &["completions", "bash"], &[]);
    assert!(script.success(), "{script:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ratchet.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    // What bash offers after `ratchet jo<TAB>` and `ratchet jobs list --<TAB>`: it calls the
    // function with the command, the word under the cursor and the one before.
    let complete = |words: &[&str]| {
        let (current, previous) = (words[words.len() - 1], words[words.len() - 2]);
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _ratchet ratchet '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            words.join(" "),
            words.len() - 1
        );
        let output = Command::new("bash").args(["--norc", "-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete(&["ratchet", "jo"]), ["jobs"]);
    let flags = complete(&["ratchet", "jobs", "list", "--"]);
    for flag in ["--limit", "--offset", "--all", "--status", "--format", "--color"] {
        assert!(flags.iter().any(|f| f == flag), "{flag} in {flags:?}");
    }
    for (shell, marker) in [
        ("zsh", "#compdef ratchet"),
        ("fish", "complete -c ratchet"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = ratchet_in(Path::new("."), &["completions", shell], &[]);
        assert!(script.success() && script.stdout.contains(marker), "{shell}: {script:?}");
    }
    let unknown = ratchet_in(Path::new("."), &["completions", "tcsh"], &[]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
}

#[test]
fn the_manual_has_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man/man1");
    let made = ratchet_in(dir.path(), &["man", "--out", out.to_str().unwrap()], &[]);
    assert!(made.success(), "{made:?}");
    let page = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let top = page("ratchet.1");
    assert!(top.contains(".TH ratchet 1") && top.contains("completions"), "{top}");
    let list = page("ratchet-jobs-list.1");
    assert!(list.contains("\\-\\-limit") && list.contains("\\-\\-all"), "{list}");
    assert!(out.join("ratchet-executions-prune.1").is_file());
    assert!(!out.join("ratchet-man.1").exists(), "the hidden generator has no page of its own");
}

#[test]
fn a_plugin_that_refuses_its_configuration_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tasks")).unwrap();
    let config = format!(
        "server:\n  tasks: [tasks]\nplugins:\n  - name: events\n    kind: sink\n    source: {}\n    config: {{file: ../escape.jsonl}}\n    grants: {{dir: {}}}\n",
        component("jsonl-sink").display(),
        dir.path().join("events").display()
    );
    std::fs::write(dir.path().join("ratchet.yaml"), config).unwrap();
    let checked = ratchet_in(dir.path(), &["config", "check"], &[]);
    assert_eq!(checked.code, Some(1), "{checked:?}");
    let refusal = checked.stdout.lines().find(|l| l.starts_with("error ")).unwrap_or_default();
    assert!(refusal.starts_with("error plugins: plugin events rejects its configuration"), "{checked:?}");
    assert!(refusal.contains("config.file `../escape.jsonl` must be a plain file name"), "{checked:?}");
    let data = dir.path().join("data");
    let served = ratchet_in(
        dir.path(),
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()],
        &[],
    );
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(served.stderr.contains("plugin events rejects its configuration"), "{served:?}");
    assert!(!data.join("ratchet.db").exists(), "start-up stopped before creating anything");

    // Fixed, the same plugin loads and `config check` says so.
    let fixed = std::fs::read_to_string(dir.path().join("ratchet.yaml"))
        .unwrap()
        .replace("../escape.jsonl", "events.jsonl");
    std::fs::write(dir.path().join("ratchet.yaml"), fixed).unwrap();
    let checked = ratchet_in(dir.path(), &["config", "check"], &[]);
    assert!(checked.success(), "{checked:?}");
    assert!(
        checked.stdout.contains(
            "2 plugin(s) load and accept their configuration: events (sink), error-patterns (error-pattern)"
        ),
        "{checked:?}"
    );
}

/// `logging.format: json`: every line the server writes to stderr is a JSON object with its
/// level and message, its own start-up lines and warnings included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernels_log_is_json_lines_on_request() {
    let broken = tests::task("(input) => 1");
    broken.write("metadata.json", "{\"name\": ");
    let server = tests::api::ApiServer::start(
        &[&tests::example_task("addition"), &broken.path()],
        "logging: {format: json}\n",
    );
    let run = server
        .post("/api/v1/tasks/addition/run", &serde_json::json!({"input": {"num1": 1, "num2": 2}}))
        .await;
    assert_eq!(run.status, 200);
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line:?}\n{log}")))
        .collect();
    let said =
        |text: &str| lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains(text)));
    assert!(said("ratchet serving on"), "{log}");
    assert!(said("created the database"), "{log}");
    let warning = lines
        .iter()
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("skipping the task")))
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(warning["level"], "WARN");
}

/// `ratchet` runs `run-once` on the core alone: no code of the database drivers, the HTTP
/// server, GraphQL, the plugin host or the WASM runtime is linked into it (its crate,
/// `ratchet-front`, does not depend on them; `cargo xtask deps` checks the graph, this the
/// binary).
#[test]
fn the_ratchet_binary_links_only_the_core() {
    let front = std::fs::read(ratchet_bin()).unwrap();
    let full = std::fs::read(tests::bin_dir().join("ratchet-full")).unwrap();
    for crate_name in [
        "sea_orm",
        "sqlx_core",
        "axum",
        "async_graphql",
        "libloading",
        "wasmtime",
        "cranelift",
        "ratchet_plugin_host",
        "ratchet_storage",
        "ratchet_service",
    ] {
        let (in_front, in_full) = (code_bytes_of(&front, crate_name), code_bytes_of(&full, crate_name));
        assert!(in_full > 0, "the test looks for {crate_name}, which is not in ratchet-full either");
        assert_eq!(in_front, 0, "the `ratchet` binary holds {in_front} bytes of {crate_name}'s code");
    }
    assert!(front.len() * 2 < full.len(), "ratchet {} bytes, ratchet-full {}", front.len(), full.len());
}

/// Bytes of functions whose (mangled) names mention `crate_name`.
fn code_bytes_of(binary: &[u8], crate_name: &str) -> u64 {
    use object::{Object as _, ObjectSymbol as _};
    let file = object::File::parse(binary).expect("the binary is an object file");
    file.symbols()
        .filter(|symbol| symbol.kind() == object::SymbolKind::Text)
        .filter(|symbol| {
            symbol
                .name_bytes()
                .is_ok_and(|name| name.windows(crate_name.len()).any(|w| w == crate_name.as_bytes()))
        })
        .map(|symbol| symbol.size())
        .sum()
}

/// Every command other than `run-once` is `ratchet-full`'s, reached by exec with the same
/// arguments; without it, those commands name what is missing while `run-once` still works.
#[test]
fn ratchet_hands_other_commands_to_ratchet_full_and_says_when_it_is_missing() {
    let openapi = ratchet_in(Path::new("."), &["api", "openapi"], &[]);
    assert!(openapi.success(), "{openapi:?}");
    assert!(openapi.stdout.contains("\"openapi\""), "{}", openapi.stdout);
    let alone = tempfile::tempdir().unwrap();
    let lone = alone.path().join("ratchet");
    std::fs::copy(ratchet_bin(), &lone).unwrap();
    let worker = tests::worker_bin();
    let env = [("RATCHET_WORKER_BIN", worker.to_str().unwrap())];
    let run = |args: &[&str]| {
        let output = Command::new(&lone)
            .args(args)
            .current_dir(alone.path())
            .env_remove("RATCHET_LOG")
            .env_remove("RATCHET_FULL_BIN")
            .envs(env)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&["jobs", "list"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs `ratchet-full`") && stderr.contains("RATCHET_FULL_BIN"), "{stderr}");
    let task = example_task("addition");
    let (code, stdout, stderr) =
        run(&["run-once", "--from-fs", task.to_str().unwrap(), "--input-json", r#"{"num1": 2, "num2": 3}"#]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"sum":5}"#);
    // Other commands are parsed by `ratchet-full` alone.
    let (code, _, stderr) = run(&["jobs", "lisst"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs `ratchet-full`"), "{stderr}");
}

/// `ratchet` parses `run-once` itself and `ratchet-full` every command: the help and the
/// errors of `run-once` are the same in both, and a mistake in another command is reported
/// as `ratchet`'s.
#[test]
fn both_binaries_parse_the_same_command_line() {
    let full = tests::bin_dir().join("ratchet-full");
    let parse = |binary: &Path, args: &[&str]| {
        let output =
            Command::new(binary).arg0("ratchet").args(args).env_remove("RATCHET_LOG").output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    for args in [
        &["run-once", "--help"][..],
        &["--color", "never", "run-once", "--help"],
        &["run-once", "--from-fs", "t", "--bogus"],
        &["run-once"],
        &["--config"],
    ] {
        let (front, full) = (parse(&ratchet_bin(), args), parse(&full, args));
        assert_eq!(front, full, "`ratchet {}`", args.join(" "));
    }
    let (code, stdout, _) = parse(&ratchet_bin(), &["run-once", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Run a task once") && stdout.contains("--from-fs <DIR_OR_ZIP>"), "{stdout}");
    assert!(stdout.contains("--config <FILE>") && stdout.contains("--allow-host"), "{stdout}");
    let typo = ratchet_in(Path::new("."), &["jobs", "lisst"], &[]);
    assert_eq!(typo.code, Some(2), "{typo:?}");
    assert!(
        typo.stderr.contains("unrecognized subcommand 'lisst'")
            && typo.stderr.contains("Usage: ratchet jobs"),
        "{typo:?}"
    );
}
