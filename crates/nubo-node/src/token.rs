//! The control API's bearer token: created on a node's first start, kept in
//! `STATE/token` readable by its owner only, so that whoever can read the
//! state dir can drive the node and nobody else can.

use std::io::{Read, Write};
use std::path::Path;

pub const FILE_NAME: &str = "token";

/// Reads the token in `state`, creating it (mode 0600) if there is none.
pub fn load_or_create(state: &Path) -> std::io::Result<String> {
    let path = state.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            refuse_if_shared(&path)?;
            return Ok(t.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token = hex::encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// A token others can read is no secret: refuse it, saying how to fix it.
fn refuse_if_shared(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the token file {} can be read by others (mode {mode:o}); run `chmod 600 {}` (and make a new token if others may have read it)",
                    path.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Compares in time independent of where the strings differ.
pub fn matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
