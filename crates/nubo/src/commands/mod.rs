pub mod apply;
pub mod auth;
pub mod blob;
pub mod build;
pub mod check;
pub mod cron;
pub mod destroy;
pub mod kv;
pub mod logs;
pub mod node;
pub mod plan;
pub mod ps;
pub mod queue;
pub mod rollback;
pub mod sql;
pub mod tasks;
pub mod up;
pub mod usage;

/// Asks `question` on the terminal; goes on only if the answer is
/// `expected`. `verb` names the action in the messages ("apply").
pub(crate) fn confirm(question: &str, expected: &str, verb: &str) -> crate::CliResult<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(crate::CliError::new(format!(
            "not going to {verb}: there is no terminal to confirm on"
        ))
        .hint(format!(
            "pass --auto-approve to {verb} without confirmation"
        )));
    }
    print!("{question} ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == expected {
        Ok(())
    } else {
        Err(crate::CliError::new(format!(
            "{verb} cancelled; nothing was changed"
        )))
    }
}
