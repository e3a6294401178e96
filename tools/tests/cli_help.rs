//! `cargo run --release` runs `spinwire` with no arguments: that is the demo. `--help` lists
//! every command.

use std::process::Command;

#[test]
fn help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .arg("--help")
        .output()
        .expect("run spinwire --help");
    assert!(out.status.success(), "exit status {:?}", out.status);
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["demo", "sim", "tap", "report"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "help does not list `{command}`:\n{help}"
        );
    }
}

#[test]
fn spinwire_without_a_command_runs_the_demo_and_writes_its_report() {
    let cwd = std::env::temp_dir().join(format!("spinwire-noarg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .current_dir(&cwd)
        .output()
        .expect("run spinwire");
    assert!(
        out.status.success(),
        "exit status {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("spinwire demo: demo-"), "{stdout}");
    let runs: Vec<_> = std::fs::read_dir(cwd.join("latency-reports/out"))
        .expect("report under latency-reports/out")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].join("index.html").is_file());
    assert!(runs[0].join("wire_to_strategy.hgrm").is_file());
    let _ = std::fs::remove_dir_all(&cwd);
}
