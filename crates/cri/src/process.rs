//! Child processes: finding programs, running helpers to completion, and stopping a
//! supervised daemon by its PID (SIGTERM, a grace period, then SIGKILL).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Directories searched after `PATH`, so a program installed by a Debian package is
/// found even when the caller's `PATH` is minimal (sbin is often missing from it).
const FALLBACK_DIRS: &[&str] =
    &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The executable `name` from `path_var` (a `PATH` value), then from the standard
/// system directories.
pub(crate) fn find_in(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let from_path = path_var.into_iter().flat_map(std::env::split_paths);
    let fallback = FALLBACK_DIRS.iter().map(PathBuf::from);
    from_path.chain(fallback).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

/// The executable `name` from this process's `PATH` or the standard system directories.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    find_in(name, std::env::var_os("PATH").as_deref())
}

/// A `PATH` for a daemon child: the directories of `programs` first (so the shim and
/// runc installed beside containerd are found), then this process's `PATH`, then the
/// standard system directories; without repeats. A caller with a minimal `PATH` still
/// gets a containerd that finds runc, its shim, and the tools CNI plugins run.
pub(crate) fn child_path(programs: &[&Path]) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let inherited = std::env::var_os("PATH");
    let candidates = programs
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .chain(inherited.iter().flat_map(std::env::split_paths))
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from));
    for dir in candidates {
        if !dir.as_os_str().is_empty() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| FALLBACK_DIRS.join(":").into())
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program` to completion and returns its stdout; a non-zero exit becomes
/// [`Error::Command`] carrying the command line and stderr.
pub(crate) async fn run<I, S>(program: &Path, args: I) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::Spawn { program: program.display().to_string(), source })?;
    if !output.status.success() {
        let mut command = program.display().to_string();
        for arg in &args {
            command.push(' ');
            command.push_str(&arg.to_string_lossy());
        }
        return Err(Error::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// Sends `signal` to the process `pid`. A process that is already gone is not an error.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(err)
}

/// Stops `child` by its PID: SIGTERM, up to `grace` for it to exit, then SIGKILL, and
/// reaps it. Polls with tokio's timer, so it never blocks an async thread.
pub(crate) async fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    kill(child.id(), libc::SIGTERM)?;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(child.id(), libc::SIGKILL)?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`terminate`] for `Drop`, where nothing can be awaited: sleeps the calling thread
/// while it waits for the grace period.
pub(crate) fn terminate_blocking(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    kill(child.id(), libc::SIGTERM)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child.id(), libc::SIGKILL)?;
    child.wait()
}

/// The last `lines` lines of a log file, for error messages; empty if it is unreadable.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_in_searches_path_before_the_system_directories() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("sh");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = find_in("sh", Some(dir.path().as_os_str()));
        assert_eq!(found.as_deref(), Some(tool.as_path()));
    }

    #[test]
    fn a_child_path_puts_the_programs_directories_first_and_keeps_the_system_ones() {
        let path = child_path(&[Path::new("/opt/krust/bin/containerd"), Path::new("/usr/sbin/runc")]);
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert_eq!(dirs[0], Path::new("/opt/krust/bin"));
        assert_eq!(dirs[1], Path::new("/usr/sbin"));
        for dir in FALLBACK_DIRS {
            assert_eq!(dirs.iter().filter(|d| d == &Path::new(dir)).count(), 1, "{dir}");
        }
    }

    #[test]
    fn find_in_skips_files_that_are_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("krust-not-a-program");
        std::fs::write(&tool, "data").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_in("krust-not-a-program", Some(dir.path().as_os_str())), None);
    }

    #[tokio::test]
    async fn a_failed_helper_reports_its_command_line_and_stderr() {
        let sh = find_program("sh").unwrap();
        let err = run(&sh, ["-c", "echo broken >&2; exit 3"]).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("-c echo broken"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.ends_with(": broken"), "{text}");
    }

    #[tokio::test]
    async fn terminate_kills_a_child_that_ignores_sigterm() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 1; done"])
            .spawn()
            .unwrap();
        // Give the shell time to install its trap.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = terminate(&mut child, Duration::from_millis(200)).await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
