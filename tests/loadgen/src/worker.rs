//! Worker processes. Each process has its own open-file limit (20,000 here, and it cannot
//! be raised), so a run with more connections than that re-runs this binary N times with
//! the same arguments plus `--worker K`. Workers report as JSON lines on stdout; the parent
//! steers them with one-word lines on their stdin (`start`, `check`, `close`). A worker whose
//! stdin closes (the parent went away) winds up on its own.

use std::ffi::OsString;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the parent hears from a worker.
#[derive(Debug)]
pub enum Heard<R> {
    Report(R),
    /// Its stdout closed: it exited or crashed.
    Exited,
}

/// The parent's handle on its workers.
pub struct Workers<R> {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: mpsc::UnboundedReceiver<(usize, Heard<R>)>,
    exited: Vec<bool>,
}

/// The arguments a worker gets: the parent's own (minus the program name), plus its index
/// (before a `--`, after which come arguments for another program).
pub fn worker_args(parent_args: &[OsString], k: usize) -> Vec<OsString> {
    let mut args = parent_args.to_vec();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, ["--worker".into(), k.to_string().into()]);
    args
}

impl<R> Workers<R>
where
    R: DeserializeOwned + Send + 'static,
{
    /// Start `n` copies of this binary with this process's arguments plus `--worker K`.
    pub fn spawn(n: usize) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let parent_args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut children = Vec::with_capacity(n);
        let mut stdins = Vec::with_capacity(n);
        for k in 0..n {
            let mut child = Command::new(&exe)
                .args(worker_args(&parent_args, k))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            stdins.push(child.stdin.take());
            let stdout = child.stdout.take().expect("stdout is piped");
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<R>(&line) {
                        Ok(r) => {
                            let _ = tx.send((k, Heard::Report(r)));
                        }
                        // Not a report: pass it through so nothing a worker says is lost.
                        Err(_) => eprintln!("[worker {k}] {line}"),
                    }
                }
                let _ = tx.send((k, Heard::Exited));
            });
            children.push(child);
        }
        Ok(Workers {
            children,
            stdins,
            rx,
            exited: vec![false; n],
        })
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Process ids of the workers still running (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// The next thing any worker says, or `None` once `deadline` passes.
    pub async fn next(&mut self, deadline: Instant) -> Option<(usize, Heard<R>)> {
        let got = tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()??;
        if let (k, Heard::Exited) = &got {
            self.exited[*k] = true;
        }
        Some(got)
    }

    /// Wait until every worker has sent a report that `pick` accepts; other reports go to
    /// `pick` too (for progress lines) and are skipped when it returns `None`.
    pub async fn collect<T>(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(usize, R) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let n = self.len();
        let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            match self.next(deadline).await {
                None => {
                    let missing: Vec<_> = (0..n).filter(|k| got[*k].is_none()).collect();
                    return Err(format!("timed out waiting for workers {missing:?}"));
                }
                Some((k, Heard::Report(r))) => {
                    if let Some(t) = pick(k, r) {
                        got[k] = Some(t);
                    }
                }
                Some((k, Heard::Exited)) => {
                    if got[k].is_none() {
                        return Err(format!("worker {k} exited early"));
                    }
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Send one command line to every worker still listening.
    pub async fn tell_all(&mut self, command: &str) {
        let line = format!("{command}\n");
        for stdin in self.stdins.iter_mut().flatten() {
            let _ = stdin.write_all(line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }

    /// Close the workers' stdins (they wind up), wait up to `grace`, then kill stragglers.
    pub async fn finish(mut self, grace: Duration) {
        self.stdins.iter_mut().for_each(|s| drop(s.take()));
        let deadline = Instant::now() + grace;
        for (k, child) in self.children.iter_mut().enumerate() {
            match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(Ok(status)) if !status.success() => {
                    eprintln!("worker {k} exited with {status}");
                }
                Ok(_) => {}
                Err(_) => {
                    eprintln!("worker {k} did not exit in time; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// Worker side: print one report line for the parent.
pub fn emit<R: Serialize>(report: &R) {
    let line = serde_json::to_string(report).expect("reports serialize");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Worker side: the parent's commands, one per line; the channel closes when stdin does.
pub fn commands() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Worker side: wait for `want` (or for the parent to go away, or `deadline`).
/// Returns whether `want` arrived.
pub async fn wait_for(
    commands: &mut mpsc::UnboundedReceiver<String>,
    want: &str,
    deadline: Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, commands.recv()).await {
            Ok(Some(c)) if c == want => return true,
            Ok(Some(c)) if c == "close" => return false,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_args_append_the_index() {
        let parent: Vec<OsString> = ["idle", "--connections", "10"]
            .iter()
            .map(Into::into)
            .collect();
        let args = worker_args(&parent, 3);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["idle", "--connections", "10", "--worker", "3"]);
        let parent: Vec<OsString> = ["stomp-storm", "--", "gw", "--config", "x"]
            .iter()
            .map(Into::into)
            .collect();
        let args = worker_args(&parent, 1);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["stomp-storm", "--worker", "1", "--", "gw", "--config", "x"]
        );
    }

    #[tokio::test]
    async fn wait_for_skips_other_commands_and_stops_on_close_or_eof() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let far = Instant::now() + Duration::from_secs(5);
        tx.send("noise".to_string()).unwrap();
        tx.send("start".to_string()).unwrap();
        assert!(wait_for(&mut rx, "start", far).await);
        tx.send("close".to_string()).unwrap();
        assert!(!wait_for(&mut rx, "check", far).await);
        drop(tx);
        assert!(!wait_for(&mut rx, "check", far).await);
    }

    #[tokio::test]
    async fn wait_for_gives_up_at_the_deadline() {
        let (_tx, mut rx) = mpsc::unbounded_channel::<String>();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!wait_for(&mut rx, "start", soon).await);
    }
}
